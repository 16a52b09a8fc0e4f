"""Summary table, plots and the README's performance block from the committed results (any machine).

    pip install -r requirements/bench.txt -c requirements/constraints.txt   # matplotlib, for the plots
    python -m benchmarks.plot [--results benchmarks/results] [--readme README.md]

Reads `kernels.json`, `engine_ingest_*.json`, `engine_compare_*.json` and `engine_baseline.json`
(written on a GPU by bench_kernels.py and bench_engine.py) and `cpu_ingest.json`, and writes
`engine.md` (tables + the issue's targets, each stamped with GPU, versions and command),
`plots/*.png` (when matplotlib is installed) and the two generated blocks of README.md: performance
(benchmarks/readme_block.py) and results (benchmarks/readme_results.py: soak, ROS fairness and RSS,
camera input, memory save, `train*.json` and models/demo/eval/eval.json when present).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGETS = {"kernel_speedup": 3.0, "peak_ratio": 0.60, "ingest_fps": 200.0, "query_speedup": 20.0}
QUERY_FRAMES = 1024


def load(results: Path) -> dict:
    """{'kernels': dict | None, 'ingest': [dict, ...] (by batch size), 'baseline': dict | None}."""
    def read(name: str) -> dict | None:
        path = results / name
        return json.loads(path.read_text()) if path.exists() else None

    ingest = [json.loads(p.read_text()) for p in sorted(results.glob("engine_ingest_*.json"))]
    ingest.sort(key=lambda r: (r["fw_precision"], r["ingest_batch_groups"]))
    compare = [json.loads(p.read_text()) for p in sorted(results.glob("engine_compare_*.json"))]
    return {"kernels": read("kernels.json"), "ingest": ingest, "baseline": read("engine_baseline.json"),
            "compare": compare, "question": read("question_pass.json"), "cpu": read("cpu_ingest.json")}


def _label(run: dict) -> str:
    k = run["ingest_batch_groups"]
    return f"{k} pair{'s' if k != 1 else ''}/pass, {run['fw_precision']}"


def _baseline_rows(data: dict) -> dict[int, dict]:
    return {r["frames"]: r for r in (data["baseline"] or {}).get("baseline", [])}


def verdicts(data: dict) -> list[str]:
    """One line per target of the issue: measured value, target, met or not."""
    lines = []

    def say(name: str, value: str, ok: bool) -> None:
        lines.append(f"- {name}: {value} — **{'met' if ok else 'not met'}**")

    if data["kernels"]:
        paths = data["kernels"]["per_chunk"]["inference"]["paths"]
        best = max(paths, key=lambda p: paths[p]["graph_speedup_vs_torch_fp32_graph"])
        gpu, eager = paths[best]["graph_speedup_vs_torch_fp32_graph"], paths[best]["speedup_vs_torch_fp32"]
        # GPU time per chunk (CUDA-graph replay) is what bounds the engine, whose launches queue
        # ahead of the GPU; one eager call timed alone from Python is bound by its launch overhead.
        say(f"fast-weight update + apply per chunk vs the fp32 reference (>= {TARGETS['kernel_speedup']:.0f}x)",
            f"{gpu:.2f}x GPU time ({best}; {eager:.2f}x for one call timed eagerly from Python); the fp32 "
            f"route {paths['triton_fp32']['graph_speedup_vs_torch_fp32_graph']:.2f}x", gpu >= TARGETS["kernel_speedup"])
    base = _baseline_rows(data)
    for run in data["ingest"]:
        rows = {r["frames"]: r for r in run["ingest"]}
        if QUERY_FRAMES in rows and QUERY_FRAMES in base and not base[QUERY_FRAMES].get("oom"):
            ratio = rows[QUERY_FRAMES]["peak_gib"] / base[QUERY_FRAMES]["peak_gib"]
            say(f"peak memory at {QUERY_FRAMES} frames, {_label(run)} (<= {TARGETS['peak_ratio']:.0%} of the baseline)",
                f"{rows[QUERY_FRAMES]['peak_gib']:.1f} vs {base[QUERY_FRAMES]['peak_gib']:.1f} GiB = {ratio:.0%}",
                ratio <= TARGETS["peak_ratio"])
        ttt = [r["ttt_state_mib"] for r in run["ingest"]]
        say(f"TTT-layer memory flat over {run['ingest'][0]['frames']}-{run['ingest'][-1]['frames']} frames, {_label(run)}",
            f"{min(ttt):.0f}-{max(ttt):.0f} MiB", max(ttt) <= 1.25 * min(ttt))
        if QUERY_FRAMES in rows:
            fps = rows[QUERY_FRAMES]["frames_per_s"]
            spread = ", ".join(f"{r['frames_per_s']:.0f}" for r in run["ingest"])
            say(f"ingest sustained over {QUERY_FRAMES} frames, {_label(run)} (>= {TARGETS['ingest_fps']:.0f} frames/s)",
                f"{fps:.1f} frames/s ({run['ingest'][0]['frames']}-{run['ingest'][-1]['frames']} frames: {spread})",
                fps >= TARGETS["ingest_fps"])
        q = run.get("query") or {}
        if q and q["frames"] in base and not base[q["frames"]].get("oom"):
            rerun = base[q["frames"]]["seconds"]
            for kind, key, first in (("cold", "count_answer_s", "first_token_s"),
                                     ("prepared when idle", "prepared_count_answer_s", "prepared_first_token_s")):
                if key in q:
                    say(f"count question at {q['frames']} frames, {kind}, {_label(run)} "
                        f"(>= {TARGETS['query_speedup']:.0f}x faster than re-running)",
                        f"{1000 * q[key]:.0f} ms (first token {1000 * q[first]:.0f} ms, {q['decode_ms_per_token']:.1f} "
                        f"ms/token {q.get('decode_path', 'eager')}) vs {rerun:.2f} s prefill = {rerun / q[key]:.1f}x",
                        rerun / q[key] >= TARGETS["query_speedup"])
    return lines


# The speed and memory targets of issue 13, checked against the side-by-side runs (`bench_engine
# compare`, `bench_question`): frames -> (value name, target, at most (True) or at least).
COMPARE_TARGETS = {
    1024: (("ingest frames/s", 400.0, False), ("peak with questions / one-pass peak", 0.5, True),
           ("count answer ms, prepared", 50.0, True), ("count answer ms, cold", 100.0, True),
           ("first token ms, prepared", 20.0, True), ("decode ms per answer token", 7.0, True)),
    4096: (("ingest frames/s", 350.0, False), ("count answer ms, prepared", 80.0, True)),
}


def compare_values(cmp: dict) -> dict[int, dict[str, float]]:
    """{frames: {value name: measured}} of one `bench_engine compare` result."""
    base = {r["frames"]: r for r in cmp.get("baseline", []) if not r.get("oom")}
    queries = {q["frames"]: q for q in cmp["ours"].get("queries", [])}
    out = {}
    for r in cmp["ours"]["ingest"]:
        v = {"ingest frames/s": r["frames_per_s"]}
        if r["frames"] in base and "peak_after_questions_gib" in r:
            v["peak with questions / one-pass peak"] = r["peak_after_questions_gib"] / base[r["frames"]]["peak_gib"]
        q = queries.get(r["frames"])
        if q:
            v.update({"count answer ms, prepared": 1000 * q["prepared_count_answer_s"],
                      "count answer ms, cold": 1000 * q["count_answer_s"],
                      "first token ms, prepared": 1000 * q["prepared_first_token_s"],
                      "decode ms per answer token": q["decode_ms_per_token"]})
        out[r["frames"]] = v
    return out


def _work_rate(cmp: dict, frames: int, name: str, target: float) -> str:
    """For an ingest target: the decoder work counted for the run (bench_engine's formula) per second
    as measured, and as the target would need it."""
    row = next((r for r in cmp["ours"]["ingest"] if r["frames"] == frames), None)
    if name != "ingest frames/s" or not row or not row.get("spatial_ttt_tflop"):
        return ""
    from benchmarks.bench_engine import bench_config, counted_tflop

    config = bench_config(argparse.Namespace(fw_precision=cmp["fw_precision"], batch_groups=cmp["ingest_batch_groups"]))
    anchor = counted_tflop(config, row["tokens"])["anchor_attention_tflop"]
    done = row["spatial_ttt_tflop"] / row["seconds"]
    return (f"; counted decoder work {row['spatial_ttt_tflop']:.0f} TFLOP ({anchor / row['spatial_ttt_tflop']:.0%} of it "
            f"the anchor layers' attention over the whole history), done at {done:.0f} TFLOP/s, the target needs "
            f"{row['spatial_ttt_tflop'] * target / frames:.0f} TFLOP/s")


def compare_verdicts(data: dict) -> list[str]:
    """One line per issue-13 target with a measurement in the compare / question-pass results."""
    lines = []
    for cmp in data.get("compare", []):
        queries = {q["frames"]: q for q in cmp["ours"].get("queries", [])}
        for frames, values in compare_values(cmp).items():
            for name, target, at_most in COMPARE_TARGETS.get(frames, ()):
                if name in values:
                    ok = values[name] <= target if at_most else values[name] >= target
                    # which path the question took (eager when it crosses a fast-weight update there)
                    taken = queries.get(frames, {}).get("question_path")
                    path = f"; question pass {taken}" if taken and name.startswith(("count answer", "first token")) else ""
                    lines.append(f"- {frames} frames, {name} ({'<=' if at_most else '>='} {target:g}): "
                                 f"{values[name]:.{2 if values[name] < 10 else 1}f} — **{'met' if ok else 'not met'}** "
                                 f"({cmp['device']}, commit {str(cmp.get('commit'))[:7]}{path})"
                                 + _work_rate(cmp, frames, name, target))
    question = data.get("question")
    if question:
        # the target is at 1024 frames; bench_question's largest default is 1000 (a shorter stream is easier)
        for r in (r for r in question["rows"] if r["graph"]["question_path"] == "graph" and r["frames"] >= 1000):
            ms = r["graph"]["first_token_ms"]
            lines.append(f"- {r['frames']} frames, first token ms over static buffers, {r['question_tokens']}-token "
                         f"question (<= 20 at 1024 frames): {ms:.1f} — **{'met' if ms <= 20 else 'not met'}** "
                         f"(`bench_question`, {question['device']})")
    return lines


def summary(data: dict) -> list[str]:
    """engine.md: provenance, one ingest/memory table over all runs, the baseline, the verdicts."""
    runs, base = data["ingest"], _baseline_rows(data)
    lines = ["# Streaming engine vs stock Qwen3-VL-2B (random weights, 352x480 frames)", "",
             "Generated by `python -m benchmarks.plot` from the JSON files beside this one. Sources:", ""]
    from benchmarks.compare_table import compare_table, question_table
    from benchmarks.readme_block import source

    for run in [*runs, *data.get("compare", []), *(x for x in (data["baseline"], data["kernels"]) if x)]:
        lines.append(f"- {source(run.get('meta', run))}")
    for cmp in data.get("compare", []):
        lines += ["", f"Side by side, one run (`{cmp['command']}`):", "", *compare_table(cmp)]
    if data.get("question"):
        lines += ["", "The question pass, eager vs over static buffers, one run:", "", *question_table(data["question"])]
    if runs:
        lines += ["", "| run | frames | ingest frames/s | peak GiB | vs baseline peak | TTT-layer state MiB | anchor KV MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for run in runs:
            for r in run["ingest"]:
                b = base.get(r["frames"])
                ratio = "" if not b else "baseline OOM" if b.get("oom") else f"{r['peak_gib'] / b['peak_gib']:.0%}"
                lines.append(f"| {_label(run)} | {r['frames']} | {r['frames_per_s']:.1f} | {r['peak_gib']:.1f} | {ratio} | "
                             f"{r['ttt_state_mib']:.0f} | {r['anchor_kv_mib']:.0f} |")
    if base:
        lines += ["", "Baseline (stock Qwen3-VL-2B, full attention, one prefill over video + question):", "",
                  "| frames | tokens | prefill s | peak GiB | decoder TFLOP (counted) |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['frames']} | {r['tokens']:,} | OOM | OOM | |" if r.get("oom") else
                  f"| {r['frames']} | {r['tokens']:,} | {r['seconds']:.2f} | {r['peak_gib']:.1f} | {r['full_attention_tflop']:.0f} |"
                  for r in base.values()]
    lines += ["", "## Against the targets of issue 13 (side-by-side runs)", "", *compare_verdicts(data),
              "", "## Against the earlier targets (per-configuration runs)", "", *verdicts(data)]
    return lines


def plots(data: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: object, name: str, stamp: str) -> None:
        fig.text(0.01, 0.005, stamp, fontsize=6, color="0.35")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)

    base = _baseline_rows(data)
    if data["ingest"]:
        run0 = data["ingest"][0]
        stamp = f"{run0['gpu']}, torch {run0['torch']}, transformers {run0['transformers']}; python -m benchmarks.bench_engine ingest|baseline"
        fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(12, 8))
        for run in data["ingest"]:
            f = [r["frames"] for r in run["ingest"]]
            ax1.plot(f, [r["frames_per_s"] for r in run["ingest"]], "o-", label=_label(run))
            ax2.plot(f, [r["peak_gib"] for r in run["ingest"]], "o-", label=f"ours, {_label(run)}")
            ax3.plot(f, [r["ttt_state_mib"] for r in run["ingest"]], "o-", label=f"TTT layers, {_label(run)}")
        frames0 = [r["frames"] for r in run0["ingest"]]
        ax3.plot(frames0, [r["anchor_kv_mib"] for r in run0["ingest"]], "s--", color="0.4",
                 label="anchor KV (7 full-attention layers)")
        ax4.plot(frames0, [r["spatial_ttt_tflop"] for r in run0["ingest"]], "o-", label="Spatial-TTT (21 TTT + 7 anchor layers)")
        ok = [r for r in base.values() if not r.get("oom")]
        ax2.plot([r["frames"] for r in ok], [r["peak_gib"] for r in ok], "k^-", label="stock Qwen3-VL-2B, one pass")
        ax4.plot([r["frames"] for r in ok], [r["full_attention_tflop"] for r in ok], "k^-", label="stock Qwen3-VL-2B (full attention)")
        for r in base.values():
            if r.get("oom"):
                ax2.axvline(r["frames"], color="k", ls=":", label=f"stock Qwen3-VL-2B out of memory at {r['frames']}")
        ax1.axhline(TARGETS["ingest_fps"], color="r", ls=":", label="target")
        for ax, title, unit in ((ax1, "Streaming ingest", "frames/s"), (ax2, "Peak GPU memory", "GiB"),
                                (ax3, "Memory held after N frames", "MiB"),
                                (ax4, "Decoder compute, counted (formula: bench_engine.py)", "TFLOP")):
            ax.set_xscale("log", base=2)
            ax.set(xlabel="frames pushed (352x480)", ylabel=unit, title=title)
            ax.set_xticks(frames0, [str(f) for f in frames0])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax4.set_yscale("log")
        save(fig, "engine_ingest_memory.png", stamp)

        queries = [(run, run["query"]) for run in data["ingest"] if run.get("query")]
        if queries and QUERY_FRAMES in base and not base[QUERY_FRAMES].get("oom"):
            fig, ax = plt.subplots(figsize=(9, 1.2 + 0.42 * (1 + 2 * len(queries))))
            names = ["stock Qwen3-VL-2B: re-run video + question (prefill only)"]
            values = [base[QUERY_FRAMES]["seconds"]]
            colors = ["0.5"]
            for run, q in queries:
                names.append(f"ours, {_label(run)}: cold")
                values.append(q["count_answer_s"])
                colors.append("C0")
                if "prepared_count_answer_s" in q:
                    names.append(f"ours, {_label(run)}: prepared when idle")
                    values.append(q["prepared_count_answer_s"])
                    colors.append("C2")
            bars = ax.barh(range(len(values)), values, color=colors)
            ax.bar_label(bars, [f"{v:.2f} s ({values[0] / v:.0f}x)" if i else f"{v:.2f} s" for i, v in enumerate(values)],
                         fontsize=7, padding=2)
            ax.axvline(values[0] / TARGETS["query_speedup"], color="r", ls=":", label="target: 20x below the baseline")
            ax.set_yticks(range(len(values)), names, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, values[0] * 1.15)
            ax.set(xlabel="seconds", title=f"Count question ({queries[0][1]['count_answer_tokens']} answer "
                                                        f"tokens) with {QUERY_FRAMES} frames in memory")
            ax.legend(fontsize=7, loc="lower right")
            save(fig, "engine_query.png", stamp)
    if data["kernels"]:
        meta = data["kernels"]["meta"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for ax, mode in zip(axes, ("inference", "training")):
            paths = data["kernels"]["per_chunk"][mode]["paths"]
            names = list(paths)
            x = range(len(names))
            ax.bar([i - 0.2 for i in x], [paths[p]["ms"] for p in names], 0.4, label="called eagerly")
            ax.bar([i + 0.2 for i in x], [paths[p]["graph_ms"] for p in names], 0.4, label="CUDA graph replay")
            ax.set_xticks(list(x), [p.replace("_", "\n", 1) for p in names], fontsize=7)
            ax.set(ylabel="ms per chunk per layer", title=f"Fast-weight apply + update, C={meta['chunk']}, "
                                                             f"{meta['heads']}x{meta['dim']} ({mode})")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
        save(fig, "kernels.png", f"{meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}; {meta['command']}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--readme", default="README.md", help="README whose generated blocks are rewritten ('' = none)")
    parser.add_argument("--eval", default="models/demo/eval/eval.json", help="demo model evaluation (used when present)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    data = load(results)
    (results / "engine.md").write_text("\n".join(summary(data)) + "\n")
    if args.readme:
        from benchmarks import readme_block, readme_results

        readme = Path(args.readme)
        text = readme_block.replace_block(readme.read_text(), readme_block.block(data), where=args.readme)
        text = readme_block.replace_block(text, readme_results.block(readme_results.load(results, Path(args.eval))),
                                          readme_results.BEGIN, readme_results.END, args.readme)
        readme.write_text(text)
        print(f"{args.readme}: performance and results blocks rewritten")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: plots/ left as committed (requirements/bench.txt)")
    else:
        for path in plots(data, results / "plots"):
            print(path)
    print("\n".join(verdicts(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
