"""A training recipe (`config/train/*.yaml`): model preset, data, optimiser and loop settings.

    preset: demo                 # models/<name>.yaml or a path
    init: ""                     # optional model.safetensors to start from
    seed: 0
    data: {shards: [...], max_frames: 64, stages: [{name: qa, steps: 800, mix: {qa: 1.0}}, ...]}
    optim: {lr: 1.0e-3, ttt_lr: 1.0e-3, weight_decay: 0.01, warmup: 0.01, min_lr_ratio: 0.1,
            grad_clip: 1.0, betas: [0.9, 0.95]}
    train: {batch_size: 8, grad_accum: 1, precision: bf16, checkpoint_chunks: true,
            freeze_vision: true, save_every: 100, log_every: 10}

`data` is handed to `dataset.build_source` as a dict (its owner validates the rest); the loop only
needs `data.stages` (checked here by `curriculum.parse_stages`), whose steps sum to the number of
optimiser steps. Every bad field raises
ValueError naming the field and the value. The learning-rate schedule (linear warm-up, cosine down
to `min_lr_ratio`, as HF's `cosine_with_min_lr` of the official run) is a pure function here.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

PRECISIONS = ("bf16", "fp32")
LOSS_NORMS = ("tokens", "samples")


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 1.0e-3             # base LR: backbone (LLM, embeddings, head)
    ttt_lr: float = 1.0e-3         # TTT parameters and the SP conv
    weight_decay: float = 0.01     # AdamW, matrices only (no decay for norms, biases, scales)
    warmup: float = 0.01           # fraction of the total steps
    min_lr_ratio: float = 0.1      # cosine ends at this fraction of the peak
    grad_clip: float = 1.0         # max global grad norm; 0 = off
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1.0e-8


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 1            # samples per rank per micro-batch
    grad_accum: int = 1            # micro-batches per optimiser step
    precision: str = "bf16"        # bf16 on CUDA (autocast / FSDP2 bf16 params, fp32 reduce); CPU runs fp32
    checkpoint_chunks: bool = True  # per-chunk activation checkpointing in the TTT layers
    checkpoint_layers: bool = False  # HF decoder-layer activation checkpointing (official --gradient_checkpointing)
    freeze_vision: bool = True     # vision tower + merger frozen (official run)
    save_every: int = 100          # DCP checkpoint every N steps (and at the end / time limit)
    log_every: int = 10            # JSONL / TensorBoard row every N steps
    keep_checkpoints: int = 2      # older step directories are deleted
    loader_workers: int = 0        # processes that build the next steps' samples ahead (0 = in the loop)
    loss_norm: str = "tokens"      # tokens: mean over the global batch's label tokens; samples: mean of
                                   # each sample's token mean (the official 8 GPUs x batch 1 DDP run)


@dataclass(frozen=True)
class Recipe:
    preset: str
    init: str
    seed: int
    data: dict
    optim: OptimSettings
    train: TrainSettings
    source: str = "<dict>"         # where it came from (for messages)

    @property
    def stages(self) -> list[dict]:
        return list(self.data.get("stages", []))

    @property
    def total_steps(self) -> int:
        return sum(int(s["steps"]) for s in self.stages)

    def to_dict(self) -> dict:
        out = {"preset": self.preset, "init": self.init, "seed": self.seed, "data": self.data,
               "optim": asdict(self.optim), "train": asdict(self.train)}
        out["optim"]["betas"] = list(self.optim.betas)
        return out


def _check_keys(section: str, given: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(f'{section}{k}' for k in unknown)}; "
                         f"known: {sorted(known)}")


def _number(where: str, field: str, value: Any, *, integer: bool = False, low: float | None = None,
            high: float | None = None, low_open: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{where}: {field} must be {kind}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{where}: {field} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{where}: {field} must be <= {high}, got {value!r}")
    return int(value) if integer else float(value)


def _optim(raw: Any, where: str) -> OptimSettings:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: optim must be a mapping, got {raw!r}")
    _check_keys("optim.", raw, {f.name for f in fields(OptimSettings)}, where)
    out = {**asdict(OptimSettings()), **raw}
    for name in ("lr", "ttt_lr"):
        out[name] = _number(where, f"optim.{name}", out[name], low=0.0, low_open=True)
    out["weight_decay"] = _number(where, "optim.weight_decay", out["weight_decay"], low=0.0)
    out["warmup"] = _number(where, "optim.warmup", out["warmup"], low=0.0, high=1.0)
    out["min_lr_ratio"] = _number(where, "optim.min_lr_ratio", out["min_lr_ratio"], low=0.0, high=1.0)
    out["grad_clip"] = _number(where, "optim.grad_clip", out["grad_clip"], low=0.0)
    out["eps"] = _number(where, "optim.eps", out["eps"], low=0.0, low_open=True)
    betas = out["betas"]
    if not isinstance(betas, list | tuple) or len(betas) != 2:
        raise ValueError(f"{where}: optim.betas must be two numbers in [0, 1), got {betas!r}")
    for i, b in enumerate(betas):
        if _number(where, f"optim.betas[{i}]", b, low=0.0) >= 1.0:
            raise ValueError(f"{where}: optim.betas[{i}] must be < 1, got {b!r}")
    out["betas"] = (float(betas[0]), float(betas[1]))
    return OptimSettings(**out)


def _train(raw: Any, where: str) -> TrainSettings:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: train must be a mapping, got {raw!r}")
    _check_keys("train.", raw, {f.name for f in fields(TrainSettings)}, where)
    out = {**asdict(TrainSettings()), **raw}
    for name in ("batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
        out[name] = _number(where, f"train.{name}", out[name], integer=True, low=1)
    out["loader_workers"] = _number(where, "train.loader_workers", out["loader_workers"], integer=True, low=0)
    if out["loss_norm"] not in LOSS_NORMS:
        raise ValueError(f"{where}: train.loss_norm must be one of {LOSS_NORMS}, got {out['loss_norm']!r}")
    if out["precision"] not in PRECISIONS:
        raise ValueError(f"{where}: train.precision must be one of {PRECISIONS}, got {out['precision']!r}")
    for name in ("checkpoint_chunks", "checkpoint_layers", "freeze_vision"):
        if not isinstance(out[name], bool):
            raise ValueError(f"{where}: train.{name} must be true or false, got {out[name]!r}")
    return TrainSettings(**out)


def _data(raw: Any, where: str) -> dict:
    """The loop needs the stages (curriculum.parse_stages checks them); the rest is build_source's."""
    from .curriculum import parse_stages

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: data must be a mapping, got {raw!r}")
    try:
        parse_stages(raw.get("stages"))
    except ValueError as exc:
        raise ValueError(f"{where}: data: {exc}") from exc
    return dict(raw)


