"""Episode shards: round trip, and every bad field is a ValueError naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from spatial_ttt_ros.train.shards import FORMAT, find_shards, read_episode, write_episode

pytestmark = pytest.mark.unit

ITEM = {"kind": "count", "vsi_type": "object_counting", "difficulty": "", "question": "How many chair(s) are in this room?",
        "options": [], "answer": 2, "answer_text": "", "unit": "count", "objects": ["chair_0", "chair_1"],
        "frame_range": [1, 3]}
MC = {"kind": "rel_distance", "vsi_type": "object_rel_distance", "difficulty": "", "question": "Which is closest?",
      "options": ["A. sofa", "B. table"], "answer": "B", "answer_text": "table", "unit": "",
      "objects": ["chair_0", "sofa_0", "table_0"], "frame_range": [0, 2]}
SCENE = {"format": "spatial_ttt_scene/1", "objects": [{"id": i} for i in ("chair_0", "chair_1", "sofa_0", "table_0")]}


def _episode(n: int = 5) -> tuple:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, 4, 6, 3), dtype=np.uint8)
    stamps = 10.0 + 0.2 * np.arange(n)
    poses = np.zeros((n, 7))
    poses[:, 0] = np.arange(n)
    poses[:, 6] = 1.0
    info = {"episode": "ep_0", "source": "synth:7", "items": [ITEM, MC],
            "descriptions": [{"type": "chunk_description", "frame_range": [0, 3], "text": "Frames 0 to 3 show the sofa."}],
            "visibility": {str(i): ["chair_0"] if i else [] for i in range(n)}, "scene": SCENE,
            "topics": {"/camera/image_raw": n}}
    return frames, stamps, poses, info


def test_round_trip(tmp_path):
    frames, stamps, poses, info = _episode()
    path = write_episode(tmp_path / "ep_0", frames, stamps, poses, info)
    ep = read_episode(path)
    assert np.array_equal(ep.frames, frames) and ep.frames.dtype == np.uint8
    assert np.array_equal(ep.stamps, stamps) and np.array_equal(ep.poses, poses)
    assert ep.items == [ITEM, MC] and ep.descriptions == info["descriptions"]
    assert ep.visibility == {i: (["chair_0"] if i else []) for i in range(5)}
    assert ep.scene == SCENE and ep.topics == info["topics"] and ep.source == "synth:7"
    assert ep.frame_size == (4, 6) and ep.num_frames == 5
    doc = json.loads((path / "episode.json").read_text())
    assert doc["format"] == FORMAT and doc["frame_size"] == [4, 6] and doc["frames"] == 5
    light = read_episode(path, load_frames=False)
    assert light.frames is None and light.num_frames == 5 and light.items == ep.items
    assert find_shards([str(tmp_path / "*")]) == [path] == find_shards(str(tmp_path))
    with pytest.raises(ValueError, match="exists"):
        write_episode(path, frames, stamps, poses, info)
    write_episode(path, frames, stamps, None, info, overwrite=True)
    assert read_episode(path).poses is None


def _json_case(key_path, value):
    def edit(doc):
        d = doc
        for k in key_path[:-1]:
            d = d[k]
        if value is KeyError:
            del d[key_path[-1]]
        else:
            d[key_path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, field", [
    (_json_case(["format"], "other/1"), "format"),
    (_json_case(["frames"], 4), "frames"),
    (_json_case(["frame_size"], [6, 4]), "frame_size"),
    (_json_case(["episode"], "ep_1"), "episode"),
    (_json_case(["source"], ""), "source"),
    (_json_case(["items", 0, "frame_range"], [2, 9]), "items[0].frame_range"),
    (_json_case(["items", 0, "frame_range"], [3, 1]), "items[0].frame_range"),
    (_json_case(["items", 0, "kind"], "free_form"), "items[0].kind"),
    (_json_case(["items", 0, "answer"], "two"), "items[0].answer"),
    (_json_case(["items", 1, "answer"], "C"), "items[1].answer"),
    (_json_case(["items", 1, "question"], KeyError), "items[1]"),
    (_json_case(["descriptions", 0, "type"], "caption"), "descriptions[0].type"),
    (_json_case(["descriptions", 0, "text"], ""), "descriptions[0].text"),
    (_json_case(["visibility", "7"], []), "visibility"),
    (_json_case(["visibility", "1"], ["ghost_0"]), "visibility"),
    (_json_case(["topics"], {"/x": -1}), "topics"),
])
def test_bad_json_field_is_named(tmp_path, edit, field):
    frames, stamps, poses, info = _episode()
    path = write_episode(tmp_path / "ep_0", frames, stamps, poses, info)
    doc = json.loads((path / "episode.json").read_text())
    edit(doc)
    (path / "episode.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"episode field '{field.replace('[', '.').replace(']', '.')}"):
        read_episode(path)


@pytest.mark.parametrize("tensors, field", [
    (lambda f, s, p: {"frames": f.astype(np.float32), "stamps": s}, "frames"),
    (lambda f, s, p: {"frames": f[..., :2].copy(), "stamps": s}, "frames"),
    (lambda f, s, p: {"frames": f, "stamps": s[:-1].copy()}, "stamps"),
    (lambda f, s, p: {"frames": f, "stamps": s.astype(np.float32)}, "stamps"),
    (lambda f, s, p: {"frames": f, "stamps": s[::-1].copy()}, "stamps"),
    (lambda f, s, p: {"frames": f, "stamps": np.where(np.arange(5) == 2, np.nan, s)}, "stamps"),
    (lambda f, s, p: {"frames": f, "stamps": s, "poses": p[:, :6].copy()}, "poses"),
    (lambda f, s, p: {"frames": f, "stamps": s, "poses": p * 2}, "poses"),
    (lambda f, s, p: {"frames": f}, "frames.safetensors tensors"),
    (lambda f, s, p: {"frames": f, "stamps": s, "extra": s}, "frames.safetensors tensors"),
])
def test_bad_tensor_is_named(tmp_path, tensors, field):
    frames, stamps, poses, info = _episode()
    path = write_episode(tmp_path / "ep_0", frames, stamps, poses, info)
    save_file(tensors(frames, stamps, poses), str(path / "frames.safetensors"), metadata={"format": FORMAT})
    with pytest.raises(ValueError, match=f"episode field '{field}'"):
        read_episode(path)


def test_bad_files(tmp_path):
    frames, stamps, poses, info = _episode()
    path = write_episode(tmp_path / "ep_0", frames, stamps, poses, info)
    save_file({"frames": frames, "stamps": stamps}, str(path / "frames.safetensors"))
    with pytest.raises(ValueError, match="metadata format"):
        read_episode(path)
    (path / "frames.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="cannot read frames.safetensors"):
        read_episode(path)
    (path / "episode.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_episode(path)
    (path / "episode.json").unlink()
    with pytest.raises(ValueError, match="episode.json is missing"):
        read_episode(path)


def test_write_refuses_bad_input(tmp_path):
    frames, stamps, poses, info = _episode()
    with pytest.raises(ValueError, match="'frames'"):
        write_episode(tmp_path / "ep_0", frames[..., 0], stamps, poses, info)
    with pytest.raises(ValueError, match="'episode'"):
        write_episode(tmp_path / "other", frames, stamps, poses, info)
    with pytest.raises(ValueError, match="'episode'"):
        write_episode(tmp_path / "../x", frames, stamps, poses, {**info, "episode": "../x"})
    bad = {**info, "items": [{**ITEM, "frame_range": [0, 5]}]}
    with pytest.raises(ValueError, match=r"'items\[0\].frame_range'"):
        write_episode(tmp_path / "ep_0", frames, stamps, poses, bad)
    assert not any(tmp_path.iterdir())
