"""GPU: a question against prepared memory, the question pass eager vs over static buffers (CUDA
graph replays), in one run, on the Qwen3-VL-2B architecture (random weights, 352x480 frames, bf16
fast weights, 32 frame pairs per pass).

    python -m benchmarks.bench_question --frames 300 700 1000 --out benchmarks/results

Per frame count and question (the benchmark's VSI count prompt, 135 byte tokens with the chat
suffix, and a short one, 48): time to the first answer token and to a 3-token answer, medians of
3 after a warm-up ask (which also captures the graphs). `question_path` says which path ran: a
question whose tokens would cross a fast-weight update runs eagerly whatever is asked for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from benchmarks.bench_engine import QUESTION, bench_config, test_frames, warm_engine
from benchmarks.compare_table import question_table
from benchmarks.stamp import stamp, write_result

SHORT = "How many chair(s) are in this room?"
PATHS = (("eager", ()), ("graph", None))


def time_ask(engine: object, question: str, runs: int = 3) -> dict:
    engine.ask(question, 3)  # warm-up (and the captures)
    first, total, path = [], [], ""
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        answer = engine.ask(question, 3)
        torch.cuda.synchronize()
        first.append(answer.prefill_s)
        total.append(time.perf_counter() - t0)
        path = answer.question_path
    return {"question_path": path, "first_token_ms": 1000 * statistics.median(first),
            "answer_ms": 1000 * statistics.median(total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 700, 1000])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_question needs a CUDA GPU", file=sys.stderr)
        return 2
    config = bench_config(argparse.Namespace(fw_precision="bf16", batch_groups=32))
    frames = test_frames(config)
    engine = warm_engine(config, frames, "cuda")
    static = engine._static
    buckets = static.question_buckets
    rows = []
    for n in args.frames:
        engine.reset()
        for i in range(n):
            engine.push_frame(frames[i % len(frames)], i / 16.0)
        engine.prepare()
        for question in (QUESTION, SHORT):
            tokens = len(engine.tokenizer.encode(question, add_special_tokens=False)) + len(engine.layout.suffix)
            row = {"frames": n, "question_tokens": tokens}
            for name, use in PATHS:
                static.question_buckets = buckets if use is None else use
                row[name] = time_ask(engine, question)
            static.question_buckets = buckets
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {**stamp(" ".join(["python -m benchmarks.bench_question", *(argv if argv is not None else sys.argv[1:])]),
                      "cuda"), "rows": rows}
    write_result(args.out, "question_pass", result, question_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
