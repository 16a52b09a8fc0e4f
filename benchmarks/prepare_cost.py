"""What engine.prepare() costs in a node's rhythm: bursts of frames, prepare() in the idle time between
them, a question now and then (any device).

    python -m benchmarks.prepare_cost [--preset demo] [--batch-groups 8] [--frames 240] [--burst 5]
                                      [--device cpu] [--repeat 3] [--out DIR]

Pushes `--frames` random frames in bursts of `--burst` (fewer than a batch of 2 x batch-groups, so
pairs are still waiting when the idle time comes), calls prepare() after each burst and asks one
count question every 4 bursts, as the perception node's worker does. Reports the time spent in
pushes, in prepare() and in the questions, the frames the memory took in, and the bytes each kept
fork held beyond the memory (storages the memory does not share). Speed and bytes do not depend on
the frames' content; times are medians of `--repeat` runs (a fresh engine each). Writes
prepare_cost.json / .md to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from benchmarks.stamp import stamp, stamp_line, write_result
from spatial_ttt_ros.runtime.engine import StreamingEngine

QUESTION = "How many chairs are in this room?"
ASK_EVERY = 4  # bursts


def measure(args: argparse.Namespace) -> dict:
    engine = StreamingEngine.from_preset(args.preset, device=args.device,
                                         overrides={"ingest_batch_groups": args.batch_groups})
    h, w = engine.config.frame_height, engine.config.frame_width
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(8)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    spent = {"push_s": 0.0, "prepare_s": 0.0, "ask_s": 0.0}
    extra, waiting = [], []

    def timed(name: str, fn) -> None:  # noqa: ANN001
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        spent[name] += time.perf_counter() - t0

    for burst, start in enumerate(range(0, args.frames, args.burst)):
        def push(start: int = start) -> None:
            for i in range(start, min(args.frames, start + args.burst)):
                engine.push_frame(frames[i % len(frames)], i / 10)
        timed("push_s", push)
        waiting.append(len(engine.state.pending_frames))
        timed("prepare_s", engine.prepare)
        memory = engine.state.storages()
        extra.append(sum(b for p, b in engine._prepared.storages().items() if p not in memory))
        if burst % ASK_EVERY == ASK_EVERY - 1:
            timed("ask_s", lambda: engine.ask(QUESTION, max_new_tokens=3))
    return {"preset": args.preset, "ingest_batch_groups": args.batch_groups, "frames": args.frames,
            "burst": args.burst, "bursts": len(waiting), "questions": len(waiting) // ASK_EVERY, **spent,
            "total_s": sum(spent.values()), "mean_frames_waiting_before_prepare": statistics.mean(waiting),
            "frames_waiting_at_end": len(engine.state.pending_frames),
            "memory_bytes_at_end": engine.state.storage_bytes(),
            "prepared_fork_extra_bytes_mean": statistics.mean(extra), "prepared_fork_extra_bytes_max": max(extra)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batch-groups", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not 0 < args.burst < 2 * args.batch_groups or args.frames < args.burst:
        print(f"--burst must be 1..{2 * args.batch_groups - 1} (fewer than a batch) and at most --frames", file=sys.stderr)
        return 2
    runs = []
    for _ in range(max(1, args.repeat)):
        torch.manual_seed(0)
        runs.append(measure(args))
    row = {**runs[0], **{k: statistics.median(r[k] for r in runs) for k in ("push_s", "prepare_s", "ask_s", "total_s")},
           "repeats": len(runs), "total_s_each": [r["total_s"] for r in runs]}
    result = {**stamp(" ".join(["python -m benchmarks.prepare_cost", *(argv if argv is not None else sys.argv[1:])]),
                      args.device), **row}
    mib = 2 ** 20
    lines = [stamp_line(result), "",
             f"{row['frames']} frames in bursts of {row['burst']}, prepare() after each burst, a count question "
             f"every {ASK_EVERY} bursts; {row['ingest_batch_groups']} pairs per pass; seconds are medians of "
             f"{row['repeats']} runs.", "",
             "| preset | seconds in pushes | in prepare() | in questions | total | frames waiting before prepare(), mean "
             "| kept fork beyond the memory, MiB: mean / max | memory at the end, MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| {row['preset']} | {row['push_s']:.2f} | {row['prepare_s']:.2f} | {row['ask_s']:.2f} | {row['total_s']:.2f} "
             f"| {row['mean_frames_waiting_before_prepare']:.1f} | {row['prepared_fork_extra_bytes_mean'] / mib:.2f} / "
             f"{row['prepared_fork_extra_bytes_max'] / mib:.2f} | {row['memory_bytes_at_end'] / mib:.2f} |"]
    write_result(args.out, "prepare_cost", result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
