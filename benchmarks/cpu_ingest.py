"""CPU: per-frame ingest time and memory bytes per part vs frames pushed (tiny preset).

    python -m benchmarks.cpu_ingest [--preset tiny] [--frames 320] [--threads 2] [--warmup 32] [--out benchmarks/results]

The TTT-layer parts (fast weights, momentum, row norms, pending, window KV, conv carry) must stay
flat; only the anchor layers' KV grows. Before timing, `--warmup` frames go through the engine and
are dropped (reset), so one-time costs (allocator, first kernels) are not counted. Writes
cpu_ingest.json / .md (tiny) or cpu_ingest_<preset>.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.stamp import stamp
from spatial_ttt_ros.runtime.engine import StreamingEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=320)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=32, help="frames pushed (then reset) before timing")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Speed does not depend on the weight values: a preset's trained weights are not needed.
    engine = StreamingEngine.from_preset(args.preset, device="cpu", overrides={"weights": ""})
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(16)]
    for i in range(args.warmup):
        engine.push_frame(frames[i % len(frames)], 0.1 * i)
    if args.warmup:
        engine.ask("How many chairs are in this room?", max_new_tokens=2)
    engine.reset()
    load_before = os.getloadavg()[0]  # other processes on the machine slow a CPU run down: say how busy it was
    checkpoints = {32, 64, 128, 256, args.frames}
    rows, times = [], []
    for i in range(args.frames):
        t0 = time.perf_counter()
        engine.push_frame(frames[i % len(frames)], 0.1 * i)
        times.append(time.perf_counter() - t0)
        if i + 1 in checkpoints:
            c = engine.counters
            window = times[-32:]
            rows.append({"frames": i + 1, "ms_per_frame_last32": 1000 * float(np.mean(window)),
                         "keyframes_per_s_last32": float(1.0 / np.mean(window)), "tokens": c.tokens, "chunk_updates": c.updates, "bytes": c.bytes_by_part,
                         "ttt_bytes": sum(v for k, v in c.bytes_by_part.items() if k not in ("anchor_kv", "frame_buffer")),
                         "anchor_kv_bytes": c.bytes_by_part["anchor_kv"]})
    t0 = time.perf_counter()
    answer = engine.ask("How many chairs are in this room?", max_new_tokens=8)
    ask_s = time.perf_counter() - t0
    result = {**stamp(" ".join(["python -m benchmarks.cpu_ingest", *(argv if argv is not None else sys.argv[1:])]), "cpu"),
              "preset": args.preset, "warmup_frames": args.warmup,
              "mean_ms_per_frame": 1000 * float(np.mean(times)), "keyframes_per_s": float(len(times) / np.sum(times)),
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "input_frame": "240x320 RGB, resized to the preset's frame size", "rows": rows,
              "ask_s_at_end": ask_s, "answer_tokens": len(answer.token_ids),
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cpu_ingest" if args.preset == "tiny" else f"cpu_ingest_{Path(args.preset).stem}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"CPU ingest, preset `{args.preset}`, torch {torch.__version__}, transformers {result['transformers']}, "
             f"{torch.get_num_threads()} threads, {result['cpu']}, commit {result['commit']}, "
             f"`{result['command']}` ({args.warmup} warm-up frames, not timed; load average "
             f"{load_before:.1f} -> {result['load_average_1min']['after']:.1f} on {os.cpu_count()} CPUs)", "",
             "| frames | ms/frame (last 32) | keyframes/s (last 32) | tokens | chunk updates | TTT-layer bytes | anchor KV bytes |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['frames']} | {r['ms_per_frame_last32']:.2f} | {r['keyframes_per_s_last32']:.1f} | {r['tokens']} | "
              f"{r['chunk_updates']} | {r['ttt_bytes']:,} | {r['anchor_kv_bytes']:,} |" for r in rows]
    lines += ["", f"all {args.frames} frames: {result['keyframes_per_s']:.1f} keyframes/s "
              f"({result['mean_ms_per_frame']:.2f} ms/frame)",
              f"ask (8 new tokens) after {args.frames} frames: {ask_s * 1000:.1f} ms"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
