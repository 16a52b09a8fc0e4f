"""Streaming evaluation: priors fitted on the other scenes, per-task scores and bootstrap intervals,
and an end-to-end run of `spatial-ttt train eval` on the tiny preset."""

from __future__ import annotations

import json

import pytest

from spatial_ttt_ros.spatial.metrics import (
    aggregate,
    best_constant,
    fit_priors,
    majority_letter,
    mean_relative_accuracy,
)
from spatial_ttt_ros.train.evaluate import add_priors, main, summarize

pytestmark = pytest.mark.unit


def test_best_constant_and_majority_letter():
    values = [1, 1, 1, 2, 2, 3, 10]
    best = best_constant(values)
    mra = {c: sum(mean_relative_accuracy(c, v) for v in values) for c in set(values)}
    assert best == max(mra, key=mra.get) == 1
    assert majority_letter(["B", "a", "b", "A", "C"]) == "A"  # tie A/B -> A
    assert fit_priors([{"vsi_type": "object_counting", "answer": 2}, {"vsi_type": "object_counting", "answer": 2},
                       {"vsi_type": "object_rel_distance", "answer": "C"}]) == {"object_counting": "2",
                                                                                "object_rel_distance": "C"}
    with pytest.raises(ValueError, match="positive"):
        best_constant([0, 1])


def test_aggregate_subsets_average_present_direction_difficulties():
    rows = [{"question_type": "object_rel_direction_easy", "score": 1.0},
            {"question_type": "object_counting", "score": 0.5}]
    assert aggregate(rows)["tasks"]["rel_direction"] == pytest.approx(1 / 3)
    lax = aggregate(rows, missing_subtype_zero=False)
    assert lax["tasks"]["rel_direction"] == 1.0 and lax["overall"] == pytest.approx(0.75)
    assert "rel_direction" not in aggregate(rows[1:], missing_subtype_zero=False)["tasks"]


def _row(seed, answer, pred, arm="full", outside=False):
    from spatial_ttt_ros.spatial.metrics import score_item

    return {"seed": seed, "arm": arm, "kind": "count", "vsi_type": "object_counting", "answer": answer,
            "prediction": str(pred), "score": score_item("object_counting", str(pred), answer), "outside": outside}


def test_priors_come_from_the_other_scenes_and_intervals_cover_the_score():
    # Scenes 0, 2 (fold 0) always hold 2 of a kind, scenes 1, 3 (fold 1) hold 8: a prior fitted on
    # the same scenes would be perfect, one fitted on the others scores 0.
    rows = [_row(s, 2 if s % 2 == 0 else 8, 2) for s in range(4) for _ in range(3)]
    add_priors(rows)
    assert all(r["prior_score"] == 0.0 for r in rows)
    s = summarize(rows)
    assert s["tasks"]["count"]["score"] == pytest.approx(0.5) and s["tasks"]["count"]["prior"] == 0.0
    assert s["tasks"]["count"]["n"] == 12 and s["scenes"] == 4
    lo, hi = s["tasks"]["count"]["ci95"]
    assert lo <= 0.5 <= hi and lo < hi
    assert s["overall"] == pytest.approx(0.5 / 2)  # with rel_direction counted 0, as the harness does
    same = [_row(s, 3, 3) for s in range(5)]
    add_priors(same)
    c = summarize(same)["tasks"]["count"]
    assert c["score"] == c["prior"] == 1.0 and c["ci95"] == [1.0, 1.0]


