"""The robot-relative kinds (locate, robot_distance, robot_direction) on a hand-made scene with a
hand-placed camera, their prompts, answer parsing, metrics and the service's reading of them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from spatial_ttt_ros.ros.query import answer_result, prepare_query
from spatial_ttt_ros.spatial.answers import format_position, parse_answer
from spatial_ttt_ros.spatial.camera import look_at_pose
from spatial_ttt_ros.spatial.metrics import aggregate, fit_priors, locate_error, robot_scores, score_item
from spatial_ttt_ros.spatial.prompts import ROBOT_DIRECTION_OPTIONS, build_prompt
from spatial_ttt_ros.spatial.qa import QA_KINDS, generate_qa, item_prompt
from spatial_ttt_ros.spatial.qa_robot import robot_direction_word
from spatial_ttt_ros.spatial.scene import validate_scene

pytestmark = pytest.mark.unit


def obj(id_, cat, center, size):
    return {"id": id_, "category": cat, "center": center, "size": size, "yaw": 0.0}


SCENE = validate_scene({
    "format": "spatial_ttt_scene/1", "frame_id": "map",
    "rooms": [{"name": "living_room", "polygon": [[0, 0], [6, 0], [6, 5], [0, 5]]}],
    "objects": [
        obj("table_0", "table", [3.0, 2.5, 0.375], [1.2, 0.8, 0.75]),
        obj("chair_0", "chair", [3.0, 1.5, 0.45], [0.5, 0.5, 0.9]),
        obj("chair_1", "chair", [3.0, 3.5, 0.45], [0.5, 0.5, 0.9]),
        obj("chair_2", "chair", [1.5, 2.5, 0.45], [0.5, 0.5, 0.9]),
        obj("sofa_0", "sofa", [5.2, 2.5, 0.4], [0.9, 2.0, 0.8]),
        obj("tv_0", "tv", [0.3, 2.5, 1.0], [0.1, 1.2, 0.7]),
        obj("lamp_0", "lamp", [5.5, 0.5, 0.8], [0.3, 0.3, 1.6]),
        obj("plant_0", "plant", [0.5, 4.5, 0.5], [0.4, 0.4, 1.0]),  # never seen
    ],
})
TABLE = {0: {"tv_0"}, 1: {"tv_0", "chair_2"}, 2: {"table_0", "chair_0"}, 3: {"table_0", "chair_1"},
         4: {"sofa_0"}, 5: {"lamp_0", "sofa_0"}, 6: set()}
ROBOT = np.array([1.0, 1.0, 1.3])  # the camera at the ask frame (6)


def poses(heading: tuple[float, float]):
    """Camera poses per frame; the last (the ask frame) at ROBOT looking along `heading` (tilted down a little)."""
    now = look_at_pose(ROBOT, ROBOT + np.array([heading[0], heading[1], -0.2]))
    return [look_at_pose([0.5, 0.5, 1.3], [3.0, 2.5, 0.5])] * 6 + [now]


def robot_items(heading, **kwargs):
    items = generate_qa(SCENE, TABLE, seed=3, max_per_kind=10, poses=poses(heading), **kwargs)
    return {k: {it["question"].split("?")[0].split(" the ")[1].split(" ")[0]: it for it in items if it["kind"] == k}
            for k in ("locate", "robot_distance", "robot_direction")}


def test_locate_and_distance_take_the_nearest_instance_by_floor_distance():
    got = robot_items((1.0, 0.0))
    # chair_2's footprint is 1.27 m from the robot on the floor, chair_0's 1.77, chair_1's 2.85
    assert got["locate"]["chair"]["answer"] == [1.5, 2.5]
    assert got["locate"]["chair"]["objects"] == ["chair_2", "chair_0", "chair_1"]
    assert got["locate"]["chair"]["frame_range"] == [1, 6]  # first chair seen at 1, asked after frame 6
    assert {c: it["answer"] for c, it in got["locate"].items()} == {
        "chair": [1.5, 2.5], "sofa": [5.2, 2.5], "tv": [0.3, 2.5], "lamp": [5.5, 0.5], "table": [3.0, 2.5]}
    assert {c: it["answer"] for c, it in got["robot_distance"].items()} == {
        "chair": 1.27, "sofa": 3.78, "tv": 1.11, "lamp": 4.36, "table": 1.78}
    assert math.hypot(0.25, 1.25) == pytest.approx(1.2748, abs=1e-4)  # chair_2: dx 0.25, dy 1.25
    for it in got["locate"].values():
        assert it["unit"] == "m" and it["options"] == [] and it["vsi_type"] == "robot_locate"
    assert all(it["vsi_type"] == "robot_distance" for it in got["robot_distance"].values())
    assert "plant" not in got["locate"]  # never seen


@pytest.mark.parametrize("heading,want", [
    # heading +x: chair_2 at +71.6 deg, sofa +19.7, tv +115, lamp -6.3; table +36.9 is within 15 deg of 45: skipped
    ((1.0, 0.0), {"chair": "left", "sofa": "front", "tv": "left", "lamp": "front"}),
    # heading -y: chair +161.6, sofa +109.7, lamp +83.7, tv -155; table +126.9 skipped
    ((0.0, -1.0), {"chair": "behind", "sofa": "left", "lamp": "left", "tv": "behind"}),
    # heading +y: chair -18.4, sofa -70.3, lamp -96.3, tv +25; table -53.1 skipped
    ((0.0, 1.0), {"chair": "front", "sofa": "right", "lamp": "right", "tv": "front"}),
])
def test_direction_is_the_quarter_of_the_current_heading(heading, want):
    got = robot_items(heading)["robot_direction"]
    assert {c: it["answer_text"] for c, it in got.items()} == want
    for it in got.values():
        assert sorted(o[3:] for o in it["options"]) == sorted(ROBOT_DIRECTION_OPTIONS)
        assert parse_answer(item_prompt(it), it["answer"]).choice_text == it["answer_text"]
    assert [robot_direction_word(a) for a in (0, 44.9, 45, 134.9, 135, -135, -134.9, -45, 180)] == [
        "front", "front", "left", "left", "behind", "behind", "right", "right", "behind"]


def test_ties_and_missing_poses():
    # a tie between two instances (gap under min_gap_m) is not asked
    assert "chair" not in robot_items((1.0, 0.0), min_gap_m=0.6)["locate"]
    # without poses: no robot items, and the VSI items are exactly those generated with poses
    plain = generate_qa(SCENE, TABLE, seed=3, max_per_kind=10)
    posed = generate_qa(SCENE, TABLE, seed=3, max_per_kind=10, poses=poses((1.0, 0.0)))
    assert not {it["kind"] for it in plain} & {"locate", "robot_distance", "robot_direction"}
    assert [it for it in posed if it["kind"] in {it2["kind"] for it2 in plain}] == plain
    assert len(posed) > len(plain) and set(QA_KINDS) >= {it["kind"] for it in posed}
    with pytest.raises(ValueError, match="no pose for frame 6"):
        generate_qa(SCENE, TABLE, poses=poses((1.0, 0.0))[:6])


def test_prompts_and_position_parsing():
    p = build_prompt("locate", ["chair"])
    assert p.expects == "position" and p.unit == "m" and p.options == ()
    assert "Where is the chair? Give its position in the map frame as x y in meters." in p.text
    assert build_prompt("robot_direction", ["sofa"]).option_texts == ROBOT_DIRECTION_OPTIONS
    assert build_prompt("robot_distance", ["sofa"]).expects == "number"
    for text, xy in [("1.2 -0.4", (1.2, -0.4)), ("(1.2, -0.4)", (1.2, -0.4)), ("x=1.2 y=-0.4", (1.2, -0.4)),
                     ("1.2m, -0.4m.", (1.2, -0.4)), ("3 4", (3.0, 4.0)), ("-0.5 2.0 and more", (-0.5, 2.0))]:
        assert parse_answer(p, text).position == xy, text
    for text in ["1.2", "12 chairs", "the chair", "1.2/3 4", "1.2 -0.45x", "", "nan nan"]:
        parsed = parse_answer(p, text)
        assert not parsed.ok and parsed.position is None and parsed.reason, text
    assert format_position(-0.04, 3.26) == "0.0 3.3" and format_position(1.25, -12.0) == "1.2 -12.0"
    assert parse_answer("robot_distance", "2.5 meters").value == 2.5


def test_metrics_for_the_robot_kinds():
    assert locate_error("1.2 -0.4", [1.5, 0.0]) == pytest.approx(0.5)
    assert locate_error("somewhere", [1.5, 0.0]) == math.inf
    assert score_item("robot_locate", "1.2 -0.4", [1.5, 0.0]) == 1.0
    assert score_item("robot_locate", "1.2 -0.4", [1.6, 0.0]) == 0.0
    rows = [{"kind": "locate", "prediction": f"{e} 0", "answer": [0.0, 0.0]} for e in (0.1, 0.2, 0.3, 0.4, 1.0)]
    rows += [{"kind": "locate", "prediction": "?", "answer": [0.0, 0.0]}]
    rows += [{"vsi_type": "robot_distance", "prediction": "2", "answer": 2.0},
             {"kind": "robot_distance", "prediction": "3", "answer": 2.0},
             {"kind": "robot_direction", "prediction": "B", "answer": "B"},
             {"kind": "robot_direction", "prediction": "A", "answer": "C"}]
    out = robot_scores(rows)
    assert out["locate"] == {"n": 6, "unreadable": 1, "median_m": 0.3, "p90_m": math.inf,
                             "within_target": pytest.approx(4 / 6)}
    assert out["robot_distance"] == {"n": 2, "mra": pytest.approx((1.0 + 0.1) / 2)}  # 3 vs 2: only theta 0.5
    assert out["robot_direction"] == {"n": 2, "accuracy": 0.5}
    # robot types stay out of the eight reported tasks and the overall mean
    agg = aggregate([{"question_type": "robot_distance", "score": 1.0}, {"question_type": "object_counting",
                                                                          "score": 0.5}])
    assert "robot_distance" in agg["per_type"] and "robot_distance" not in agg["tasks"]
    priors = fit_priors([{"vsi_type": "robot_locate", "answer": [1.0, 2.0]},
                         {"vsi_type": "robot_locate", "answer": [3.0, 4.0]},
                         {"vsi_type": "robot_locate", "answer": [2.0, 3.0]}])
    assert priors == {"robot_locate": "2.0 3.0"}


def test_the_service_reads_a_position_or_says_why():
    q = prepare_query("locate", ["chair"], "", [], 0, 0, default_max_new_tokens=8, max_new_tokens_limit=64,
                      default_timeout_s=5.0)
    answer = SimpleNamespace(text="2.4 -1.1", frames_seen=6, last_stamp_s=3.0)
    r = answer_result(q.prompt, answer, "odom")
    assert r.success and r.message == "ok" and r.position == (2.4, -1.1) and r.frame_id == "odom"
    assert math.isnan(r.value) and r.unit == ""
    bad = answer_result(q.prompt, SimpleNamespace(text="near the table", frames_seen=6, last_stamp_s=3.0), "odom")
    assert bad.success and bad.position is None and "not a readable position" in bad.message
    other = answer_result(build_prompt("count", ["chair"]), SimpleNamespace(text="2", frames_seen=6, last_stamp_s=3.0),
                          "odom")
    assert other.position is None and other.frame_id == ""
