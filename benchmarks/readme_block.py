"""The README's performance tables, generated from the committed results (benchmarks/results/*.json).

`python -m benchmarks.plot` rewrites what lies between BEGIN and END in README.md; a unit test
checks that the committed README equals what this module makes of the committed JSON, so no
number in that block is typed by hand. Units are binary (KiB = 1024 bytes, GiB = 1024 MiB), and
the preset's default configuration (models/spatial_ttt_2b.yaml) is the row marked default.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.compare_table import compare_table, question_table

BEGIN = "<!-- BEGIN GENERATED PERFORMANCE (python -m benchmarks.plot; from benchmarks/results/*.json, do not edit) -->"
END = "<!-- END GENERATED PERFORMANCE -->"
QUERY_FRAMES = 1024
TABLE_FRAMES = (1024, 4096)  # the README shows these; engine.md every frame count


def kib(n_bytes: float) -> float:
    return n_bytes / 1024


def gib_from_mib(mib: float) -> float:
    return mib / 1024


def source(meta: dict) -> str:
    """Where a result comes from: device, versions, commit (when recorded), command."""
    commit = meta.get("commit") or "not recorded"
    return (f"{meta.get('gpu') or meta.get('device')}, torch {meta['torch']}, transformers {meta.get('transformers') or 'not recorded'}, "
            f"commit {commit}, {meta.get('date', 'date not recorded')}: `{meta['command']}`")


def default_config() -> tuple[str, int]:
    """(fw_precision, ingest_batch_groups) of the 2B preset as shipped."""
    from spatial_ttt_ros.runtime.config import load_config

    cfg = load_config("spatial_ttt_2b")
    return cfg.fw_precision, cfg.ingest_batch_groups


def _label(run: dict, default: tuple[str, int]) -> str:
    k = run["ingest_batch_groups"]
    text = f"{run['fw_precision']} fast weights, {k} pair{'s' if k != 1 else ''}/pass"
    return f"**default**: {text}" if (run["fw_precision"], k) == default else text


def cpu_lines(cpu: dict) -> list[str]:
    rows = cpu["rows"]
    ttt = [kib(r["ttt_bytes"]) for r in rows]
    load = cpu.get("load_average_1min")
    busy = (f" (machine load average {load['before']:.1f} -> {load['after']:.1f} on {load['cpus']} CPUs: other work "
            "on a shared machine slows these down)") if load else ""
    return [f"CPU, `{cpu['preset']}` preset, {cpu['threads']} threads, {cpu.get('warmup_frames', 0)} warm-up frames "
            f"before timing{busy}. Source: {source(cpu)}", "",
            "| frames pushed | ms/frame (last 32) | TTT-layer memory | anchor KV |", "|---:|---:|---:|---:|",
            *(f"| {r['frames']} | {r['ms_per_frame_last32']:.2f} | {kib(r['ttt_bytes']):.1f} KiB | "
              f"{kib(r['anchor_kv_bytes']):.1f} KiB |" for r in rows), "",
            f"The TTT-layer part stays within {min(ttt):.1f}-{max(ttt):.1f} KiB (it varies only with how full the "
            "pending chunk is); only the anchor KV grows, linearly."]


def gpu_lines(data: dict, default: tuple[str, int]) -> list[str]:
    runs = sorted(data["ingest"], key=lambda r: (_label(r, default)[:2] != "**", r["fw_precision"],
                                                 r["ingest_batch_groups"]))
    base = {r["frames"]: r for r in (data["baseline"] or {}).get("baseline", [])}
    lines = ["GPU: the Qwen3-VL-2B architecture with random weights at 352x480 (quality is irrelevant for speed "
             "and memory), against stock HF Qwen3-VL-2B on the same frames. Sources:", ""]
    sources = [*runs, *data.get("compare", []), *([data["baseline"]] if data["baseline"] else [])]
    lines += [f"- {source(r)}" for r in sources]
    for cmp in data.get("compare", []):
        lines += ["", "Side by side, one run on one GPU (`bench_engine compare`):", "", *compare_table(cmp)]
    if data.get("question"):
        lines += ["", "The question pass, eager vs over static buffers, one run on one GPU (`bench_question`):", "",
                  *question_table(data["question"])]
    if runs:
        lines += ["", f"Ingest and memory by configuration at {' and '.join(map(str, TABLE_FRAMES))} frames (separate "
                      "runs; every frame count: `benchmarks/results/engine.md`):", "",
                  "| configuration | frames | ingest frames/s | peak GiB | vs one-pass peak | TTT-layer state GiB | "
                  "anchor KV GiB |", "|---|---:|---:|---:|---:|---:|---:|"]
        for run in runs:
            for r in (r for r in run["ingest"] if r["frames"] in TABLE_FRAMES):
                b = base.get(r["frames"])
                ratio = "" if not b else "one pass OOM" if b.get("oom") else f"{r['peak_gib'] / b['peak_gib']:.2f}x"
                lines.append(f"| {_label(run, default)} | {r['frames']} | {r['frames_per_s']:.1f} | {r['peak_gib']:.1f} | "
                             f"{ratio} | {gib_from_mib(r['ttt_state_mib']):.2f} | {gib_from_mib(r['anchor_kv_mib']):.2f} |")
        queries = [(run, run["query"]) for run in runs if run.get("query")]
        if queries:
            rerun = base.get(QUERY_FRAMES)
            lines += ["", f"Count question ({queries[0][1]['count_answer_tokens']} answer tokens) at {QUERY_FRAMES} "
                          "frames, ms (vs the one-pass prefill of the same frames):", "",
                      "| configuration | cold | prepared when idle | first token, prepared | decode ms/token (path) |",
                      "|---|---:|---:|---:|---:|"]
            for run, q in queries:
                def vs(s: float) -> str:
                    ok = rerun and not rerun.get("oom")
                    return f"{1000 * s:.0f}" + (f" ({rerun['seconds'] / s:.1f}x)" if ok else "")
                lines.append(f"| {_label(run, default)} | {vs(q['count_answer_s'])} | {vs(q['prepared_count_answer_s'])} | "
                             f"{1000 * q['prepared_first_token_s']:.0f} | {q['decode_ms_per_token']:.1f} "
                             f"({q.get('decode_path', 'eager')}) |")
    if data.get("kernels"):
        paths = data["kernels"]["per_chunk"]["inference"]["paths"]
        best = max(paths, key=lambda p: paths[p]["graph_speedup_vs_torch_fp32_graph"])
        meta = data["kernels"]["meta"]
        lines += ["", f"Fast-weight apply + update per chunk (C = {meta['chunk']}, {meta['heads']} x {meta['dim']}) against "
                      f"the fp32 PyTorch reference: {paths[best]['graph_speedup_vs_torch_fp32_graph']:.2f}x GPU time "
                      f"({best}; {paths[best]['speedup_vs_torch_fp32']:.2f}x for one call timed eagerly from Python), "
                      f"{paths['triton_fp32']['graph_speedup_vs_torch_fp32_graph']:.2f}x on the fp32 route. Source: "
                      f"{source(meta)}"]
    if base:
        lines += ["", "One pass (stock Qwen3-VL-2B over video + question, prefill only):", "",
                  "| frames | tokens | prefill s | peak GiB |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['frames']} | {r['tokens']:,} | OOM | OOM |" if r.get("oom") else
                  f"| {r['frames']} | {r['tokens']:,} | {r['seconds']:.2f} | {r['peak_gib']:.1f} |" for r in base.values()]
    return lines


def block(data: dict, default: tuple[str, int] | None = None) -> str:
    default = default or default_config()
    lines = [BEGIN, ""]
    if data.get("cpu"):
        lines += [*cpu_lines(data["cpu"]), ""]
    lines += [*gpu_lines(data, default), "", "Per-target verdicts: `benchmarks/results/engine.md`.", "", END]
    return "\n".join(lines)


def replace_block(old: str, text: str, begin: str = BEGIN, end: str = END, where: str = "README") -> str:
    """`old` with its one block between `begin` and `end` replaced by `text`; ValueError without markers."""
    if old.count(begin) != 1 or old.count(end) != 1 or old.index(begin) > old.index(end):
        raise ValueError(f"{where} must hold one {begin!r} ... {end!r} block")
    head, rest = old.split(begin)
    return head + text + rest.split(end, 1)[1]


def rewrite(readme: Path, text: str, begin: str = BEGIN, end: str = END) -> str:
    """README text with the block between `begin` and `end` replaced by `text`; ValueError without markers."""
    return replace_block(readme.read_text(), text, begin, end, str(readme))
