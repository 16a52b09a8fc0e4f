"""The README's performance block is generated from the committed result files (benchmarks/plot.py,
benchmarks/readme_block.py): the committed README equals what the generator makes of the committed
JSON, its units are binary, the default configuration is the one marked default, and the
side-by-side table computes its ratios from the numbers beside them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import plot  # noqa: E402
from benchmarks.compare_table import compare_table  # noqa: E402
from benchmarks.readme_block import BEGIN, END, block, default_config, rewrite  # noqa: E402

pytestmark = pytest.mark.unit

RESULTS = ROOT / "benchmarks" / "results"


def test_readme_block_is_what_plot_generates_from_the_committed_json():
    readme = (ROOT / "README.md").read_text()
    generated = block(plot.load(RESULTS))
    committed = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert committed == generated, "README.md's performance block is stale: run `python -m benchmarks.plot`"
    assert rewrite(ROOT / "README.md", generated) == readme  # idempotent


def test_units_are_binary_and_the_default_is_marked():
    data = plot.load(RESULTS)
    text = block(data)
    default = default_config()
    rows = [line for line in text.splitlines() if line.startswith("| **default**") and "|" in line[15:]]
    assert rows, "the preset's default configuration has no row"
    checked = 0
    for run in data["ingest"]:
        label = f"{run['fw_precision']} fast weights, {run['ingest_batch_groups']} pair"
        marked = (run["fw_precision"], run["ingest_batch_groups"]) == default
        for r in run["ingest"]:
            cells = [c.strip() for c in next((line for line in text.splitlines() if label in line
                                              and f"| {r['frames']} | {r['frames_per_s']:.1f} |" in line), "").split("|")]
            if len(cells) < 8:
                continue  # a frame count the README does not show
            assert cells[1].startswith("**default**") == marked
            assert cells[6] == f"{r['ttt_state_mib'] / 1024:.2f}" and cells[7] == f"{r['anchor_kv_mib'] / 1024:.2f}"
            checked += 1
    assert checked >= len(data["ingest"])
    cpu = data["cpu"]["rows"][0]
    assert f"| {cpu['frames']} | {cpu['ms_per_frame_last32']:.2f} | {cpu['ttt_bytes'] / 1024:.1f} KiB |" in text
    assert "GB" not in text.replace("80GB", "") and " KB" not in text and " MB" not in text


def test_rewrite_needs_exactly_one_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nno block here\n")
    with pytest.raises(ValueError, match="must hold one"):
        rewrite(readme, "anything")
    readme.write_text(f"# x\n{BEGIN}\nold\n{END}\ntail\n")
    assert rewrite(readme, f"{BEGIN}\nnew\n{END}") == f"# x\n{BEGIN}\nnew\n{END}\ntail\n"


def _compare_result() -> dict:
    ours = {"ingest": [{"frames": 1024, "frames_per_s": 400.0, "peak_gib": 10.0, "peak_after_questions_gib": 11.0,
                        "ttt_state_mib": 1000, "anchor_kv_mib": 2474}],
            "queries": [{"frames": 1024, "count_answer_s": 0.1, "first_token_s": 0.05, "count_answer_tokens": 3,
                         "prepared_count_answer_s": 0.05, "prepared_first_token_s": 0.02, "decode_ms_per_token": 7.0}]}
    return {"gpu": "G", "torch": "t", "transformers": "x", "commit": "abc1234", "command": "python -m benchmarks.bench_engine compare",
            "fw_precision": "bf16", "ingest_batch_groups": 32, "decode_graph": "auto", "ours": ours,
            "peer": [{"frames": 1024, "frames_per_s": 125.0, "peak_gib": 16.0, "peak_after_questions_gib": 22.0,
                      "count_answer_s": 0.2, "first_token_s": 0.1}],
            "baseline": [{"frames": 1024, "tokens": 88636, "seconds": 4.0, "peak_gib": 22.0}]}


def test_compare_table_ratios_follow_the_numbers():
    text = "\n".join(compare_table(_compare_result()))
    assert "| 1024 | Spatial-TTT engine, cold | 400.0 | 10.0 | 11.0 | 100 | 50 |" in text
    assert "| 1024 | stock Qwen3-VL-2B, KV cache streamed | 125.0 | 16.0 | 22.0 | 200 | 100 |" in text
    assert "| 1024 | stock Qwen3-VL-2B, one pass (prefill only) | 256.0 | 22.0 | | 4000 | |" in text
    assert "| 1024 | KV-cache peer | 3.20x | 0.50x | 2.00x / 4.00x |" in text  # 400/125, 11/22, 0.2/0.1, 0.2/0.05
    assert "| 1024 | one-pass baseline | 1.56x | 0.50x | 40.00x / 80.00x |" in text  # 400/256, 11/22, 4/0.1, 4/0.05


def test_a_compare_result_joins_the_readme_block(tmp_path):
    import json

    for path in RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "engine_compare_bf16_b32.json").write_text(json.dumps(_compare_result()))
    text = block(plot.load(tmp_path))
    assert "G, torch t, transformers x, commit abc1234" in text
    assert "| 1024 | KV-cache peer | 3.20x |" in text
