"""Resume checkpoints (torch.distributed.checkpoint) and the release export (one model.safetensors).

A run directory:
    run.json                       recipe, preset config, strategy and world size of the first start
    latest.json                    {"step": k, "dir": "checkpoints/step_0000000k"}, written last
    checkpoints/step_<k>/          DCP shards of {"model", "optim"} (get_state_dict names = the
                                   released layout), trainer_state.json (step, data cursor, counters),
                                   rng_rank<r>.json (python / numpy / torch / CUDA RNG of rank r)
Nothing is pickled: DCP's own format for tensors, JSON for the rest.

Export writes `model.safetensors` (every tensor of the wrapped model, names as
`runtime/model.py::load_checkpoint` verifies, tied embeddings as copies) with the semantic flags
in its metadata, and `<preset name>.yaml` beside it, so that
`StreamingEngine.from_preset("<out>/<name>.yaml", checkpoint="<out>")` loads it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from ..runtime.config import SpatialTTTConfig
from ..runtime.model import build_model, save_checkpoint

LATEST = "latest.json"
EXPORT_DTYPES = {"preset": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextmanager
def _quiet_single_process():  # noqa: ANN202
    """DCP warns that it assumes one process whenever no process group exists; that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def rng_state() -> dict:
    def b64(t: torch.Tensor) -> str:
        return base64.b64encode(t.cpu().numpy().tobytes()).decode()

    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}
    py = random.getstate()
    out = {"python": [py[0], list(py[1]), py[2]], "numpy": np_state, "torch": b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        out["cuda"] = b64(torch.cuda.get_rng_state())
    return out


def set_rng_state(state: dict) -> None:
    def unb64(s: str) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(unb64(state["cuda"]))


def latest(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    path = Path(run_dir) / LATEST
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    ckpt = Path(run_dir) / info["dir"]
    if not (ckpt / ".metadata").is_file():
        raise ValueError(f"{str(path)!r} names {str(ckpt)!r}, which holds no DCP checkpoint")
    return ckpt


def save(run_dir: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict,
         *, rank: int, keep: int = 2) -> Path:
    """Collective: every rank writes its shards; rank 0 writes the JSON and moves `latest.json`."""
    run_dir = Path(run_dir)
    step = int(trainer_state["step"])
    ckpt = run_dir / "checkpoints" / f"step_{step:08d}"
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(ckpt), no_dist=not _distributed())
    _write_json(ckpt / f"rng_rank{rank}.json", rng_state())
    _barrier()
    if rank == 0:
        _write_json(ckpt / "trainer_state.json", trainer_state)
        _write_json(run_dir / LATEST, {"step": step, "dir": str(ckpt.relative_to(run_dir))})
        old = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if p != ckpt)
        for p in old[:max(0, len(old) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    _barrier()
    return ckpt


def load(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, rank: int) -> dict:
    """Collective: restore model + optimiser (any world size: DCP reshards), this rank's RNG when
    it was saved, and return the trainer state."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=str(ckpt), no_dist=not _distributed())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = ckpt / f"rng_rank{rank}.json"
    if rng.is_file():
        set_rng_state(json.loads(rng.read_text()))
    return json.loads((ckpt / "trainer_state.json").read_text())


def semantic_metadata(config: SpatialTTTConfig, **extra: object) -> dict[str, str]:
    """safetensors metadata (str -> str): what the checkpoint's numbers mean."""
    meta = {"format": "pt", "preset": config.name, "use_muon": config.use_muon, "prenorm": config.prenorm,
            "chunk_size": config.chunk_size, "window_size": config.window_size,
            "frame_height": config.frame_height, "frame_width": config.frame_width,
            "use_conv": config.use_conv, "use_momentum": config.use_momentum, "num_fw_heads": config.num_fw_heads,
            "ttt_layers": list(config.ttt_layers), "backbone": config.backbone, **extra}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def export(run_dir: str | os.PathLike, out: str | os.PathLike, *, dtype: str = "preset",
           ckpt: str | os.PathLike | None = None) -> Path:
    """The newest (or the given) checkpoint of `run_dir` -> `out/model.safetensors` + `out/<name>.yaml`."""
    run_dir = Path(run_dir)
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"export dtype must be one of {list(EXPORT_DTYPES)}, got {dtype!r}")
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ValueError(f"{str(run_dir)!r} is not a training run directory (no run.json)")
    ckpt = Path(ckpt) if ckpt else latest(run_dir)
    if ckpt is None:
        raise ValueError(f"{str(run_dir)!r} holds no checkpoint yet (no {LATEST})")
    info = json.loads(run_file.read_text())
    fields = dict(info["preset_config"])
    fields["ttt_layers"] = tuple(fields["ttt_layers"])
    config = SpatialTTTConfig(**fields)
    model, _ = build_model(config.replace(dtype="float32"), torch.device("cpu"))
    model_sd = model.state_dict()
    with _quiet_single_process():
        dcp.load({"model": model_sd}, checkpoint_id=str(ckpt), no_dist=True)
    model.load_state_dict(model_sd)
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    store = EXPORT_DTYPES[dtype] or getattr(torch, config.dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = semantic_metadata(config, step=step, storage_dtype=str(store).removeprefix("torch."),
                             recipe=info.get("recipe_path", ""))
    path = save_checkpoint(model, out, metadata=meta, dtype=store)
    # the YAML names the weights beside it: from_preset(<yaml>) alone loads them
    preset = {**config.to_dict(), "weights": "model.safetensors"}
    (out / f"{config.name}.yaml").write_text(
        f"# exported by `spatial-ttt train export` from {run_dir} at step {step}\n"
        + yaml.safe_dump(preset, sort_keys=False))
    return path
