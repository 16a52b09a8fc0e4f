"""QA and descriptions from a hand-built scene and a hand-made visibility table."""

import numpy as np
import pytest

from spatial_ttt_ros.spatial.answers import parse_answer
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, look_at_pose
from spatial_ttt_ros.spatial.describe import describe_chunks, describe_episode, summarize_episode
from spatial_ttt_ros.spatial.metrics import score_item
from spatial_ttt_ros.spatial.observations import compute_visibility_table
from spatial_ttt_ros.spatial.qa import generate_qa, item_prompt
from spatial_ttt_ros.spatial.scene import validate_scene


def obj(id_, cat, center, size, yaw=0.0):
    return {"id": id_, "category": cat, "center": center, "size": size, "yaw": yaw}


SCENE = validate_scene({
    "format": "spatial_ttt_scene/1",
    "frame_id": "map",
    "rooms": [{"name": "living_room", "polygon": [[0, 0], [6, 0], [6, 5], [0, 5]]}],
    "objects": [
        obj("table_0", "table", [3.0, 2.5, 0.375], [1.2, 0.8, 0.75]),  # xy [2.4, 3.6] x [2.1, 2.9]
        obj("chair_0", "chair", [3.0, 1.5, 0.45], [0.5, 0.5, 0.9]),
        obj("chair_1", "chair", [3.0, 3.5, 0.45], [0.5, 0.5, 0.9]),
        obj("chair_2", "chair", [1.5, 2.5, 0.45], [0.5, 0.5, 0.9]),
        obj("sofa_0", "sofa", [5.2, 2.5, 0.4], [0.9, 2.0, 0.8]),  # x [4.75, 5.65]: 1.15 m from the table
        obj("tv_0", "tv", [0.3, 2.5, 1.0], [0.1, 1.2, 0.7]),
        obj("lamp_0", "lamp", [5.5, 0.5, 0.8], [0.3, 0.3, 1.6]),
        obj("plant_0", "plant", [0.5, 4.5, 0.5], [0.4, 0.4, 1.0]),  # never seen
    ],
})
# Hand-made: tv first (0), then chair_2 (1), table + chair_0 (2), chair_1 (3), sofa (4), lamp (5).
TABLE = {
    0: {"tv_0"},
    1: {"tv_0", "chair_2"},
    2: {"table_0", "chair_0"},
    3: {"table_0", "chair_1"},
    4: {"sofa_0"},
    5: {"lamp_0", "sofa_0"},
    6: set(),
}


def by_kind(items, kind):
    return [it for it in items if it["kind"] == kind]


def test_count_distance_size_room():
    items = generate_qa(SCENE, TABLE, seed=1, max_per_kind=10)
    counts = {it["question"]: it for it in by_kind(items, "count")}
    chair = counts["How many chair(s) are in this room?"]
    assert chair["answer"] == 3 and chair["unit"] == "count"
    assert sorted(chair["objects"]) == ["chair_0", "chair_1", "chair_2"]
    assert chair["frame_range"] == [1, 3]  # first chair seen at 1, the last new one at 3

    dist = {frozenset(it["objects"]): it for it in by_kind(items, "abs_distance")}
    assert dist[frozenset({"table_0", "sofa_0"})]["answer"] == pytest.approx(1.15)
    assert dist[frozenset({"table_0", "sofa_0"})]["frame_range"] == [2, 4]
    assert len(dist) == 6  # every pair of the 4 unique seen categories: table, sofa, tv, lamp

    size = {it["objects"][0]: it["answer"] for it in by_kind(items, "object_size")}
    assert size["table_0"] == 120 and size["lamp_0"] == 160
    (room,) = by_kind(items, "room_size")
    assert room["answer"] == 30.0 and room["frame_range"] == [0, 6]


def test_appearance_order_matches_the_table():
    first = {"tv": 0, "chair": 1, "table": 2, "sofa": 4, "lamp": 5}
    items = by_kind(generate_qa(SCENE, TABLE, seed=3, max_per_kind=5), "appearance_order")
    assert items
    for it in items:
        cats = it["answer_text"].split(", ")
        assert cats == sorted(cats, key=first.get) and len(cats) == 4
        letter = it["answer"]
        assert it["options"]["ABCD".index(letter)] == f"{letter}. {it['answer_text']}"
        assert len(set(it["options"])) == len(it["options"])


