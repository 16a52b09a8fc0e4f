"""The README's results block (soak, ROS fairness and RSS, camera input, memory save, training,
demo evaluation), generated from the committed result files.

`python -m benchmarks.plot` rewrites what lies between BEGIN and END in README.md; a unit test
checks that the committed README equals what this module makes of the committed JSON. Each part
appears only when its file is committed, each with its source (machine, versions, commit, date,
command). Bytes are shown in binary units (KiB = 1024 bytes, MiB = 1024 KiB, GiB = 1024 MiB).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

BEGIN = ("<!-- BEGIN GENERATED RESULTS (python -m benchmarks.plot; from benchmarks/results/*.json and "
         "models/demo/eval/eval.json, do not edit) -->")
END = "<!-- END GENERATED RESULTS -->"
EVAL_JSON = Path("models") / "demo" / "eval" / "eval.json"
FILES = {"soak": "soak.json", "fairness": "ros_fairness.json", "rss": "ros_rss.json", "camera": "camera_cpu.json",
         "save": "memory_save.json"}
BUDGET_JSON = "bench_budget.json"  # a GPU result: in the block when committed
TRAIN_HEADING = "**Training at the 2B shape**"
EVAL_HEADING = "**Demo model, streaming evaluation on held-out scenes**"


def load(results: Path, eval_json: Path | None = None) -> dict:
    """{soak, fairness, rss, camera, save, budget: dict | None, train: [(name, dict), ...], eval: dict | None}."""
    def read(path: Path) -> dict | None:
        return json.loads(path.read_text()) if path.is_file() else None

    data = {key: read(results / name) for key, name in FILES.items()}
    data["budget"] = read(results / BUDGET_JSON)
    data["train"] = [(p.name, json.loads(p.read_text())) for p in sorted(results.glob("train*.json"))]
    data["eval"] = read(eval_json) if eval_json else None
    return data


def kib(n_bytes: float) -> float:
    return n_bytes / 1024


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def source(meta: dict) -> str:
    """Machine, versions, commit, date and command of one result file, whichever of them it records."""
    machine = meta.get("machine") or meta.get("gpu")
    if not machine:
        device, cpu = meta.get("device", "device not recorded"), meta.get("cpu")
        extra = [x for x in (cpu, f"{meta['cpu_cores']} cores" if meta.get("cpu_cores") else None,
                             f"{meta['threads']} thread{'s' if meta['threads'] != 1 else ''}" if meta.get("threads")
                             else None) if x]
        machine = f"{device} ({', '.join(extra)})" if extra else device
    versions = ", ".join(f"{name} {meta[name]}" for name in ("torch", "transformers", "opencv", "numpy", "rmw")
                         if meta.get(name))
    return (f"{machine}, {versions}, commit {meta.get('commit') or 'not recorded'}, "
            f"{meta.get('date') or 'date not recorded'}: `{meta['command']}`")


def soak_lines(soak: dict) -> list[str]:
    s, q = soak["samples"], soak["queries"]
    last, half = s[-1], s[len(s) // 2:]
    done, target = soak["frames_done"], soak["frames_target"]
    mem = [x["memory_bytes"] for x in s]
    ok = [x["latency_s"] for x in q if x["success"]]
    rss_half = [mib(x["rss_bytes"]) for x in half]
    return [f"**Soak through the node** (`{soak['preset']}` preset on CPU: memory bounds and latency, not answer quality; "
            f"anchor budget {soak['anchor_kv_budget_tokens']:,} tokens). {done:,} of {target:,} keyframes at "
            f"a simulated {soak['stream_hz']:g} Hz ({done / soak['stream_hz'] / 3600:.2f} h of stream) in "
            f"{last['wall_s'] / 60:.0f} min of wall time:", "",
            f"- memory held, all parts: {kib(min(mem)):.1f}-{kib(max(mem)):.1f} KiB over the whole run; "
            f"{last['evicted_groups']:,} frame groups evicted; frames dropped {last['frames_dropped']}, "
            f"rejected {last['frames_rejected']}",
            f"- process RSS: {mib(s[0]['rss_bytes']):.1f} MiB at frame {s[0]['frame']:,}, "
            f"{min(rss_half):.1f}-{max(rss_half):.1f} MiB over the second half",
            f"- queries answered (success=true): {len(ok)} of {len(q)}; latency median {statistics.median(ok):.3f} s, "
            f"range {min(ok):.3f}-{max(ok):.3f} s" if ok else f"- queries answered: 0 of {len(q)}",
            f"- Source: {source(soak)}; details `benchmarks/results/soak.md`"]


def fairness_lines(fair: dict) -> list[str]:
    lines = ["**Ingest while a flood of queries waits** (ROS node, `tiny` preset on CPU, frames offered at "
             f"{fair['runs'][0]['offer_hz']:g} Hz):", "",
             "| policy | phase | ingest frames/s | vs unloaded | frames dropped | queries answered | refused busy |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for run in fair["runs"]:
        base = run["phases"]["unloaded"]["ingest_fps"]
        for name, p in run["phases"].items():
            ratio = f"{p['ingest_fps'] / base:.0%}" if base else "n/a"
            lines.append(f"| {run['policy']} | {name} | {p['ingest_fps']:.2f} | {ratio} | {p['frames_dropped']} | "
                         f"{p['queries_answered']} | {p['queries_refused_busy']:,} |")
    return [*lines, "", f"Source: {source(fair)}"]


def rss_lines(rss: dict) -> list[str]:
    # ros_soak records rss_mb as bytes / 2**20: MiB despite the key's name
    fuzz, life = rss["fuzz"], rss["lifecycle"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in rss["fuzz_outcomes"].items())
    return [f"**Node RSS under abuse**: {fuzz[-1]['requests']:,} fuzzed requests ({outcomes}): "
            f"{fuzz[0]['rss_mb']:.1f} -> {fuzz[-1]['rss_mb']:.1f} MiB (peak {max(x['rss_mb'] for x in fuzz):.1f}), "
            f"{rss['fuzz_second_half_growth_mb']:.1f} MiB growth over the second half; "
            f"{life[-1]['cycles']} lifecycle cycles: {life[0]['rss_mb']:.1f} -> {life[-1]['rss_mb']:.1f} MiB, "
            f"{rss['lifecycle_second_half_growth_mb']:.1f} MiB over the second half. Source: {source(rss)}"]


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def camera_lines(cam: dict) -> list[str]:
    threads = sorted({r["opencv_threads"] for r in cam["rows"]})
    per_frame = [r for r in cam["rows"] if r["what"] == "decode" or r["what"].startswith("rectify per frame")]
    cases = list(dict.fromkeys((r["what"], r["case"]) for r in per_frame))
    cell = {(r["what"], r["case"], r["opencv_threads"]): r for r in per_frame}
    head = " | ".join(f"min ms, {t} thread{'s' if t != 1 else ''} | median ms, {t} thread{'s' if t != 1 else ''}"
                      for t in threads)
    lines = [f"**Camera input per {cam['frame']} frame** on CPU (shared machine: `min` is the least disturbed "
             "figure, the median includes waiting for a core):", "",
             f"| step | case | {head} |", "|---|---|" + "---:|---:|" * len(threads)]
    for what, case in cases:
        cells = " | ".join(f"{_ms(c['min_ms'])} | {_ms(c['median_ms'])}" if (c := cell.get((what, case, t))) else " | "
                           for t in threads)
        step = "decode to rgb8" if what == "decode" else "rectify (remap, cached maps)"
        lines.append(f"| {step} | {case} | {cells} |")
    maps = [r for r in cam["rows"] if r["what"].startswith("rectify maps")]
    if maps:
        lines += ["", "Rectification maps, once per calibration: " + ", ".join(
            f"{case} {min(r['min_ms'] for r in maps if r['case'] == case):.1f} ms"
            for case in dict.fromkeys(r["case"] for r in maps)) + " (min)."]
    return [*lines, "", f"Source: {source(cam)}; all rows `benchmarks/results/camera_cpu.md`"]


def save_lines(save: dict) -> list[str]:
    q, d = save["ingest_ms_per_frame_quiet"], save["ingest_ms_per_frame_during_write"]
    return [f"**Saving a bounded memory** ({save['model']}; budget {save['budget_tokens']:,} anchor tokens, "
            f"{save['frames']} frames): {mib(save['memory_bytes']):.1f} MiB of memory, a "
            f"{mib(save['file_bytes']):.1f} MiB file. Snapshot on the engine thread {1000 * save['snapshot_s']:.0f} ms; "
            f"write on a writer thread {1000 * save['write_s']:.0f} ms ({mib(save['file_bytes']) / save['write_s']:.0f} "
            f"MiB/s); the whole save on the engine thread {1000 * save['blocking_save_s']:.0f} ms. Ingest per frame "
            f"while the file is written: median {d['median']:.1f} ms (max {d['max']:.1f}, {d['frames']} frames) against "
            f"{q['median']:.1f} ms (max {q['max']:.1f}) with no write. Source: {source(save)}"]


def budget_lines(budget: dict) -> list[str]:
    from benchmarks.bench_budget import arm_summary

    lines = [f"**A long stream at the 2B shape with an anchor budget, next to unbounded** ({budget['gpu']}; random "
             f"weights, {budget['frame']}, {budget['fw_precision']} fast weights, {budget['ingest_batch_groups']} frame "
             "pairs per pass; ranges over the second half of the stream):", "",
             "| arm | frames pushed | first eviction at frame | peak GPU memory GiB | ingest frames/s |",
             "|---|---:|---:|---|---|"]
    for a in map(arm_summary, budget["arms"]):
        cut = (" (out of memory)" if a["oom"] else " (stopped by the run's time limit)"
               if a["frames"] < budget.get("frames_target", a["frames"]) else "")
        if a["frames"]:
            lines.append(f"| {a['name']} | {a['frames']:,}{cut} | "
                         f"{a['first_eviction'] or '-'} | {a['peak_gib']['min']:.1f} .. {a['peak_gib']['max']:.1f} | "
                         f"{a['fps']['min']:.0f} .. {a['fps']['max']:.0f} |")
    return [*lines, "", f"Source: {source(budget)}; plot `benchmarks/results/bench_budget.svg`"]


def train_lines(name: str, train: dict) -> list[str]:
    lines = [f"{TRAIN_HEADING} (`{name}`): {train['model']}; {train['frames']} frames at {train['frame']}, batch 1, "
             "vision frozen.", "",
             "| strategy | TTT per-chunk checkpointing | decoder-layer checkpointing | tokens | step s (median) | "
             "tokens/s | peak GiB | MFU |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in train["rows"]:
        label = (f"| {r['strategy']} | {'on' if r.get('checkpoint_chunks') else 'off'} | "
                 f"{'on' if r.get('checkpoint_layers') else 'off'} |")
        if r.get("oom") or r.get("failed"):
            lines.append(f"{label} {'OOM' if r.get('oom') else 'failed'} | | | | |")
            continue
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "n/a"
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "n/a"
        lines.append(f"{label} {r['tokens']:,} | {r['step_s_median']:.2f} | {r['tokens_per_s']:,.0f} | {peak} | {mfu} |")
    return [*lines, "", f"Source: {source(train)}"]


def _score(x: float | None, ci: list[float] | None = None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and ci[0] == ci[0] else "")


def eval_lines(ev: dict) -> list[str]:
    first = next(iter(ev["arms"].values()))
    lines = [f"{EVAL_HEADING} (preset `{ev['preset']}`, weights `{ev['checkpoint']}`; {ev['scenes']} scenes, "
             f"{ev['source']}; window {ev['window_frames']} frames). VSI-Bench scoring, bootstrap 95 % intervals over "
             f"scenes; the prior is the best constant answer fitted on the other half of the scenes "
             f"({_score(first['all']['overall_prior'])} on all items, "
             f"{_score(first['outside_window']['overall_prior'])} outside the window):", "",
             "| arm | overall, all items | items | overall, evidence outside the window | items |",
             "|---|---:|---:|---:|---:|"]
    for arm, a in ev["arms"].items():
        lines.append(f"| {arm} | {_score(a['all']['overall'], a['all']['overall_ci95'])} | {a['all']['n']} | "
                     f"{_score(a['outside_window']['overall'], a['outside_window']['overall_ci95'])} | "
                     f"{a['outside_window']['n']} |")
    return [*lines, "", f"Source: {source(ev)}; per task `models/demo/eval/eval.md`"]


def block(data: dict) -> str:
    parts = [lines for lines in (
        soak_lines(data["soak"]) if data.get("soak") else None,
        fairness_lines(data["fairness"]) if data.get("fairness") else None,
        rss_lines(data["rss"]) if data.get("rss") else None,
        camera_lines(data["camera"]) if data.get("camera") else None,
        save_lines(data["save"]) if data.get("save") else None,
        budget_lines(data["budget"]) if data.get("budget") else None,
        *(train_lines(name, train) for name, train in data.get("train", [])),
        eval_lines(data["eval"]) if data.get("eval") else None) if lines]
    body = [line for part in parts for line in (*part, "")]
    return "\n".join([BEGIN, "", *body, END])
