"""GPU: answer decoding with and without the CUDA graph (runtime/decode_graph.py), same memory, same host.

    python -m benchmarks.bench_decode --out benchmarks/results      # ~1.5 min on an H100

The Qwen3-VL-2B architecture with random weights (as bench_engine), `--frames` frames pushed with
16 pairs per pass, then on that one memory, alternating the two decoders: a 16-token answer
(decode ms/token = (total - first token) / 15, medians of 5), the cost of setting up an ask's
graph decode (copying the window ring and fast weights in: `begin`), one capture, and the graph
replay alone (a loop of replays, synchronised once); and the 3-token count answer of bench_engine
with each decoder, on prepared memory and cold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.bench_engine import QUESTION, bench_config, test_frames
from benchmarks.stamp import stamp, stamp_line
from spatial_ttt_ros.runtime.engine import StreamingEngine


def _sync_time(fn) -> float:  # noqa: ANN001
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    config = bench_config(argparse.Namespace(fw_precision="fp32", batch_groups=16))
    engine = StreamingEngine.from_preset("spatial_ttt_2b", device="cuda", overrides={
        **{k: getattr(config, k) for k in ("backbone", "name", "tiny_text", "tiny_vision", "dtype", "fw_precision",
                                         "ingest_batch_groups")}, "decode_graph": "graph"})
    frames = test_frames(config)
    for i in range(34):  # warm-up: CUDA/cuBLAS set-up, Triton compiles
        engine.push_frame(frames[i % len(frames)], i / 16.0)
    engine.reset()
    # the ingest rate says how fast this host is (compare with engine_ingest_fp32_b16.json)
    ingest_s = _sync_time(lambda: [engine.push_frame(frames[i % len(frames)], i / 16.0) for i in range(args.frames)])
    engine.prepare()
    static = engine._static
    tokens = 16
    rows = {"graph": [], "eager": []}
    engine.ask(QUESTION, max_new_tokens=tokens)  # capture + warm-up
    for _ in range(5):
        for mode in ("graph", "eager"):
            engine._static = static if mode == "graph" else None
            torch.cuda.synchronize()
            answer = engine.ask(QUESTION, max_new_tokens=tokens)
            torch.cuda.synchronize()
            assert answer.decode_path == mode and len(answer.token_ids) == tokens, answer
            rows[mode].append({"first_token_s": answer.prefill_s, "decode_s": answer.decode_s})
    counts: dict[str, dict[str, float]] = {}
    for mode in ("graph", "eager"):
        engine._static = static if mode == "graph" else None
        counts[mode] = {}
        for kind in ("prepared", "cold"):
            saved = engine._prepared
            if kind == "cold":  # as if the worker had not been idle since the last frames
                engine._prepared = None
            times = [_sync_time(lambda: engine.ask(QUESTION, max_new_tokens=3)) for _ in range(3)]
            engine._prepared = saved
            counts[mode][kind] = 1000 * statistics.median(times)
    engine._static = static
    replays = 50  # room reserved for them: each replay writes one more anchor-cache slot
    fork = engine._prepared.fork()
    begin_s = _sync_time(lambda: static.begin(fork, 0, replays))
    static._key = None  # force a capture, timed
    capture_s = _sync_time(lambda: static.begin(fork, 0, replays))
    replay_s = _sync_time(lambda: [static._graph.replay() for _ in range(replays)]) / replays

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[mode])

    result = {**stamp(f"python -m benchmarks.bench_decode --frames {args.frames}", "cuda"),
              "frames": args.frames, "ingest_frames_per_s": args.frames / ingest_s, "answer_tokens": tokens,
              "decode_ms_per_token": {m: 1000 * median(m, "decode_s") / (tokens - 1) for m in rows},
              "first_token_ms": {m: 1000 * median(m, "first_token_s") for m in rows},
              "graph_begin_ms": 1000 * begin_s, "graph_capture_ms": 1000 * capture_s,
              "graph_replay_ms": 1000 * replay_s, "count_answer_ms": counts, "runs": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode_graph.json").write_text(json.dumps(result, indent=2) + "\n")
    d = result["decode_ms_per_token"]
    md = [f"# Answer decoding at {args.frames} frames: CUDA graph vs eager", "",
          stamp_line(result), "",
          "| | ms per answer token (after the first) |", "|---|---:|",
          f"| eager (layer by layer from Python) | {d['eager']:.1f} |",
          f"| CUDA graph, per ask (incl. setting up the ask: {result['graph_begin_ms']:.1f} ms) | {d['graph']:.1f} |",
          f"| CUDA graph replay alone | {result['graph_replay_ms']:.1f} |", "",
          "Count answer (3 tokens, the question of bench_engine), ms, medians of 3:", "",
          "| | prepared memory | cold |", "|---|---:|---:|",
          *(f"| {mode} | {c['prepared']:.0f} | {c['cold']:.0f} |" for mode, c in counts.items()), "",
          f"One capture (when the anchor buffers moved): {result['graph_capture_ms']:.0f} ms. First token (prepared "
          f"memory): {result['first_token_ms']['graph']:.0f} ms. Ingest on this host: "
          f"{result['ingest_frames_per_s']:.0f} frames/s (16 pairs per pass).", ""]
    (out / "decode_graph.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