def hand_direction(p, o, q, difficulty):
    """VSI-Bench's direction words worked out here with plain trigonometry (not geometry.py): the
    signed floor angle from p->o to p->q, positive to the left."""
    import math

    f = (o[0] - p[0], o[1] - p[1])
    t = (q[0] - p[0], q[1] - p[1])
    angle = math.degrees(math.atan2(f[0] * t[1] - f[1] * t[0], f[0] * t[0] + f[1] * t[1]))
    side = "left" if angle > 0 else "right"
    if difficulty == "easy":
        return side
    if difficulty == "medium":
        return "back" if abs(angle) >= 135 else side
    return ("back-" if abs(angle) > 90 else "front-") + side


def hand_gap(a, b):
    """Closest-point distance of two axis-aligned boxes of this scene (all yaw 0), by hand."""
    (ca, sa), (cb, sb) = a, b
    gaps = [max(0.0, abs(ca[i] - cb[i]) - (sa[i] + sb[i]) / 2) for i in range(3)]
    return sum(g * g for g in gaps) ** 0.5


CENTERS = {o["id"]: (o["center"], o["size"]) for o in [
    obj("table_0", "table", [3.0, 2.5, 0.375], [1.2, 0.8, 0.75]), obj("chair_0", "chair", [3.0, 1.5, 0.45], [0.5, 0.5, 0.9]),
    obj("chair_1", "chair", [3.0, 3.5, 0.45], [0.5, 0.5, 0.9]), obj("chair_2", "chair", [1.5, 2.5, 0.45], [0.5, 0.5, 0.9]),
    obj("sofa_0", "sofa", [5.2, 2.5, 0.4], [0.9, 2.0, 0.8]), obj("tv_0", "tv", [0.3, 2.5, 1.0], [0.1, 1.2, 0.7]),
    obj("lamp_0", "lamp", [5.5, 0.5, 0.8], [0.3, 0.3, 1.6])]}


def test_mc_answers_agree_with_hand_geometry():
    items = generate_qa(SCENE, TABLE, seed=5, max_per_kind=6)
    directions = by_kind(items, "rel_direction")
    for it in directions:
        p, o, q = (CENTERS[i][0] for i in it["objects"])
        assert it["answer_text"] == hand_direction(p, o, q, it["difficulty"]), it
        assert it["options"]["ABCD".index(it["answer"])].endswith(it["answer_text"])
    distances = by_kind(items, "rel_distance")
    for it in distances:
        target = CENTERS[it["objects"][0]]
        choices = [c.split(". ", 1)[1] for c in it["options"]]
        d = {c: min(hand_gap(target, CENTERS[i]) for i in CENTERS if i.startswith(c + "_")) for c in choices}
        assert it["answer_text"] == min(d, key=d.get), (it, d)
    assert directions and distances and by_kind(items, "route_plan")


def test_items_only_use_seen_objects_and_round_trip_through_prompts():
    items = generate_qa(SCENE, TABLE, seed=0, max_per_kind=4)
    assert {it["kind"] for it in items} == {"count", "abs_distance", "object_size", "room_size", "rel_distance",
                                            "rel_direction", "route_plan", "appearance_order"}
    for it in items:
        assert "plant_0" not in it["objects"] and "plant" not in it["question"]
        prompt = item_prompt(it)
        assert it["question"] in prompt.text
        if prompt.expects == "choice":
            assert parse_answer(prompt, it["answer"]).choice == it["answer"]
            wrong = next(letter for letter in "ABCD"[:len(it["options"])] if letter != it["answer"])
            assert score_item(it["vsi_type"], it["answer"], it["answer"]) == 1.0
            assert score_item(it["vsi_type"], wrong, it["answer"]) == 0.0  # the metric can say no
        else:
            assert score_item(it["vsi_type"], str(it["answer"]), it["answer"]) == 1.0
            assert score_item(it["vsi_type"], str(float(it["answer"]) * 3 + 1), it["answer"]) < 0.5


