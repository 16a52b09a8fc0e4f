"""GPU, 2B shape: a long stream with an anchor-KV budget next to the unbounded memory, in one run.

    python -m benchmarks.bench_budget --frames 16384 --budget 131072 --out benchmarks/results   # ~6 min on an H100

Both arms push the same frames (352x480, random Qwen3-VL-2B-shaped weights, bf16 fast weights,
`--batch-groups` frame pairs per decoder pass) into a fresh engine; every `--sample-every` frames
it records the ingest rate over the last segment, the GPU memory allocated now and the peak of the
segment, the engine's bytes per memory part, the anchor tokens held and the evictions. The claim
under test (issue: hours-long streams in bounded memory): with a budget, peak memory and ingest
rate stop changing once the budget is reached; without one they keep growing / falling. The
unbounded arm stops early (recorded) if it runs out of GPU memory. Results: bench_budget.json,
.md and .svg (benchmarks/svg_lines.py), stamped (benchmarks/stamp.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.bench_engine import QUESTION, bench_config, test_frames, warm_engine
from benchmarks.stamp import stamp, stamp_line
from benchmarks.svg_lines import line_panels

DEVICE = "cuda"


def run_arm(args: argparse.Namespace, budget: int, arm: dict, save: Callable[[], None]) -> None:
    """Fill `arm` (samples, oom, count answer) while streaming; `save()` after every sample, so a run
    cut short keeps what it measured."""
    config = bench_config(args)
    frames = test_frames(config)
    engine = warm_engine(config, frames, DEVICE, anchor_kv_budget_tokens=budget)
    engine.reset()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    arm.update(anchor_kv_budget_tokens=budget, samples=[], oom=None, count_answer_s=None, answer_tokens=None)
    samples = arm["samples"]
    t_seg = time.perf_counter()
    try:
        for i in range(args.frames):
            engine.push_frame(frames[i % len(frames)], i / 16.0)
            if (i + 1) % args.sample_every == 0:
                torch.cuda.synchronize()
                now = time.perf_counter()
                c = engine.counters
                samples.append({"frame": i + 1, "ingest_fps": args.sample_every / (now - t_seg),
                                "allocated_gib": torch.cuda.memory_allocated() / 2**30,
                                "segment_peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                                "memory_bytes": sum(c.bytes_by_part.values()), "bytes_by_part": dict(c.bytes_by_part),
                                "anchor_tokens": c.anchor_tokens, "evicted_tokens": c.evicted_tokens,
                                "evicted_groups": c.evicted_groups, "anchor_capacity_bytes": c.anchor_capacity_bytes})
                print(json.dumps({"budget": budget, **{k: v for k, v in samples[-1].items() if k != "bytes_by_part"}}),
                      flush=True)
                save()
                torch.cuda.reset_peak_memory_stats()
                t_seg = time.perf_counter()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        answer = engine.ask(QUESTION, max_new_tokens=3)
        torch.cuda.synchronize()
        arm.update(count_answer_s=time.perf_counter() - t0, answer_tokens=len(answer.token_ids))
    except torch.OutOfMemoryError as exc:
        arm["oom"] = f"out of GPU memory after {len(samples) * args.sample_every} frames: {exc}"[:300]
    engine.close()
    del engine
    gc.collect()
    torch.cuda.empty_cache()
    save()


def flat_after(samples: list[dict], key: str, from_frame: int) -> dict:
    """min / max of `key` over the samples from `from_frame` on (the steady state of a budget)."""
    vals = [s[key] for s in samples if s["frame"] >= from_frame]
    return {"min": min(vals), "max": max(vals)} if vals else {}


def arm_summary(arm: dict) -> dict:
    """One arm in numbers: frames pushed, first eviction, and over the second half of the stream the
    range of the segment peaks of GPU memory and of the ingest rate."""
    s = arm["samples"]
    budget = arm["anchor_kv_budget_tokens"]
    out = {"name": "unbounded" if budget == 0 else f"budget {budget:,} tokens", "frames": s[-1]["frame"] if s else 0,
           "oom": arm["oom"], "count_answer_s": arm["count_answer_s"]}
    if s:
        half = s[-1]["frame"] // 2
        out.update(first_eviction=next((x["frame"] for x in s if x["evicted_groups"] > 0), None),
                   peak_gib=flat_after(s, "segment_peak_gib", half), fps=flat_after(s, "ingest_fps", half),
                   anchor_tokens=s[-1]["anchor_tokens"])
    return out


def report(result: dict, out: Path) -> str:
    arms = result["arms"]
    lines = ["# Anchor-KV budget at the 2B shape: a long stream, budget vs unbounded", "", stamp_line(result), "",
             f"{result['frames_target']:,} frames asked at {result['frame']}, {result['fw_precision']} fast weights, "
             f"{result['ingest_batch_groups']} frame pairs per pass; a sample every {result['sample_every']} frames.", "",
             "| arm | frames pushed | first eviction at | peak GiB (segment peaks, second half) | "
             "ingest frames/s (same span) | count answer at the end s | anchor tokens held at the end |",
             "|---|---:|---:|---|---|---:|---:|"]
    for a in map(arm_summary, arms):
        if not a["frames"]:
            lines.append(f"| {a['name']} | 0 | | | | | |")
            continue
        ask = f"{a['count_answer_s']:.3f}" if a["count_answer_s"] is not None else "-"
        lines.append(f"| {a['name']} | {a['frames']:,}{' (OOM)' if a['oom'] else ''} | {a['first_eviction'] or '-'} | "
                     f"{a['peak_gib']['min']:.1f} .. {a['peak_gib']['max']:.1f} | {a['fps']['min']:.0f} .. "
                     f"{a['fps']['max']:.0f} | {ask} | {a['anchor_tokens']:,} |")
    for arm in arms:
        a = arm_summary(arm)
        if arm["oom"]:
            lines += ["", f"{a['name']}: {arm['oom']}"]
        elif a["frames"] < result["frames_target"] and arm["count_answer_s"] is None:
            lines += ["", f"{a['name']}: stopped at {a['frames']:,} of {result['frames_target']:,} frames by the "
                          "command's time limit (not out of memory); its samples up to there are in the JSON."]
    lines += ["", "![budget](bench_budget.svg)"]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_budget.md").write_text(text)
    series = [("budget" if a["anchor_kv_budget_tokens"] else "unbounded", a["samples"]) for a in arms]
    panels = [(title, [(name, [x["frame"] for x in s], [x[key] * scale for x in s]) for name, s in series])
              for title, key, scale in (("segment peak GPU memory [GiB]", "segment_peak_gib", 1.0),
                                        ("ingest [frames/s]", "ingest_fps", 1.0),
                                        ("memory bytes, all parts [GiB]", "memory_bytes", 2**-30),
                                        ("anchor tokens held", "anchor_tokens", 1.0))]
    (out / "bench_budget.svg").write_text(line_panels(
        f"{result['gpu']}: 2B shape, anchor budget {arms[0]['anchor_kv_budget_tokens']:,} tokens vs unbounded; "
        "x: frames pushed", panels))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16384)
    parser.add_argument("--budget", type=int, default=131072, help="anchor_kv_budget_tokens of the bounded arm")
    parser.add_argument("--batch-groups", type=int, default=32)
    parser.add_argument("--fw-precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--sample-every", type=int, default=512)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--report-only", action="store_true", help="rewrite .md/.svg from the committed JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        print(report(json.loads((out / "bench_budget.json").read_text()), out))
        return 0
    if not torch.cuda.is_available():
        print("bench_budget needs a CUDA GPU", file=sys.stderr)
        return 2
    result = {**stamp(" ".join(["python -m benchmarks.bench_budget", *(argv if argv is not None else sys.argv[1:])]), DEVICE),
              "frame": "352x480", "ingest_batch_groups": args.batch_groups, "fw_precision": args.fw_precision,
              "sample_every": args.sample_every, "frames_target": args.frames, "arms": []}
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (out / "bench_budget.json").write_text(json.dumps(result, indent=2) + "\n")

    for budget in (args.budget, 0):
        result["arms"].append({})
        run_arm(args, budget, result["arms"][-1], save)
    print(report(result, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
