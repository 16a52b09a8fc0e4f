"""`spatial-ttt annotate` on hand-built bags: items and their frame ranges, answers from the geometry,
the annotation topic in the bag, the recording left intact, episodes, and clear CLI errors."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.annotate import annotate_bag, cli_annotate
from spatial_ttt_ros.data.bag_reader import BagReader
from spatial_ttt_ros.data.bags import BagWriter
from spatial_ttt_ros.data.recover import recover_bag
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, look_at_pose
from spatial_ttt_ros.spatial.scene import save_scene, validate_scene

T0 = 1_700_000_000_000_000_000
N_FRAMES = 22
INTR = CameraIntrinsics.from_fov(64, 48, 50.0)
EYE = np.array([0.0, 0.0, 1.2])
# Axis-aligned boxes (yaw 0) around a camera that turns on the spot, each at its own bearing.
OBJECTS = [
    {"id": "lamp_0", "category": "lamp", "center": [3.0, 0.0, 0.8], "size": [0.4, 0.4, 1.6]},
    {"id": "sofa_0", "category": "sofa", "center": [2.0, 2.5, 0.4], "size": [2.0, 0.9, 0.8]},
    {"id": "tv_0", "category": "tv", "center": [-1.0, 3.0, 1.0], "size": [1.2, 0.2, 0.7]},
    {"id": "chair_0", "category": "chair", "center": [-3.0, 0.5, 0.45], "size": [0.5, 0.5, 0.9]},
    {"id": "table_0", "category": "table", "center": [-2.5, -2.5, 0.375], "size": [1.2, 0.8, 0.75]},
    {"id": "chair_1", "category": "chair", "center": [3.0, -3.0, 0.45], "size": [0.5, 0.5, 0.9]},
]
SCENE = {"format": "spatial_ttt_scene/1", "frame_id": "map",
         "rooms": [{"name": "studio", "polygon": [[-4, -4], [4, -4], [4, 4], [-4, 4]], "height": 2.6}],
         "objects": OBJECTS}
# Degrees the camera turns from its start until it faces the object; the nearest instance counts.
TURN = {}
for _o in OBJECTS:
    _turn = (math.degrees(math.atan2(_o["center"][1], _o["center"][0])) + 90.0) % 360
    TURN[_o["category"]] = min(_turn, TURN.get(_o["category"], 360.0))
QA_KINDS = {"count", "abs_distance", "object_size", "room_size", "rel_distance", "rel_direction", "route_plan",
            "appearance_order", "locate", "robot_distance", "robot_direction"}


def stamp(i: int) -> int:
    return T0 + i * 100_000_000  # 10 Hz


def camera_pose(i: int):
    # Starts facing -90 deg (only the wall in view), turns 20 deg per frame counter-clockwise.
    yaw = math.radians(-90.0 + 20.0 * i)
    return look_at_pose(EYE, EYE + np.array([math.cos(yaw), math.sin(yaw), -0.15]))


def write_bag(path: Path, *, n: int = N_FRAMES, camera_info: bool = True, poses: bool = True,
              pose_frame: str = "map", max_duration_s: float | None = None) -> Path:
    with BagWriter(path, max_duration_s=max_duration_s) as bag:
        topics = [msgs.TOPIC_IMAGE] + [msgs.TOPIC_CAMERA_INFO] * camera_info + [msgs.TOPIC_POSE] * poses
        for topic in topics:
            bag.add_topic(topic, msgs.TOPIC_TYPES[topic])
        for i in range(n):
            s = stamp(i)
            bag.write(msgs.TOPIC_IMAGE, s, msgs.image_msg(np.zeros((48, 64, 3), np.uint8), s))
            if camera_info:
                bag.write(msgs.TOPIC_CAMERA_INFO, s, msgs.camera_info_msg(INTR.matrix, 64, 48, s))
            if poses:
                p = camera_pose(i)
                bag.write(msgs.TOPIC_POSE, s, msgs.pose_msg(p.position, p.orientation, s, pose_frame))
    return path


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run directory as the recorder leaves it: <run>/bag/ and <run>/scene.yaml."""
    write_bag(tmp_path / "bag")
    save_scene(validate_scene(SCENE), tmp_path / "scene.yaml")
    return tmp_path


