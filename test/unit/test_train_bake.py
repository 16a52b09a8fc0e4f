"""bake: a synth bag -> shards holding exactly the bag's frames (engine resize), stamps, poses, items,
visibility; a stride keeps every k-th frame with items true of the kept frames; bags without
images fail naming what is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.annotate import annotate_bag, read_episodes
from spatial_ttt_ros.data.bag_reader import BagReader
from spatial_ttt_ros.data.bags import BagWriter
from spatial_ttt_ros.data.synth import synthesize
from spatial_ttt_ros.runtime.tokens import resize_frame
from spatial_ttt_ros.train.bake import BakeOptions, bake_bag, cli_bake
from spatial_ttt_ros.train.shards import ITEM_KEYS, read_episode

pytestmark = pytest.mark.unit
RB2 = Path(__file__).resolve().parents[1] / "data" / "rosbag2_test_bags"
TINY = (64, 96)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    res = synthesize(root, seed=3, n_frames=12, width=192, height=128)
    annotate_bag(res.bag, res.scene_file, chunk_frames=4)
    return root


def _bag_images(bag: Path) -> list[np.ndarray]:
    with BagReader(bag) as r:
        return [msgs.image_from_msg(m) for _, m in r.decoded([msgs.TOPIC_IMAGE])]


def test_bake_keeps_the_bag_and_its_annotations(run, tmp_path, capsys):
    assert cli_bake([str(run / "bag"), "--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert "12 frames 64x96" in capsys.readouterr().out
    ep = read_episode(tmp_path / f"{run.name}_bag_0")
    assert ep.source == "synth:3" and ep.frame_size == TINY and ep.num_frames == 12
    want = np.stack([resize_frame(img, *TINY) for img in _bag_images(run / "bag")])
    assert np.array_equal(ep.frames, want)
    (bag_ep,), _ = read_episodes(run / "bag")
    assert np.array_equal(ep.stamps, np.array(bag_ep.stamps_ns) / 1e9)
    assert np.allclose(ep.poses[:, :3], [p.position for p in bag_ep.poses])
    assert np.allclose(ep.poses[:, 3:], [p.orientation for p in bag_ep.poses])
    lines = [json.loads(x) for x in (run / "annotations.jsonl").read_text().splitlines()]
    assert ep.items == [{k: it[k] for k in ITEM_KEYS} for it in lines if it["type"] == "qa"] and ep.items
    assert [d["text"] for d in ep.descriptions] == [it["text"] for it in lines if it["type"] != "qa"]
    assert sorted(ep.visibility) == list(range(12)) and any(ep.visibility.values())
    assert ep.scene["name"] == "synthetic_3"
    assert ep.topics == {msgs.TOPIC_IMAGE: 12, msgs.TOPIC_CAMERA_INFO: 12, msgs.TOPIC_POSE: 12,
                         msgs.TOPIC_ANNOTATIONS: len(lines)}
    assert cli_bake([str(run / "bag"), "--preset", "tiny", "--out", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err


def test_stride_keeps_every_kth_frame_with_true_items(run, tmp_path):
    (full,) = bake_bag(run / "bag", tmp_path / "full", BakeOptions(TINY))
    (half,) = bake_bag(run / "bag", tmp_path / "half", BakeOptions(TINY, stride=2, chunk_frames=2))
    a, b = read_episode(full.path), read_episode(half.path)
    assert b.num_frames == 6 and half.annotations == "scene"
    assert np.array_equal(b.frames, a.frames[::2]) and np.array_equal(b.stamps, a.stamps[::2])
    assert b.visibility == {k: a.visibility[2 * k] for k in range(6)}
    assert b.items and all(max(it["frame_range"]) < 6 for it in b.items)
    for it in b.items:  # every object an answer depends on is visible in a kept frame
        seen = set().union(*b.visibility.values())
        assert set(it["objects"]) <= seen
    assert [d["frame_range"] for d in b.descriptions if d["type"] == "chunk_description"] == [[0, 1], [2, 3], [4, 5]]


def test_stride_without_scene_is_refused(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "scene.yaml").unlink()
    with pytest.raises(ValueError, match="needs the scene file"):
        bake_bag(copy / "bag", tmp_path / "out", BakeOptions(TINY, stride=2))
    (ep,) = bake_bag(copy / "bag", tmp_path / "out", BakeOptions(TINY))  # stride 1: annotations as they are
    shard = read_episode(ep.path)
    assert shard.visibility is None and shard.scene is None and shard.items and ep.annotations == "annotations.jsonl"
    assert shard.source == str((copy / "bag").resolve())


def test_images_only_bag_bakes_frames(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(5)]
    with BagWriter(tmp_path / "cam" / "bag") as w:
        w.add_topic(msgs.TOPIC_IMAGE_COMPRESSED, msgs.COMPRESSED_IMAGE)
        for i, img in enumerate(imgs):
            stamp = 10**9 + i * 10**8
            w.write(msgs.TOPIC_IMAGE_COMPRESSED, stamp, msgs.compressed_image_msg(img, stamp))
    (ep,) = bake_bag(tmp_path / "cam" / "bag", tmp_path / "out", BakeOptions(TINY, stride=2))
    shard = read_episode(ep.path)
    assert shard.num_frames == 3 and shard.poses is None and shard.items == [] and shard.visibility is None
    assert np.allclose(shard.stamps, [1.0, 1.2, 1.4])
    with BagReader(tmp_path / "cam" / "bag") as r:
        decoded = [msgs.image_from_msg(m) for _, m in r.decoded()]
    assert np.array_equal(shard.frames, np.stack([resize_frame(decoded[i], *TINY) for i in (0, 2, 4)]))


@pytest.mark.parametrize("name", sorted(p.name for p in RB2.iterdir() if (p / "metadata.yaml").is_file()))
def test_rosbag2_bags_without_images_fail_naming_what_is_missing(name, tmp_path, capsys):
    assert cli_bake([str(RB2 / name), "--preset", "tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no images to bake" in err and "sensor_msgs/msg/Image" in err
    info = yaml.safe_load((RB2 / name / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    for t in info["topics_with_message_count"]:
        assert f"{t['topic_metadata']['name']} [" in err and f"]: {t['message_count']}" in err
    assert not any(tmp_path.iterdir())


def test_bad_arguments(run, tmp_path, capsys):
    assert cli_bake([str(tmp_path / "nope"), "--preset", "tiny", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_bake([str(run / "bag"), "--preset", "nosuch", "--out", str(tmp_path)]) == 2
    assert "unknown model preset" in capsys.readouterr().err
    assert cli_bake([str(run / "bag"), "--preset", "tiny", "--out", str(tmp_path), "--stride", "0"]) == 2
    assert "stride must be a positive integer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a file; give the bag directory"):
        bake_bag(run / "bag" / "bag_0.mcap", tmp_path, BakeOptions(TINY))
    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    lines = (stale / "annotations.jsonl").read_text().splitlines()
    (stale / "annotations.jsonl").write_text("\n".join(x.replace('"frame_range": [0, 11]', '"frame_range": [0, 13]')
                                                          for x in lines))
    with pytest.raises(ValueError, match="annotate the bag again"):
        bake_bag(stale / "bag", tmp_path / "o", BakeOptions(TINY))
    with pytest.raises(ValueError, match="scene file .* does not exist"):
        bake_bag(run / "bag", tmp_path, BakeOptions(TINY), scene_path=tmp_path / "x.yaml")


def test_each_bag_file_is_an_episode(tmp_path):
    """A recorder bag split by duration: one shard per data file, frames with a pose only."""
    rng = np.random.default_rng(1)
    k = np.array([[50.0, 0, 48], [0, 50.0, 32], [0, 0, 1]])
    with BagWriter(tmp_path / "rec" / "bag", max_duration_s=0.45) as w:
        for topic in (msgs.TOPIC_IMAGE, msgs.TOPIC_CAMERA_INFO, msgs.TOPIC_POSE):
            w.add_topic(topic, msgs.TOPIC_TYPES[topic])
        for i in range(10):
            stamp = 5 * 10**9 + i * 10**8
            w.write(msgs.TOPIC_IMAGE, stamp, msgs.image_msg(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), stamp))
            w.write(msgs.TOPIC_CAMERA_INFO, stamp, msgs.camera_info_msg(k, 96, 64, stamp))
            if i != 7:  # frame 7 has no pose: skipped, as annotate skips it
                w.write(msgs.TOPIC_POSE, stamp, msgs.pose_msg([i, 0, 1], [0, 0, 0, 1], stamp))
    baked = bake_bag(tmp_path / "rec" / "bag", tmp_path / "out", BakeOptions(TINY, max_pose_gap_s=0.05))
    shards = [read_episode(b.path) for b in baked]
    assert [s.episode for s in shards] == ["rec_bag_0", "rec_bag_1"]
    assert [s.num_frames for s in shards] == [5, 4]
    assert np.allclose(np.concatenate([s.stamps for s in shards]), [5 + 0.1 * i for i in range(10) if i != 7])
    assert np.allclose(np.concatenate([s.poses[:, 0] for s in shards]), [i for i in range(10) if i != 7])
    assert all(s.items == [] and s.visibility is None for s in shards)
