"""Profile streaming ingest on the Qwen3-VL-2B architecture (random weights): where a frame's time goes.

    python -m benchmarks.profile_engine [--frames 32] [--fw-precision fp32|bf16]

Prints the wall time split (vision tower / decoder layers by kind) and torch.profiler's top ops.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from benchmarks.bench_engine import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION
from spatial_ttt_ros.runtime.engine import StreamingEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--fw-precision", default="fp32")
    parser.add_argument("--batch-groups", type=int, default=1)
    args = parser.parse_args(argv)
    engine = StreamingEngine.from_preset("spatial_ttt_2b", device="cuda", overrides={
        "backbone": "tiny", "tiny_text": QWEN3_VL_2B_TEXT, "tiny_vision": QWEN3_VL_2B_VISION,
        "dtype": "bfloat16", "fw_precision": args.fw_precision, "ingest_batch_groups": args.batch_groups})
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (352, 480, 3), dtype=np.uint8) for _ in range(8)]
    totals: dict[str, float] = defaultdict(float)

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            torch.cuda.synchronize()
            totals[name] += time.perf_counter() - t0
            return out
        return wrapper

    visual = engine.model.model.visual
    visual.forward = timed("vision", visual.forward)
    dec = engine.decoder
    for name in ("_ttt", "_anchor", "_finish_layer", "_raw"):
        setattr(dec, name, timed(name, getattr(dec, name)))
    for i in range(32):  # warm-up, fills the wavefront
        engine.push_frame(frames[i % 8], i / 16)
    totals.clear()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(args.frames):
        engine.push_frame(frames[i % 8], 2 + i / 16)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    print(f"{args.frames} frames in {wall:.2f} s = {args.frames / wall:.1f} frames/s (synchronised timing)")
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {1000 * t / args.frames:8.2f} ms/frame")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(16):
            engine.push_frame(frames[i % 8], 10 + i / 16)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