def box_gap_distance(a: dict, b: dict) -> float:
    """Closest-point distance of two axis-aligned boxes (independent of spatial.geometry)."""
    gaps = [max(0.0, abs(ca - cb) - (sa + sb) / 2) for ca, cb, sa, sb in zip(a["center"], b["center"], a["size"], b["size"])]
    return math.sqrt(sum(g * g for g in gaps))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_items_answers_ranges_and_the_bag_topic(run: Path):
    data_file = run / "bag" / "bag_0.mcap"
    before = sha(data_file)
    result = annotate_bag(run / "bag", run / "scene.yaml", chunk_frames=8, seed=0, max_per_kind=5)
    items = [json.loads(line) for line in (run / "annotations.jsonl").read_text().splitlines()]
    assert items == list(result.items) and result.frames == N_FRAMES and result.episodes == 1

    # Kinds: one episode description, a chunk description per 8 frames, QA of all eight kinds + the robot ones.
    types = [i["type"] for i in items]
    assert types.count("episode_description") == 1 and types.count("chunk_description") == 3
    qa = [i for i in items if i["type"] == "qa"]
    assert {i["kind"] for i in qa} == QA_KINDS
    chunks = [i["frame_range"] for i in items if i["type"] == "chunk_description"]
    assert chunks == [[0, 7], [8, 15], [16, 21]]

    # Frame ranges: inside the episode, stamped at their last frame.
    for it in items:
        first, last = it["frame_range"]
        assert 0 <= first <= last < N_FRAMES, it
        assert it["stamp_ns"] == stamp(last) and it["episode"] == 0 and it["file"] == "bag_0.mcap"

    # Answers from the geometry: the two chairs, closest-point distances, the order of appearance.
    by_id = {o["id"]: o for o in OBJECTS}
    counts = {i["question"]: i for i in qa if i["kind"] == "count"}
    assert len(counts) == 5  # every category once
    for question, it in counts.items():
        expected = [o["id"] for o in OBJECTS if question == f"How many {o['category']}(s) are in this room?"]
        assert sorted(it["objects"]) == expected and it["answer"] == len(expected), it
    assert counts["How many chair(s) are in this room?"]["answer"] == 2
    assert box_gap_distance(by_id["lamp_0"], by_id["sofa_0"]) == pytest.approx(1.85)
    for it in (i for i in qa if i["kind"] == "abs_distance"):
        a, b = (by_id[o] for o in it["objects"])
        assert it["answer"] == pytest.approx(round(box_gap_distance(a, b), 2), abs=0.005), it
        assert it["unit"] == "m"
    for it in (i for i in qa if i["kind"] == "appearance_order"):
        said = it["answer_text"].split(", ")
        assert said == sorted(said, key=lambda c: TURN[c]), it
        assert it["options"][ord(it["answer"]) - ord("A")].endswith(it["answer_text"])
    for it in (i for i in qa if i["kind"] == "object_size"):
        assert it["answer"] == round(max(by_id[it["objects"][0]]["size"]) * 100)
    room = [i for i in qa if i["kind"] == "room_size"]
    assert room[0]["answer"] == pytest.approx(64.0) and room[0]["frame_range"] == [0, N_FRAMES - 1]
    # The first frame faces the bare wall, so nothing depends on it; then the objects by bearing.
    assert min(i["frame_range"][0] for i in qa if i["kind"] != "room_size") > 0
    episode_text = items[0]["text"]
    assert episode_text.index("the lamp (frame") < episode_text.index("the sofa (frame") < episode_text.index("the tv (frame")

    # The bag: the same items on the annotation topic at their stamps, in a file of its own.
    with BagReader(run / "bag") as reader:
        assert reader.files == ["bag_0.mcap", "bag_annotations.mcap"]
        assert reader.counts[msgs.TOPIC_ANNOTATIONS] == len(items)
        assert reader.counts[msgs.TOPIC_IMAGE] == N_FRAMES
        stored = [(raw.stamp_ns, json.loads(msg.data)) for raw, msg in reader.decoded([msgs.TOPIC_ANNOTATIONS])]
    assert [s for s, _ in stored] == sorted(i["stamp_ns"] for i in items)
    assert all(s == it["stamp_ns"] for s, it in stored)
    key = lambda it: json.dumps(it, sort_keys=True)  # noqa: E731
    assert sorted(map(key, (it for _, it in stored))) == sorted(map(key, items))

    # The recording itself is untouched and the bag is healthy.
    assert sha(data_file) == before
    assert recover_bag(run / "bag").healthy

    # Annotating again replaces the annotations, it does not add to them.
    again = annotate_bag(run / "bag", run / "scene.yaml", chunk_frames=4, seed=7)
    with BagReader(run / "bag") as reader:
        assert reader.counts[msgs.TOPIC_ANNOTATIONS] == len(again.items) != len(items)
        assert reader.files == ["bag_0.mcap", "bag_annotations.mcap"]
    meta = yaml.safe_load((run / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 3 * N_FRAMES + len(again.items)
    assert sha(data_file) == before


def test_deterministic_in_the_seed(run: Path):
    first = annotate_bag(run / "bag", run / "scene.yaml", seed=3).items
    assert annotate_bag(run / "bag", run / "scene.yaml", seed=3).items == first
    assert annotate_bag(run / "bag", run / "scene.yaml", seed=4).items != first


def test_each_bag_file_is_an_episode(tmp_path: Path):
    write_bag(tmp_path / "bag", max_duration_s=1.0)  # 10 frames per file
    save_scene(validate_scene(SCENE), tmp_path / "scene.yaml")
    result = annotate_bag(tmp_path / "bag", tmp_path / "scene.yaml", chunk_frames=5)
    assert result.episodes == 3 and result.frames == N_FRAMES
    episodes = [i for i in result.items if i["type"] == "episode_description"]
    assert [(e["episode"], e["file"], e["frame_range"]) for e in episodes] == [
        (0, "bag_0.mcap", [0, 9]), (1, "bag_1.mcap", [0, 9]), (2, "bag_2.mcap", [0, 1])]
    for it in result.items:
        first, last = it["frame_range"]
        assert it["stamp_ns"] == stamp(10 * it["episode"] + last)
    with BagReader(tmp_path / "bag") as reader:
        assert reader.files[-1] == "bag_annotations.mcap" and len(reader.files) == 4


def test_cli_summary_and_default_scene(run: Path, capsys):
    assert cli_annotate([str(run / "bag"), "--chunk-frames", "8"]) == 0  # scene.yaml beside the bag
    out = capsys.readouterr().out
    assert "1 episodes, 22 frames" in out and "qa/route_plan" in out and "annotations.jsonl" in out


def cli_error(argv: list[str], capsys) -> str:
    assert cli_annotate(argv) == 2
    return capsys.readouterr().err


def test_cli_errors_name_the_problem(run: Path, tmp_path_factory, capsys):
    bag, scene = str(run / "bag"), str(run / "scene.yaml")
    assert "scene file" in cli_error([bag, "--scene", str(run / "missing.yaml")], capsys)
    bad = dict(SCENE, objects=[dict(OBJECTS[0], size=[0.4, -1.0, 1.6])])
    (run / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert "objects[0] (lamp_0).size" in cli_error([bag, "--scene", str(run / "bad.yaml")], capsys)
    assert "chunk_frames" in cli_error([bag, "--scene", scene, "--chunk-frames", "0"], capsys)

    other = tmp_path_factory.mktemp("other")
    assert "no --scene given" in cli_error([str(write_bag(other / "bag", n=2))], capsys)
    no_info = write_bag(other / "no_info", n=2, camera_info=False)
    assert "no CameraInfo topic" in cli_error([str(no_info), "--scene", scene], capsys)
    no_pose = write_bag(other / "no_pose", n=2, poses=False)
    assert "no pose topic" in cli_error([str(no_pose), "--scene", scene], capsys)
    odom = write_bag(other / "odom", n=2, pose_frame="odom")
    assert "frame 'odom'" in cli_error([str(odom), "--scene", scene], capsys)
    assert "does not exist" in cli_error([str(other / "nothing"), "--scene", scene], capsys)
    killed = other / "killed"
    w = BagWriter(killed)
    w.add_topic(msgs.TOPIC_IMAGE, msgs.IMAGE)
    w.flush()
    w._stop.set()  # abandoned without close(), as after a kill: no metadata.yaml
    assert "bag recover" in cli_error([str(killed), "--scene", scene], capsys)
