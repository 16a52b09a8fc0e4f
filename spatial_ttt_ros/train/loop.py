"""The training loop: recipe -> model -> samples -> loss -> AdamW step, resumable, under torchrun.

Global batch per optimiser step: G = world x batch_size x grad_accum samples, the global sample
indices step*G ... step*G + G - 1. Rank r's micro-batch a takes indices
step*G + a*world*B + r*B + (0..B-1), so any (world, grad_accum) split of the same G sees the same
samples, and the data cursor is just the step (resume restarts at index step*G).
The loss is the mean token cross-entropy over the label tokens of the whole global batch: each
micro-batch's CE sum is divided by the global label-token count (summed over ranks before the
forward) and multiplied by the world size (DDP and FSDP2 average gradients over ranks), so
1 process x accumulation and N processes give the same gradients. With `train.loss_norm: samples`
it is the mean over the global batch's samples of each sample's mean token CE, normalised the same
way by the global count of samples with labels.
The loss itself is `forward.TrainForward` (= `sample_loss`, the training forward), samples come from
`dataset.build_source`, the sliding window per step from `curriculum`. With `train.loader_workers`
> 0 the samples of the next steps are built ahead in forked worker processes (a torch DataLoader
over steps); the samples are the same (the source is deterministic in index and step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..runtime.config import load_config
from ..runtime.model import build_model, load_checkpoint
from ..runtime.tokens import ChatLayout
from . import checkpoint as ckpt_io
from .curriculum import parse_stages, stage_at, window_at
from .forward import TrainForward, rope_positions
from .optim import build_optimizer, set_lr, set_trainable
from .progress import Progress
from .recipe import Recipe
from .samples import IGNORE
from .strategy import (
    Dist,
    all_sum,
    any_rank,
    autocast,
    clip_grad_norm,
    close_dist,
    grad_sync,
    init_dist,
    layers_called_as_modules,
    wrap,
)


@dataclass
class RunResult:
    step: int                                   # optimiser steps done in total
    losses: dict[int, float] = field(default_factory=dict)  # step (1-based) -> global mean token CE
    stopped: str = "done"                       # done | max_steps | time_limit
    checkpoint: str | None = None
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained model (this rank's view)
    fsdp_layer_units: bool | None = None        # fsdp2: decoder layers sharded as their own units


def global_indices(step: int, micro: int, *, rank: int, world: int, batch: int, accum: int) -> list[int]:
    g = world * batch * accum
    start = step * g + micro * world * batch + rank * batch
    return list(range(start, start + batch))


class StepBatches(torch.utils.data.Dataset):
    """Item k = this rank's micro-batches (lists of samples) for optimiser step `first + k`."""

    def __init__(self, source: object, first: int, last: int, d: Dist, batch: int, accum: int,
                 prepare: Callable | None = None) -> None:
        self.source, self.first, self.last, self.d, self.batch, self.accum = source, first, last, d, batch, accum
        self.prepare = prepare or (lambda sample: sample)

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, k: int) -> list[list]:
        step = self.first + k
        return [[self.prepare(self.source.sample(i, step)) for i in global_indices(step, a, rank=self.d.rank, world=self.d.world,
                                                                     batch=self.batch, accum=self.accum)]
                for a in range(self.accum)]


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


def step_batches(source: object, first: int, last: int, d: Dist, batch: int, accum: int,
                 workers: int, prepare: Callable | None = None) -> Iterator[list[list]]:
    """Micro-batches for steps first..last-1, in order; built ahead by `workers` forked processes,
    each sample passed through `prepare` there (the loop: its mRoPE positions, forward.rope_positions)."""
    data = StepBatches(source, first, last, d, batch, accum, prepare)
    if workers == 0:
        return (data[k] for k in range(len(data)))
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=workers,
                                         prefetch_factor=4, multiprocessing_context="fork",
                                         worker_init_fn=_single_thread)
    return iter(loader)


def label_tokens(sample: object) -> int:
    """Positions whose next-token target is a label (the loss shifts by one)."""
    return int((sample.labels[1:] != IGNORE).sum())


