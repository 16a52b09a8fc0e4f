"""Scene annotation files: round trips and errors that name the place and field."""

import copy
import json

import pytest

from spatial_ttt_ros.spatial.scene import load_scene, save_scene, validate_scene

SCENE = {
    "format": "spatial_ttt_scene/1",
    "frame_id": "map",
    "rooms": [{"name": "living_room", "polygon": [[0, 0], [5, 0], [5, 4], [0, 4]], "height": 2.6}],
    "objects": [
        {"id": "chair_0", "category": "chair", "center": [1.0, 2.0, 0.45], "size": [0.5, 0.5, 0.9], "yaw": 0.3,
         "color": [200, 40, 40]},
        {"id": "chair_1", "category": "chair", "center": [2.0, 2.0, 0.45], "size": [0.5, 0.5, 0.9]},
        {"id": "table_0", "category": "table", "center": [3.0, 2.0, 0.375], "size": [1.2, 0.8, 0.75]},
        {"id": "chair_2", "category": "chair", "center": [4.0, 2.0, 0.45], "size": [0.5, 0.5, 0.9]},
    ],
}


def test_validate_builds_the_scene():
    s = validate_scene(SCENE)
    assert s.frame_id == "map" and len(s.objects) == 4
    assert s.rooms[0].area == pytest.approx(20.0)
    assert s.get("chair_0").color == (200, 40, 40) and s.get("chair_1").box.yaw == 0.0
    assert [o.id for o in s.by_category()["chair"]] == ["chair_0", "chair_1", "chair_2"]
    assert s.room_of(s.get("table_0")).name == "living_room"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(tmp_path, suffix):
    s = validate_scene(SCENE)
    path = tmp_path / f"scene{suffix}"
    save_scene(s, path)
    back = load_scene(path)
    assert back == s
    assert back.get("chair_0").box.yaw == pytest.approx(0.3)


def _broken(mutate):
    d = copy.deepcopy(SCENE)
    mutate(d)
    return d


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["objects"][3].update(size=[0.5, -1, 2]),
         "objects[3] (chair_2).size: must be 3 positive numbers, got [0.5, -1, 2]"),
        (lambda d: d["objects"][1].update(id="chair_0"), "objects[1] (chair_0).id: duplicate id 'chair_0'"),
        (lambda d: d.update(format="spatial_ttt_scene/2"),
         "format: expected 'spatial_ttt_scene/1', got 'spatial_ttt_scene/2'"),
        (lambda d: d["objects"][0].pop("center"), "objects[0] (chair_0).center: must be 3 numbers [x, y, z], got None"),
        (lambda d: d["objects"][2].update(colour=[1, 2, 3]), "objects[2] (table_0).colour: unknown field"),
        (lambda d: d["objects"][2].update(color=[1, 2, 300]), "objects[2] (table_0).color: must be 3 integers 0-255"),
        (lambda d: d["objects"][2].update(category=""), "objects[2] (table_0).category: must be a non-empty string"),
        (lambda d: d["objects"][2].update(yaw="north"), "objects[2] (table_0).yaw: must be a number of radians"),
        (lambda d: d["rooms"][0].update(polygon=[[0, 0], [0, 4], [5, 4], [5, 0]]),
         "rooms[0] (living_room).polygon: vertices are clockwise"),
        (lambda d: d["rooms"][0].update(polygon=[[0, 0], [1, 1]]), "rooms[0] (living_room).polygon: must be a list"),
        (lambda d: d["rooms"][0].update(height=-1), "rooms[0] (living_room).height: must be a positive number"),
        (lambda d: d.update(frame_id=""), "frame_id: must be a non-empty string"),
        (lambda d: d.pop("objects"), "objects: must be a list, got None"),
    ],
)
def test_invalid_scenes_name_the_field(mutate, message):
    with pytest.raises(ValueError) as e:
        validate_scene(_broken(mutate))
    assert message in str(e.value)


def test_all_errors_reported_together():
    d = _broken(lambda d: (d["objects"][0].update(size=[0, 1, 1]), d["objects"][1].update(center=[1, 2])))
    with pytest.raises(ValueError) as e:
        validate_scene(d)
    assert "objects[0] (chair_0).size" in str(e.value) and "objects[1] (chair_1).center" in str(e.value)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_scene(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_broken(lambda d: d["objects"][3].update(size=[0.5, -1, 2]))))
    with pytest.raises(ValueError, match=r"wrong.json: invalid scene:\n  objects\[3\] \(chair_2\).size"):
        load_scene(wrong)
    with pytest.raises(ValueError, match="must end in .yaml, .yml or .json"):
        load_scene(tmp_path / "scene.txt")
