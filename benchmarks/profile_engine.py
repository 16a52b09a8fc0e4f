"""Profile the engine on the Qwen3-VL-2B architecture (random weights): where ingest and ask time goes.

    python -m benchmarks.profile_engine [--frames 64] [--history 256] [--batch-groups 8] [--ask]
                                        [--decode-graph static]

Prints, for `--frames` frames pushed after `--history` frames already in memory: the free-running
rate, the synchronised split by part (vision tower / TTT layers / anchor layers / MLP), the GPU
kernel time against the wall time (host-bound when the GPU is idle most of the wall), and
torch.profiler's top ops; with `--ask`, the same for one count question. `--decode-graph static`
runs the question and answer passes over the static buffers uncaptured: the kernels a graph replay
launches, one by one in the profile (a captured replay shows as one launch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_engine import QUESTION, QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION
from spatial_ttt_ros.runtime.engine import StreamingEngine


def engine_2b(fw_precision: str, batch_groups: int, decode_graph: str = "auto") -> tuple[StreamingEngine, list[np.ndarray]]:
    """The Qwen3-VL-2B-shaped engine (random weights, bf16) on CUDA and 8 random 352x480 frames."""
    engine = StreamingEngine.from_preset("spatial_ttt_2b", device="cuda", overrides={
        "backbone": "tiny", "tiny_text": QWEN3_VL_2B_TEXT, "tiny_vision": QWEN3_VL_2B_VISION,
        "dtype": "bfloat16", "fw_precision": fw_precision, "ingest_batch_groups": batch_groups,
        "decode_graph": decode_graph})
    rng = np.random.default_rng(0)
    return engine, [rng.integers(0, 256, (352, 480, 3), dtype=np.uint8) for _ in range(8)]


def _push(engine: StreamingEngine, frames: list[np.ndarray], n: int) -> None:
    base = engine.state.last_stamp_s or 0.0
    for i in range(n):
        engine.push_frame(frames[i % len(frames)], base + (i + 1) / 16)


def _report(prof: profile, wall_s: float, label: str) -> None:
    events = prof.key_averages()
    # Kernel rows only: an aten op's row carries the device time of the kernels it launched, and
    # counting both printed "159 % busy" for a GPU that was busy 83 % of the wall.
    gpu_us = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA)
    print(f"{label}: wall {wall_s * 1000:.1f} ms, GPU kernels {gpu_us / 1000:.1f} ms "
          f"({100 * gpu_us / 1e6 / wall_s:.0f}% busy)")
    print(events.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=60))


PARTS = ("_raw", "_ttt", "_anchor", "_finish_layer")  # the decoder's parts of a pass (and "vision")


def with_parts_wrapped(engine: StreamingEngine, wrap: Callable[[str, Callable], Callable], run: Callable[[], object]) -> None:
    """Run `run()` with the vision tower's forward and the decoder's PARTS replaced by `wrap(name, fn)`;
    the wrappers are removed afterwards."""
    visual, dec = engine.model.model.visual, engine.decoder
    visual.forward = wrap("vision", visual.forward)
    for name in PARTS:
        setattr(dec, name, wrap(name, getattr(dec, name)))
    try:
        run()
    finally:
        del visual.forward
        for name in PARTS:
            delattr(dec, name)


def split_by_part(engine: StreamingEngine, run: Callable[[], None]) -> dict[str, float]:
    """Synchronised time of each part while `run()` runs (the wrappers are removed afterwards)."""
    totals: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            torch.cuda.synchronize()
            totals[name] += time.perf_counter() - t0
            return out
        return wrapper

    with_parts_wrapped(engine, timed, run)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--history", type=int, default=256)
    parser.add_argument("--fw-precision", default="fp32")
    parser.add_argument("--batch-groups", type=int, default=1)
    parser.add_argument("--ask", action="store_true", help="also profile one ask() (count question, 8 tokens)")
    parser.add_argument("--vision", action="store_true", help="only profile the vision tower on --frames frames")
    parser.add_argument("--decode-graph", default="auto", choices=("auto", "graph", "static", "off"),
                        help="the engine's decode_graph (static: the graph's kernels, uncaptured)")
    args = parser.parse_args(argv)
    engine, frames = engine_2b(args.fw_precision, args.batch_groups, args.decode_graph)
    if args.vision:
        profile_vision(engine, frames, args.frames)
        return 0
    _push(engine, frames, args.history)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    _push(engine, frames, args.frames)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    print(f"{args.frames} frames after {args.history} in {wall:.2f} s = {args.frames / wall:.1f} frames/s "
          f"({args.batch_groups} pairs per pass, {args.fw_precision})")
    totals = split_by_part(engine, lambda: _push(engine, frames, args.frames))
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {1000 * t / args.frames:8.2f} ms/frame (synchronised)")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        _push(engine, frames, args.frames)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    _report(prof, wall, f"ingest of {args.frames} frames (profiled)")
    if args.ask:
        profile_ask(engine)
    return 0


def profile_vision(engine: StreamingEngine, frames: list[np.ndarray], n: int) -> None:
    """The vision tower alone on n frames (n / 2 groups in one call, as batched ingest calls it)."""
    from spatial_ttt_ros.runtime.tokens import patchify_pair

    pairs = [patchify_pair(np.stack([frames[(2 * g) % 8], frames[(2 * g + 1) % 8]])) for g in range(n // 2)]
    (_, gh, gw) = pairs[0][1]
    visual = engine.model.model.visual
    pixels = torch.cat([p for p, _ in pairs]).to("cuda", visual.dtype)
    grid = torch.tensor([[n // 2, gh, gw]], device="cuda")
    print(f"vision attention implementation: {visual.config._attn_implementation}")

    def run() -> None:
        with torch.no_grad():
            visual(pixels, grid_thw=grid, return_dict=True)

    for _ in range(2):
        run()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        run()
    torch.cuda.synchronize()
    print(f"vision tower: {(time.perf_counter() - t0) / 5 / n * 1000:.2f} ms/frame ({n} frames per call)")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    _report(prof, wall, "vision tower (profiled)")


def profile_ask(engine: StreamingEngine) -> None:
    """One count question over the prepared memory (engine.prepare(): the pending frames are not
    in the profile, only the question pass and its answer tokens)."""
    engine.prepare()
    for _ in range(2):
        engine.ask(QUESTION, max_new_tokens=8)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    answer = engine.ask(QUESTION, max_new_tokens=8)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    print(f"ask: {wall * 1000:.1f} ms, prefill {answer.prefill_s * 1000:.1f} ms, "
          f"decode {answer.decode_s * 1000 / max(1, len(answer.token_ids) - 1):.1f} ms/token "
          f"({engine.frames_in_memory} frames, {len(engine.state.pending_frames)} pending; question pass "
          f"{answer.question_path}, answer tokens {answer.decode_path})")
    totals = split_by_part(engine, lambda: engine.ask(QUESTION, max_new_tokens=8))
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {1000 * t:8.2f} ms per ask (synchronised)")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        engine.ask(QUESTION, max_new_tokens=8)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    _report(prof, wall, "ask (profiled)")


if __name__ == "__main__":
    sys.exit(main())