def default_source_factory(recipe: Recipe) -> Callable:
    from .dataset import build_source

    return lambda config, tokenizer, layout: build_source(recipe.data, config, tokenizer, layout, seed=recipe.seed)


def window_for_step(stages: list, step: int, config: object) -> tuple[int, str]:
    """(sliding window in tokens, stage name) at optimiser step `step` (curriculum.py decides)."""
    stage, in_stage = stage_at(stages, step)
    return int(window_at(stage, in_stage, config)), stage.name


def setup_model(recipe: Recipe, d: Dist) -> tuple:
    """(config, model, tokenizer, layout): fp32 master weights, vision frozen as the recipe says."""
    preset = load_config(recipe.preset)
    config = preset.replace(dtype="float32")
    model, tokenizer = build_model(config, d.device)
    if recipe.init:
        load_checkpoint(model, recipe.init)
    model.train()
    set_trainable(model, freeze_vision=recipe.train.freeze_vision)
    if recipe.train.checkpoint_layers:
        # HF's GradientCheckpointingLayer: each decoder layer recomputes its forward in backward
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:  # transformers 5.17 (the GPU image)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return preset, config, model, tokenizer, ChatLayout.from_tokenizer(tokenizer, config.system_prompt)


def train(recipe: Recipe, out_dir: str | Path, *, strategy: str = "single", max_steps: int | None = None,
          time_limit: float | None = None, source_factory: Callable | None = None, progress_bar: bool = True,
          checkpoints: bool = True) -> RunResult:
    """Run (or resume) `recipe` into `out_dir`. `source_factory(config, tokenizer, layout)` defaults
    to `dataset.build_source` over `recipe.data`. `checkpoints=False` writes none (benchmarks)."""
    t_start = time.monotonic()
    out_dir = Path(out_dir)
    d = init_dist(strategy)
    try:
        return _train(recipe, out_dir, d, max_steps, time_limit, source_factory, progress_bar, checkpoints, t_start)
    finally:
        close_dist(d)