def test_deterministic_given_seed():
    a = generate_qa(SCENE, TABLE, seed=11)
    assert a == generate_qa(SCENE, TABLE, seed=11)
    assert generate_qa(SCENE, TABLE, seed=11, kinds=["count"]) == by_kind(a, "count")
    with pytest.raises(ValueError, match="no object with id 'ghost'"):
        generate_qa(SCENE, {0: {"ghost"}})


def test_descriptions():
    text = describe_episode(SCENE, TABLE)
    assert text == describe_episode(SCENE, TABLE)
    assert "It contains 3 chairs, 1 lamp, 1 sofa, 1 table and 1 tv." in text
    assert "plant" not in text
    assert "Objects first appear in this order: the tv (frame 0), chair 3 (frame 1), chair 1 (frame 2)" in text
    assert "The nearest object to the sofa is the lamp, 0.8 m away." in text  # y gap 1.5 - 0.65 = 0.85
    assert "The table measures 1.2 by 0.8 by 0.8 meters (longest side 120 cm)" in text
    summary = summarize_episode(SCENE, TABLE)  # one room here: the description's layout and counts lines
    assert text.split("\n")[1:3] == summary.split("\n")
    assert summary.endswith("It contains 3 chairs, 1 lamp, 1 sofa, 1 table and 1 tv.")
    assert summarize_episode(SCENE, {0: {"tv_0"}, 1: set()}).endswith("It contains 1 tv.")
    assert summarize_episode(SCENE, {0: set()}) == "No objects are annotated."
    # Two rooms: a clip that saw objects in one of them names that one only (the description names both).
    two = validate_scene({"format": "spatial_ttt_scene/1", "frame_id": "map",
                          "rooms": [{"name": "kitchen", "polygon": [[0, 0], [4, 0], [4, 5], [0, 5]]},
                                    {"name": "bedroom", "polygon": [[4, 0], [9, 0], [9, 5], [4, 5]]}],
                          "objects": [obj("bed_0", "bed", [6.5, 2.5, 0.3], [2.0, 1.6, 0.6]),
                                      obj("table_0", "table", [2.0, 2.5, 0.4], [1.0, 0.8, 0.8])]})
    assert summarize_episode(two, {0: {"table_0"}}) == (
        "The space has 1 room: the kitchen (20.0 square meters, about 4.0 m by 5.0 m).\nIt contains 1 table.")
    both = summarize_episode(two, {0: {"table_0"}, 1: {"bed_0"}})
    assert both.startswith("The space has 2 rooms: the kitchen") and "total floor area is 45.0" in both
    assert "bedroom" in describe_episode(two, {0: {"table_0"}})
    chunks = describe_chunks(SCENE, TABLE, chunk_size=3)
    assert [c.frame_range for c in chunks] == [(0, 2), (3, 5), (6, 6)]
    assert chunks[0].text.startswith("Frames 0 to 2 show chair 1, chair 3, the table and the tv.")
    assert "Seen so far: 2 chairs, 1 table and 1 tv." in chunks[0].text
    assert "New in these frames: chair 2, the lamp and the sofa." in chunks[1].text
    assert chunks[2].text == "Frame 6 shows no annotated objects."


def test_visibility_table_from_poses():
    intr = CameraIntrinsics.from_fov(320, 240, 90.0)
    # From the room's west side looking east at the table; chair_2 stands in between, the tv behind.
    poses = [look_at_pose([0.8, 2.5, 1.2], [3.0, 2.5, 0.4]), look_at_pose([3.0, 4.8, 1.5], [3.0, 0.0, 0.5])]
    table = compute_visibility_table(SCENE, poses, intr)
    assert set(table) == {0, 1}
    assert {"table_0", "chair_2", "sofa_0"} <= table[0] and "tv_0" not in table[0]
    assert "table_0" in table[1] and "chair_1" in table[1]
    items = generate_qa(SCENE, table, seed=0, kinds=["count"], max_per_kind=10)
    assert all(set(it["objects"]) <= (table[0] | table[1]) for it in items)
    assert np.isfinite([it["answer"] for it in items]).all()