def test_eval_end_to_end_on_the_tiny_preset(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["--preset", "tiny", "--synth-seeds", "5:6", "--frames", "30", "--out", str(out),
                 "--arm", "full", "--arm", "blind", "--max-new-tokens", "2"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["arms"]) == {"full", "blind"} and result["scenes"] == 1 and result["window_frames"] == 4
    full = result["arms"]["full"]["all"]
    assert full["n"] == result["arms"]["blind"]["all"]["n"] > 0
    assert set(full["tasks"]["count"]) == {"score", "prior", "n", "ci95"} and full["overall_prior"] is not None
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert result["arms"]["full"]["robot"] == {}  # the robot-relative kinds: only for a pose-channel model
    assert len(items) == 2 * full["n"] and {"prediction", "score", "outside"} <= set(items[0])
    assert (out / "eval.md").read_text().startswith("# Streaming evaluation") and (out / "eval.svg").stat().st_size
    assert "| **overall** |" in capsys.readouterr().out
    assert main(["--preset", "tiny", "--out", str(out)]) == 2


def test_a_pose_channel_model_is_asked_the_robot_kinds_with_poses(tmp_path):
    import yaml

    from spatial_ttt_ros.runtime.config import presets_dir

    preset = yaml.safe_load((presets_dir() / "tiny.yaml").read_text())
    preset.update(name="tiny_pose", pose_text=True)
    (tmp_path / "tiny_pose.yaml").write_text(yaml.safe_dump(preset))
    out = tmp_path / "ev"
    assert main(["--preset", str(tmp_path / "tiny_pose.yaml"), "--synth-seeds", "5:6", "--frames", "30",
                 "--out", str(out), "--arm", "full", "--max-new-tokens", "2"]) == 0
    result = json.loads((out / "eval.json").read_text())
    robot = result["arms"]["full"]["robot"]  # kept out of the VSI summary, reported apart
    assert set(robot) == {"locate", "robot_distance", "robot_direction"}
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == result["arms"]["full"]["all"]["n"] + sum(r["n"] for r in robot.values())
    assert "Robot-relative kinds" in (out / "eval.md").read_text()


def test_budget_arms_stream_under_an_anchor_budget_and_bad_budgets_are_refused(tmp_path, capsys):
    out = tmp_path / "ev"
    # tiny: a 44-token chat prefix, 27 tokens per frame group; a budget of 98 keeps the prefix and
    # two groups, so older groups of the 15 keyframes are evicted before the questions
    assert main(["--preset", "tiny", "--synth-seeds", "5:6", "--frames", "75", "--out", str(out),
                 "--arm", "full", "--anchor-budget", "98", "--max-new-tokens", "2"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert list(result["arms"]) == ["full", "budget_98"]
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    full = [r for r in items if r["arm"] == "full"]
    bounded = [r for r in items if r["arm"] == "budget_98"]
    assert len(full) == len(bounded) > 0
    assert {r["evicted_groups"] for r in full} == {0} and min(r["evicted_groups"] for r in bounded) >= 1
    capsys.readouterr()
    assert main(["--preset", "tiny", "--synth-seeds", "5:6", "--out", str(out), "--anchor-budget", "60"]) == 2
    assert "anchor_kv_budget_tokens=60 is too small" in capsys.readouterr().err


def test_merged_runs_report_what_one_run_of_all_arms_reports(tmp_path, capsys):
    common = ["--preset", "tiny", "--synth-seeds", "5:7", "--frames", "30", "--max-new-tokens", "2"]
    for name, arms in (("both", ["--arm", "full", "--arm", "blind"]), ("a", ["--arm", "full"]), ("b", ["--arm", "blind"])):
        assert main([*common, *arms, "--out", str(tmp_path / name)]) == 0
    assert main(["--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    one, merged = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("both", "m"))
    assert merged["arms"] == one["arms"]  # scores, priors refitted, intervals: as if one run
    assert [r["command"] for r in merged["runs"]] == [json.loads((tmp_path / d / "eval.json").read_text())["command"]
                                                     for d in ("a", "b")]
    assert merged["command"].startswith("spatial-ttt train eval --merge") and merged["checkpoint"] == "(random init)"
    assert main(["--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "b"), "--checkpoint", "kept/model.safetensors",
                 "--out", str(tmp_path / "m2")]) == 0
    assert json.loads((tmp_path / "m2" / "eval.json").read_text())["checkpoint"] == "kept/model.safetensors"
    capsys.readouterr()
    # an arm in two runs is kept once when it answered alike (a re-run as a check), refused otherwise
    assert main(["--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "both"), "--out", str(tmp_path / "m3")]) == 0
    assert json.loads((tmp_path / "m3" / "eval.json").read_text())["arms"] == one["arms"]
    assert len((tmp_path / "m3" / "items.jsonl").read_text().splitlines()) == len(
        (tmp_path / "both" / "items.jsonl").read_text().splitlines())
    rows = [json.loads(line) for line in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    rows[1]["prediction"] += "9"
    (tmp_path / "a" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["--merge", str(tmp_path / "both"), "--merge", str(tmp_path / "a"), "--out", str(tmp_path / "x")]) == 2
    assert f"arm 'full' answered 1 of {len(rows)} items otherwise" in capsys.readouterr().err
    # runs over other scenes are refused by name
    assert main([*common[:3], "5:6", *common[4:], "--arm", "blind", "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "c"), "--out", str(tmp_path / "x")]) == 2
    assert "source" in capsys.readouterr().err
    assert main(["--merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