def _train(recipe: Recipe, out_dir: Path, d: Dist, max_steps: int | None, time_limit: float | None,
           source_factory: Callable | None, progress_bar: bool, checkpoints: bool, t_start: float) -> RunResult:
    torch.manual_seed(recipe.seed + d.rank)
    tr, total = recipe.train, recipe.total_steps
    bf16 = tr.precision == "bf16" and d.device.type == "cuda"
    preset, config, model, tokenizer, layout = setup_model(recipe, d)
    source = (source_factory or default_source_factory(recipe))(config, tokenizer, layout)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(out_dir, enabled=d.is_main, total_steps=total, start_step=0, bar=progress_bar)
    if tr.precision == "bf16" and not bf16:
        progress.note("precision bf16 needs CUDA: this CPU run trains in fp32")
    stages = parse_stages(recipe.stages)
    net = TrainForward(model, config)
    shard_layers = True
    if d.strategy == "fsdp2":
        probe = [source.sample(global_indices(0, 0, rank=d.rank, world=d.world, batch=1, accum=1)[0], 0)]
        shard_layers = layers_called_as_modules(net, probe, window_size=window_for_step(stages, 0, config)[0],
                                                checkpoint_chunks=False)
        if not shard_layers:
            progress.note("the training forward does not call decoder layers as modules: FSDP2 shards the root only")
    wrapped = wrap(net, d, bf16=bf16, shard_layers=shard_layers)
    fsdp_layer_units = shard_layers if d.strategy == "fsdp2" else None
    optimizer = build_optimizer(model, recipe.optim)
    trainable = [p for p in model.parameters() if p.requires_grad]

    step = saved = 0
    latest = ckpt_io.latest(out_dir)
    if latest is not None:
        state = ckpt_io.load(latest, model, optimizer, rank=d.rank)
        step = saved = int(state["step"])
        if state.get("global_batch") != d.world * tr.batch_size * tr.grad_accum:
            progress.note(f"resumed with a different global batch ({state.get('global_batch')} -> "
                          f"{d.world * tr.batch_size * tr.grad_accum}): the data cursor moves by step")
        progress.bar.update(step)
        progress.note(f"resumed from {latest} at step {step}")
    elif d.is_main:
        ckpt_io._write_json(out_dir / "run.json", {
            "recipe": recipe.to_dict(), "recipe_path": recipe.source, "preset_config": preset.to_dict(),
            "strategy": d.strategy, "world": d.world, "total_steps": total})

    stop_at = min(total, max_steps) if max_steps is not None else total
    result = RunResult(step=step, fsdp_layer_units=fsdp_layer_units)
    step_times: list[float] = []
    accum, batch = tr.grad_accum, tr.batch_size
    per_sample = tr.loss_norm == "samples"
    batches = step_batches(source, step, stop_at, d, batch, accum, tr.loader_workers,
                           prepare=lambda s: replace(s, position_ids=rope_positions(model, s)))
    while step < stop_at:
        if time_limit is not None:
            need = (max(step_times[-3:]) if step_times else 0.0) * 1.5 + 5.0
            if any_rank(time.monotonic() - t_start + need > time_limit, d):
                result.stopped = "time_limit"
                break
        t0 = time.monotonic()
        factor = set_lr(optimizer, step, total, recipe.optim)
        window, stage = window_for_step(stages, step, config)
        micro = next(batches)
        n_label, n_tokens, n_answered = all_sum([sum(label_tokens(s) for mb in micro for s in mb),
                                                 sum(len(s) for mb in micro for s in mb),
                                                 sum(label_tokens(s) > 0 for mb in micro for s in mb)], d)
        if n_label == 0:
            raise ValueError(f"step {step}: the global batch has no label tokens (samples without answers)")
        denominator = n_answered if per_sample else n_label
        ce_sum = torch.zeros((), dtype=torch.float64)
        for a, samples in enumerate(micro):
            with grad_sync(wrapped, d, a == accum - 1), autocast(d, bf16):
                loss, count = wrapped(samples, window_size=window, checkpoint_chunks=tr.checkpoint_chunks,
                                      per_sample_mean=per_sample)
                expected = sum(label_tokens(s) for s in samples)
                if int(count) != expected:
                    raise ValueError(f"sample_loss counted {int(count)} label tokens, the labels hold {expected}")
                (loss * (d.world / denominator)).backward()
            ce_sum += loss.detach().double().cpu()
        grad_norm = clip_grad_norm(trainable, recipe.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        mean_loss = all_sum([float(ce_sum)], d)[0] / denominator
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"step {step}: loss is {mean_loss} (lr {recipe.optim.lr * factor:.3g})")
        result.losses[step] = mean_loss
        dt = time.monotonic() - t0
        step_times.append(dt)
        row = {"step": step, "loss": mean_loss, "lr": recipe.optim.lr * factor, "ttt_lr": recipe.optim.ttt_lr * factor,
               "grad_norm": grad_norm, "window": window, "stage": stage,
               "tokens": int(n_tokens), "label_tokens": int(n_label), "step_s": dt, "tokens_per_s": n_tokens / dt,
               "elapsed_s": time.monotonic() - t_start}
        progress.step(row, log=step % tr.log_every == 0 or step == stop_at or step == 1)
        if checkpoints and (step % tr.save_every == 0 or step == stop_at):
            result.checkpoint = str(ckpt_io.save(out_dir, model, optimizer, _trainer_state(step, d, tr),
                                                 rank=d.rank, keep=tr.keep_checkpoints))
            saved = step
    if step < total and result.stopped == "done":
        result.stopped = "max_steps"
    if checkpoints and step > saved:
        result.checkpoint = str(ckpt_io.save(out_dir, model, optimizer, _trainer_state(step, d, tr),
                                             rank=d.rank, keep=tr.keep_checkpoints))
    result.step = step
    result.model = model.eval()
    progress.note(f"stopped at step {step}/{total} ({result.stopped}); checkpoint {result.checkpoint}")
    progress.close()
    return result


def _trainer_state(step: int, d: Dist, tr: object) -> dict:
    g = d.world * tr.batch_size * tr.grad_accum
    return {"step": step, "data_cursor": step * g, "global_batch": g, "world": d.world, "strategy": d.strategy}
