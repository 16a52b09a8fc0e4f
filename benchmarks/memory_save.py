"""CPU: how long saving a bounded memory takes, and whether ingest stalls while it is written.

    python -m benchmarks.memory_save [--budget 16384] [--frames 240] [--out benchmarks/results]

A `tiny` model scaled to the 2B model's anchor KV width (8 KV heads x 128, fp32 here) and 352x480
frames (165 visual tokens per frame pair, as the 2B preset), bounded at --budget anchor tokens.
Measures engine.snapshot() (on the engine's thread: the only part that holds ingest up) and
Snapshot.write() (atomic file write, on a writer thread), and the per-frame ingest time while a
write runs next to the same without one. Writes memory_save.json and memory_save.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from spatial_ttt_ros.runtime.engine import StreamingEngine

SCALED = {"tiny_text": {"vocab_size": 320, "hidden_size": 1024, "intermediate_size": 256, "num_hidden_layers": 4,
                        "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 128,
                        "max_position_embeddings": 1000000, "rms_norm_eps": 1.0e-6, "rope_theta": 5000000.0,
                        "mrope_section": [24, 20, 20]},
          "frame_height": 352, "frame_width": 480}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _ingest(engine: StreamingEngine, frames: list[np.ndarray], t0: float) -> list[float]:
    times = []
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        engine.push_frame(frame, t0 + 0.5 * i)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=16384)
    parser.add_argument("--frames", type=int, default=240, help="frames pushed before saving")
    parser.add_argument("--probe", type=int, default=24, help="frames timed with and without a write")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu",
                                         overrides={**SCALED, "anchor_kv_budget_tokens": args.budget})
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (352, 480, 3), dtype=np.uint8) for _ in range(8)]
    stream = [frames[i % 8] for i in range(args.frames)]
    _ingest(engine, stream, 0.0)
    c = engine.counters
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".memory_save_probe.safetensors"
    probe = [frames[i % 8] for i in range(args.probe)]
    t = 0.5 * args.frames
    quiet = _ingest(engine, probe, t)
    t += 0.5 * args.probe
    start = time.perf_counter()
    snap = engine.snapshot()
    snapshot_s = time.perf_counter() - start
    write_s: list[float] = []

    def write() -> None:
        w0 = time.perf_counter()
        snap.write(path)
        write_s.append(time.perf_counter() - w0)

    writer = threading.Thread(target=write)
    writer.start()
    during, frames_during = [], 0
    while writer.is_alive() or frames_during < args.probe:  # ingest for at least the write's duration
        during += _ingest(engine, [probe[frames_during % len(probe)]], t)
        t += 0.5
        frames_during += 1
    writer.join()
    file_bytes = path.stat().st_size
    path.unlink()
    start = time.perf_counter()
    engine.save(path)  # the whole save on the engine's thread, for comparison
    blocking_s = time.perf_counter() - start
    path.unlink()
    result = {
        "command": " ".join(["python -m benchmarks.memory_save", *(argv if argv is not None else sys.argv[1:])]),
        "commit": _commit(), "device": "cpu", "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
        "model": "tiny scaled: 8 KV heads x 128, hidden 1024, 4 layers (3 TTT, 1 anchor), fp32, 352x480 frames",
        "budget_tokens": args.budget, "frames": engine.frames_in_memory, "anchor_tokens": c.anchor_tokens,
        "evicted_groups": c.evicted_groups, "memory_bytes": sum(c.bytes_by_part.values()),
        "bytes_by_part": c.bytes_by_part, "file_bytes": file_bytes,
        "snapshot_s": snapshot_s, "write_s": write_s[0], "blocking_save_s": blocking_s,
        "write_mb_per_s": file_bytes / 1e6 / write_s[0],
        "ingest_ms_per_frame_quiet": {"median": 1000 * float(np.median(quiet)), "max": 1000 * float(np.max(quiet))},
        "ingest_ms_per_frame_during_write": {"median": 1000 * float(np.median(during)),
                                             "max": 1000 * float(np.max(during)), "frames": len(during)},
    }
    (out / "memory_save.json").write_text(json.dumps(result, indent=2) + "\n")
    q, d = result["ingest_ms_per_frame_quiet"], result["ingest_ms_per_frame_during_write"]
    lines = [f"Saving a bounded memory, CPU ({result['cpu']}, {result['threads']} thread), torch {torch.__version__}, "
             f"commit {result['commit']}, `{result['command']}`", "",
             f"Model: {result['model']}; budget {args.budget} anchor tokens; {result['frames']} frames "
             f"({c.evicted_groups} frame groups evicted).", "",
             "| memory bytes | file bytes | snapshot (engine thread) | write (writer thread) | whole save on the engine thread |",
             "|---:|---:|---:|---:|---:|",
             f"| {result['memory_bytes']:,} | {file_bytes:,} | {snapshot_s * 1000:.0f} ms | {write_s[0] * 1000:.0f} ms "
             f"({result['write_mb_per_s']:.0f} MB/s) | {blocking_s * 1000:.0f} ms |", "",
             "| ingest per frame | median | max | frames |", "|---|---:|---:|---:|",
             f"| no write running | {q['median']:.1f} ms | {q['max']:.1f} ms | {len(quiet)} |",
             f"| while the snapshot is written | {d['median']:.1f} ms | {d['max']:.1f} ms | {d['frames']} |"]
    (out / "memory_save.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