def parse_recipe(raw: Any, source: str = "<dict>") -> Recipe:
    """A validated Recipe from the YAML mapping; ValueError naming the field and value otherwise."""
    where = f"recipe {source}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping of preset/init/seed/data/optim/train, got {raw!r}")
    _check_keys("", raw, {"preset", "init", "seed", "data", "optim", "train"}, where)
    preset = raw.get("preset")
    if not isinstance(preset, str) or not preset.strip():
        raise ValueError(f"{where}: preset must name a models/<name>.yaml preset or a YAML path, got {preset!r}")
    init = raw.get("init") or ""
    if not isinstance(init, str):
        raise ValueError(f"{where}: init must be a model.safetensors path or empty, got {init!r}")
    seed = _number(where, "seed", raw.get("seed", 0), integer=True, low=0)
    if "data" not in raw:
        raise ValueError(f"{where}: data is missing (shards and stages)")
    return Recipe(preset=preset, init=init, seed=seed, data=_data(raw["data"], where),
                  optim=_optim(raw.get("optim", {}), where), train=_train(raw.get("train", {}), where),
                  source=source)


def load_recipe(path: str | os.PathLike) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe file not found: {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
    recipe = parse_recipe(raw, str(path))
    # a relative preset or init path is relative to the recipe file when it exists there
    changes = {}
    for name in ("preset", "init"):
        value = getattr(recipe, name)
        if value and value.endswith((".yaml", ".yml", ".safetensors")) and not Path(value).is_absolute():
            beside = path.parent / value
            if beside.exists() and not Path(value).exists():
                changes[name] = str(beside)
    return Recipe(**{**recipe.__dict__, **changes}) if changes else recipe


def warmup_steps(total_steps: int, warmup: float) -> int:
    """HF's rule: ceil(ratio * total)."""
    return math.ceil(total_steps * warmup)


def lr_factor(step: int, total_steps: int, warmup: float, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR at optimiser step `step` (0-based): linear warm-up from 0, then
    cosine from 1 down to `min_lr_ratio` at `total_steps` (HF `cosine_with_min_lr`)."""
    n_warm = warmup_steps(total_steps, warmup)
    if step < n_warm:
        return step / max(1, n_warm)
    progress = min(1.0, (step - n_warm) / max(1, total_steps - n_warm))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
