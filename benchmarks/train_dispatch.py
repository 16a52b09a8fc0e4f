"""Operator dispatches of one training step (forward + backward) of a preset, by batch size.

    python -m benchmarks.train_dispatch [--preset demo] [--frames 96] [--batch 4 --batch 8] [--out DIR]

A step of a small model on a GPU is bound by the host: every dispatched operator is a kernel launch
and every `.item()` / `nonzero()` a wait for the device. This counts both, on the CPU, with a
TorchDispatchMode around `train.forward.sample_loss` and its backward, for clips of `--frames`
random frames (laid out by the real `layout_sample`, one count question each). Dispatches inside
HF's `get_rope_index` are counted apart: since commit 8ead9be the training forward runs it on the
host (the samples' ids live there), so on a GPU they launch nothing; before, they ran on the model's
device, a sync per `.item()`. The rest of the forward's host-side work (ids, masks, label positions:
a few dispatches and one `nonzero` per sample) is counted with the forward. The last column times
`get_rope_index` alone per clip on the host (what the loader's workers now spend). Writes DIR/train_dispatch.json and .md with --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCS = ("aten._local_scalar_dense", "aten.nonzero", "aten.item")


class Dispatches(TorchDispatchMode):
    """Counts dispatches per phase; `host` (set around host-side work) sends them to the host count."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()
        self.phase = "forward"
        self.host = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        where = "host" if self.host else self.phase
        self.counts[where] += 1
        if str(func).startswith(SYNCS):
            self.counts[f"{where} syncs"] += 1
        return func(*args, **(kwargs or {}))


def samples(engine: object, batch: int, frames: int, seed: int = 0) -> list:
    from spatial_ttt_ros.train.samples import layout_sample

    rng = np.random.default_rng(seed)
    cfg = engine.config
    return [layout_sample(cfg, engine.tokenizer, engine.layout,
                          list(rng.integers(0, 256, (frames - 2 * (b % 3), cfg.frame_height, cfg.frame_width, 3),
                                            dtype=np.uint8)),
                          [0.5 * i for i in range(frames - 2 * (b % 3))], "How many chairs are in this room?", str(b % 5))
            for b in range(batch)]


def count_step(engine: object, batch: int, frames: int) -> dict:
    from spatial_ttt_ros.train.forward import rope_positions, sample_loss

    model, config = engine.model, engine.config
    model.requires_grad_(True)
    mode = Dispatches()
    rope = model.model.get_rope_index

    def host_rope(*args: object, **kwargs: object) -> object:
        mode.host = True
        try:
            return rope(*args, **kwargs)
        finally:
            mode.host = False

    model.model.get_rope_index = host_rope
    batch_samples = samples(engine, batch, frames)
    try:
        with mode:
            loss, _ = sample_loss(model, config, batch_samples, checkpoint_chunks=False, per_sample_mean=True)
            mode.phase = "backward"
            loss.backward()
    finally:
        del model.model.get_rope_index
    c = mode.counts
    t0 = time.perf_counter()
    for s in batch_samples:  # HF's get_rope_index alone, on host tensors (what the loader's workers run)
        rope_positions(model, s)
    rope_ms = (time.perf_counter() - t0) * 1000 / len(batch_samples)
    return {"batch": batch, "tokens": sum(len(s) for s in batch_samples), "get_rope_index_ms_per_sample": rope_ms,
            "forward": c["forward"],
            "backward": c["backward"], "syncs": c["forward syncs"] + c["backward syncs"],
            "in_get_rope_index": c["host"], "get_rope_index_syncs": c["host syncs"]}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.stamp import stamp, stamp_line
    from spatial_ttt_ros.runtime.engine import StreamingEngine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    engine = StreamingEngine.from_preset(args.preset, device="cpu")
    rows = [count_step(engine, b, args.frames) for b in args.batch or [4, 8]]
    meta = stamp("python -m benchmarks.train_dispatch " + " ".join(argv if argv is not None else sys.argv[1:]), "cpu")
    lines = [f"# Dispatches of one training step ({args.preset}, clips of <= {args.frames} random frames)", "",
             stamp_line(meta), "",
             "| batch | tokens | forward | backward | syncs | in get_rope_index | its syncs | its host ms per clip |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['tokens']} | {r['forward']} | {r['backward']} | {r['syncs']} | "
              f"{r['in_get_rope_index']} | {r['get_rope_index_syncs']} | {r['get_rope_index_ms_per_sample']:.2f} |"
              for r in rows]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_dispatch.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        (out / "train_dispatch.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
