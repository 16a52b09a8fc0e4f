"""The README's performance and results blocks are generated from the committed result files
(benchmarks/plot.py, benchmarks/readme_block.py, benchmarks/readme_results.py): the committed README
equals what the generators make of the committed JSON, units are binary, the default configuration
is the one marked default, the side-by-side table computes its ratios from the numbers beside them,
and training / demo-evaluation lines appear exactly when their files are committed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import plot, readme_results  # noqa: E402
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


# ---------------------------------------------------------------- the results block
RESULT_FILES = tuple(readme_results.FILES.values())


def _results_block(readme: str) -> str:
    return readme[readme.index(readme_results.BEGIN):readme.index(readme_results.END) + len(readme_results.END)]


def test_readme_results_block_is_what_plot_generates_from_the_committed_json():
    readme = (ROOT / "README.md").read_text()
    data = readme_results.load(RESULTS, ROOT / readme_results.EVAL_JSON)
    assert all(data[key] for key in readme_results.FILES), "a committed result file is missing"
    committed = _results_block(readme)
    assert committed == readme_results.block(data), "README.md's results block is stale: run `python -m benchmarks.plot`"
    # training and demo-evaluation lines exactly when their files are committed
    assert (readme_results.TRAIN_HEADING in committed) == bool(data["train"])
    assert (readme_results.EVAL_HEADING in committed) == bool(data["eval"])


def test_plot_rewrites_both_blocks(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for path in RESULTS.glob("*.json"):
        (results / path.name).write_text(path.read_text())
    readme = (ROOT / "README.md").read_text()
    stale = readme.replace(_results_block(readme), f"{readme_results.BEGIN}\nold\n{readme_results.END}")
    stale = stale.replace(readme[readme.index(BEGIN):readme.index(END)], f"{BEGIN}\nold\n")
    (tmp_path / "README.md").write_text(stale)
    assert plot.main(["--results", str(results), "--readme", str(tmp_path / "README.md"),
                      "--eval", str(ROOT / readme_results.EVAL_JSON)]) == 0
    assert (tmp_path / "README.md").read_text() == readme


def test_results_numbers_follow_the_json_in_binary_units():
    data = readme_results.load(RESULTS)
    text = readme_results.block(data)
    save, soak, cam = data["save"], data["soak"], data["camera"]
    assert f"{save['memory_bytes'] / 2**20:.1f} MiB of memory, a {save['file_bytes'] / 2**20:.1f} MiB file" in text
    assert f"({save['file_bytes'] / 2**20 / save['write_s']:.0f} MiB/s)" in text
    mem = [s["memory_bytes"] for s in soak["samples"]]
    assert f"{min(mem) / 1024:.1f}-{max(mem) / 1024:.1f} KiB over the whole run" in text
    assert f"{soak['samples'][0]['rss_bytes'] / 2**20:.1f} MiB at frame" in text
    assert f"{soak['frames_done']:,} of {soak['frames_target']:,} keyframes" in text
    fair = {r["policy"]: r for r in data["fairness"]["runs"]}["fair"]["phases"]["50-query flood"]
    assert f"| fair | 50-query flood | {fair['ingest_fps']:.2f} |" in text
    remap = next(r for r in cam["rows"] if r["what"].startswith("rectify per frame") and r["opencv_threads"] == 1)
    assert f"| rectify (remap, cached maps) | {remap['case']} | {remap['min_ms']:.2f} | {remap['median_ms']:.2f} |" in text
    assert " MB" not in text and " KB" not in text and " GB" not in text


def _train_result() -> dict:
    row = {"strategy": "single", "checkpoint_chunks": True, "checkpoint_layers": False, "frames": 128, "tokens": 11000,
           "step_s_median": 2.0, "tokens_per_s": 5500.0, "peak_gib": 40.25, "mfu": 0.123}
    return {"command": "python -m benchmarks.bench_train", "commit": "abc1234", "gpu": "NVIDIA H100 80GB HBM3",
            "torch": "t", "transformers": "x", "date": "2026-12-06 17:00 UTC", "frames": 128, "frame": "352x480",
            "model": "Qwen3-VL-2B dimensions", "rows": [row, {"strategy": "fsdp2", "checkpoint_chunks": True,
                                                                "checkpoint_layers": True, "oom": True}]}


def _eval_result() -> dict:
    def summary(score: float, n: int) -> dict:
        return {"overall": score, "overall_prior": 0.25, "overall_ci95": [score - 0.05, score + 0.05], "n": n,
                "scenes": 8, "tasks": {}}
    return {"command": "spatial-ttt train eval --preset demo", "commit": "def5678", "preset": "demo",
            "checkpoint": "models/demo/model.safetensors", "device": "cpu (x86_64, 2 workers)", "torch": "t",
            "transformers": "x", "date": "2026-12-06 17:10 UTC", "source": "synth seeds 900:908", "scenes": 8,
            "window_frames": 12, "arms": {"full": {"all": summary(0.41, 300), "outside_window": summary(0.37, 90)},
                                          "blind": {"all": summary(0.22, 300), "outside_window": summary(0.2, 90)}}}


def _budget_result() -> dict:
    def arm(budget: int, frames: int, peak: float, fps: float, oom: str | None) -> dict:
        samples = [{"frame": f, "ingest_fps": fps + (10 * (f > 512) if not budget else 0),
                    "segment_peak_gib": peak + (0.5 * (f > 512) if not budget else 0), "anchor_tokens": 87 * f,
                    "evicted_groups": int(budget > 0 and f >= 1024)} for f in range(256, frames + 1, 256)]
        return {"anchor_kv_budget_tokens": budget, "samples": samples, "oom": oom, "count_answer_s": None}
    return {"gpu": "NVIDIA H100 80GB HBM3", "torch": "t", "commit": "abc1234", "date": "d", "command": "c",
            "frame": "352x480", "fw_precision": "bf16", "ingest_batch_groups": 32,
            "arms": [arm(131072, 2048, 6.0, 200.0, None), arm(0, 1024, 7.5, 150.0, "out of GPU memory")]}


def test_training_and_evaluation_lines_appear_only_with_their_files(tmp_path):
    import json

    for name in RESULT_FILES:
        (tmp_path / name).write_text((RESULTS / name).read_text())
    absent = readme_results.block(readme_results.load(tmp_path, tmp_path / "eval.json"))
    assert readme_results.TRAIN_HEADING not in absent and readme_results.EVAL_HEADING not in absent
    assert "MFU" not in absent and "| arm |" not in absent
    (tmp_path / "train_2b.json").write_text(json.dumps(_train_result()))
    (tmp_path / "eval.json").write_text(json.dumps(_eval_result()))
    text = readme_results.block(readme_results.load(tmp_path, tmp_path / "eval.json"))
    assert text.startswith(absent[:-len(readme_results.END)])  # the other parts unchanged
    assert "| single | on | off | 11,000 | 2.00 | 5,500 | 40.2 | 12.3 % |" in text
    assert "| fsdp2 | on | on | OOM |" in text
    assert "NVIDIA H100 80GB HBM3, torch t, transformers x, commit abc1234, 2026-12-06 17:00 UTC" in text
    assert "| full | 0.410 [0.36, 0.46] | 300 | 0.370 [0.32, 0.42] | 90 |" in text
    assert "| blind | 0.220 [0.17, 0.27] | 300 | 0.200 [0.15, 0.25] | 90 |" in text
    assert "commit def5678, 2026-12-06 17:10 UTC: `spatial-ttt train eval --preset demo`" in text
    assert "2B shape with an anchor budget" not in text
    (tmp_path / readme_results.BUDGET_JSON).write_text(json.dumps(_budget_result()))
    budget = readme_results.block(readme_results.load(tmp_path, tmp_path / "eval.json"))
    assert "| budget 131,072 tokens | 2,048 | 1024 | 6.0 .. 6.0 | 200 .. 200 |" in budget
    assert "| unbounded | 1,024 (out of memory) | - | 7.5 .. 8.0 | 150 .. 160 |" in budget
