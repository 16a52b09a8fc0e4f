"""The side-by-side tables of the GPU benchmarks: `bench_engine compare` (our engine, the KV-cache
peer, the one-pass baseline, one run) and `bench_question` (the question pass eager vs over static
buffers, one run): used by the benchmark when it writes the result and by plot.py for engine.md and
the README block, so both show the same numbers from the same JSON."""

from __future__ import annotations

from benchmarks.stamp import stamp_line

OURS = "Spatial-TTT engine"
PEER = "stock Qwen3-VL-2B, KV cache streamed"
BASE = "stock Qwen3-VL-2B, one pass (prefill only)"


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{1000 * seconds:.0f}"


def _gib(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _x(num: float | None, den: float | None, fmt: str = "{:.2f}x") -> str:
    return "" if not num or not den else fmt.format(num / den)


def compare_rows(result: dict) -> dict[int, dict]:
    """frames -> {"ours": ingest row + its query, "peer": row, "base": row} (missing parts absent)."""
    out: dict[int, dict] = {}
    queries = {q["frames"]: q for q in result["ours"].get("queries", [])}
    for r in result["ours"]["ingest"]:
        out.setdefault(r["frames"], {})["ours"] = {**r, "query": queries.get(r["frames"], {})}
    for r in result.get("peer", []):
        out.setdefault(r["frames"], {})["peer"] = r
    for r in result.get("baseline", []):
        out.setdefault(r["frames"], {})["base"] = r
    return dict(sorted(out.items()))


def compare_table(result: dict) -> list[str]:
    k = result["ingest_batch_groups"]
    paths = {q.get("question_path") for q in result["ours"].get("queries", [])} - {None}
    question = f", question pass {'/'.join(sorted(paths))}" if paths else ""
    lines = [f"Ours: {result['fw_precision']} fast weights, {k} frame pairs per pass, decode_graph "
             f"{result.get('decode_graph', 'off')}{question}; the KV-cache peer: {k} pairs per pass; count answer = "
             f"{_answer_tokens(result)} tokens, medians of 3.", "",
             "| frames | system | ingest frames/s | peak GiB, ingest | peak GiB, with questions | count answer ms | "
             "first token ms |", "|---:|---|---:|---:|---:|---:|---:|"]
    ratios = ["", "| frames | ours against | ingest speed | peak memory | count answer (cold / prepared) |",
              "|---:|---|---:|---:|---:|"]
    for frames, row in compare_rows(result).items():
        ours, peer, base = row.get("ours"), row.get("peer"), row.get("base")
        q = (ours or {}).get("query", {})
        if ours:
            lines.append(f"| {frames} | {OURS}, cold | {ours['frames_per_s']:.1f} | {_gib(ours['peak_gib'])} | "
                         f"{_gib(ours.get('peak_after_questions_gib'))} | {_ms(q.get('count_answer_s'))} | "
                         f"{_ms(q.get('first_token_s'))} |")
            if "prepared_count_answer_s" in q:
                lines.append(f"| {frames} | {OURS}, prepared when idle | | | | {_ms(q['prepared_count_answer_s'])} | "
                             f"{_ms(q['prepared_first_token_s'])} |")
            if "eager_question_count_answer_s" in q:
                lines.append(f"| {frames} | {OURS}, prepared, question pass eager (no static buffers, same run) | | | | "
                             f"{_ms(q['eager_question_count_answer_s'])} | {_ms(q['eager_question_first_token_s'])} |")
        if peer:
            lines.append(f"| {frames} | {PEER} | {peer['frames_per_s']:.1f} | {_gib(peer['peak_gib'])} | "
                         f"{_gib(peer['peak_after_questions_gib'])} | {_ms(peer['count_answer_s'])} | "
                         f"{_ms(peer['first_token_s'])} |")
        if base and base.get("oom"):
            lines.append(f"| {frames} | {BASE} | out of memory | | | | |")
        elif base:
            lines.append(f"| {frames} | {BASE} | {frames / base['seconds']:.1f} | {_gib(base['peak_gib'])} | | "
                         f"{_ms(base['seconds'])} | |")
        for name, other, fps in (("KV-cache peer", peer, peer and peer["frames_per_s"]),
                                 ("one-pass baseline", base if base and not base.get("oom") else None,
                                  base and not base.get("oom") and frames / base["seconds"])):
            if not ours or not other:
                continue
            answer = other.get("count_answer_s", other.get("seconds"))
            ratios.append(f"| {frames} | {name} | {_x(ours['frames_per_s'], fps)} | "
                          f"{_x(ours.get('peak_after_questions_gib') or ours['peak_gib'], other.get('peak_after_questions_gib') or other['peak_gib'])} | "
                          f"{_x(answer, q.get('count_answer_s'))} / {_x(answer, q.get('prepared_count_answer_s'))} |")
    notes = ["", "Ratios: ingest speed and answer speed-up are ours / theirs in speed (> 1x = we are faster); peak "
             "memory is ours / theirs, questions included (< 1x = we use less). The one-pass baseline's answer is "
             "its prefill alone (a lower bound of re-running the video for a question)."]
    return lines + ratios + notes


def _answer_tokens(result: dict) -> int:
    for q in result["ours"].get("queries", []):
        return q.get("count_answer_tokens", 3)
    return 3


def question_table(result: dict) -> list[str]:
    """The markdown of a question_pass.json result: its stamp, then eager vs graph per row."""
    table = [stamp_line(result), "",
             "Prepared memory (engine.prepare() ran), count answer of 3 tokens, medians of 3; eager = the question "
             "pass launched from Python, graph = over static buffers (runtime/decode_graph.py). Answer tokens 2-3 "
             "decode by graph replay in both.", "",
             "| frames | question tokens | first token ms, eager | first token ms, graph | answer ms, eager | "
             "answer ms, graph | path taken |", "|---:|---:|---:|---:|---:|---:|---|"]
    return table + [f"| {r['frames']} | {r['question_tokens']} | {r['eager']['first_token_ms']:.1f} | "
                     f"{r['graph']['first_token_ms']:.1f} | {r['eager']['answer_ms']:.1f} | "
                     f"{r['graph']['answer_ms']:.1f} | {r['graph']['question_path']} |" for r in result["rows"]]
