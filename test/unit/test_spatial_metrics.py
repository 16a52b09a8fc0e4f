"""VSI-Bench metrics: MRA thresholds, exact-match MC, aggregation into the eight tasks."""

import pytest

from spatial_ttt_ros.spatial.metrics import aggregate, mc_accuracy, mean_relative_accuracy, score_item


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        (10, 10, 1.0),  # error 0 passes all 10 thresholds
        (9.5, 10, 1.0),  # 0.05 <= 1 - 0.95
        (9, 10, 0.9),  # 0.1 <= 1 - theta for theta <= 0.90: 9 of 10
        (11, 10, 0.9),
        (7, 10, 0.5),  # 0.3 <= 1 - theta for theta in 0.50..0.70: 5 of 10
        (5, 10, 0.1),  # 0.5 passes only theta = 0.5
        (4, 10, 0.0),
        (0, 10, 0.0),
        (30, 10, 0.0),
        # Floating point as in the official code: 1 - 0.8 = 0.19999999999999996 < 0.2, so the
        # theta = 0.80 boundary fails and 8 vs 10 scores 6/10, not 7/10.
        (8, 10, 0.6),
    ],
)
def test_mra_hand_computed(pred, gt, expected):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(expected)


def test_mra_rejects_non_positive_ground_truth():
    with pytest.raises(ValueError, match="positive finite number, got 0.0"):
        mean_relative_accuracy(1, 0)


def test_mc_accuracy_case_insensitive():
    assert mc_accuracy("b", "B") == 1.0 and mc_accuracy("A", "B") == 0.0


def test_score_item_uses_the_official_extraction():
    assert score_item("count", "9 chairs", 10) == pytest.approx(0.9)
    assert score_item("object_counting", "9.", "10") == pytest.approx(0.9)
    assert score_item("count", "nine", 10) == 0.0  # not a float: scores 0, as official
    assert score_item("abs_distance", "3m", 3.0) == 0.0  # "3m" is not a float either
    assert score_item("rel_direction", "B. right", "B", difficulty="easy") == 1.0
    assert score_item("object_rel_direction_hard", "(B)", "B") == 0.0  # official exact match, no brackets
    assert score_item("route_plan", "c", "C") == 1.0
    with pytest.raises(ValueError, match="needs its difficulty"):
        score_item("rel_direction", "A", "A")
    with pytest.raises(ValueError, match="must be a number, got 'many'"):
        score_item("count", "3", "many")


def test_aggregate_missing_rel_direction_subtype_counts_zero():
    results = [
        {"question_type": "object_counting", "score": 1.0},
        {"question_type": "object_counting", "score": 0.5},
        {"question_type": "object_abs_distance", "score": 0.4},
        {"question_type": "object_size_estimation", "score": 0.6},
        {"question_type": "room_size_estimation", "score": 0.2},
        {"question_type": "object_rel_distance", "score": 1.0},
        {"question_type": "route_planning", "score": 0.0},
        {"question_type": "obj_appearance_order", "score": 1.0},
        {"question_type": "object_rel_direction_easy", "score": 1.0},
        {"question_type": "rel_direction", "difficulty": "medium", "score": 0.5},
        # no hard items: counts 0
    ]
    out = aggregate(results)
    assert out["per_type"]["object_counting"] == pytest.approx(0.75)
    assert out["counts"]["object_counting"] == 2
    assert out["tasks"]["rel_direction"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert len(out["tasks"]) == 8
    expected = (0.75 + 0.4 + 0.6 + 0.2 + 1.0 + 0.0 + 1.0 + 0.5) / 8
    assert out["overall"] == pytest.approx(expected)
    assert out["labels"]["appearance_order"] == "Appr Order"


def test_aggregate_validates_rows():
    with pytest.raises(ValueError, match=r"results\[0\] needs 'question_type' and 'score'"):
        aggregate([{"score": 1.0}])
    with pytest.raises(ValueError, match=r"score must be a number in \[0, 1\], got 2"):
        aggregate([{"question_type": "object_counting", "score": 2}])
