"""Demo data: one-way tours, the evidence-outside-window label, and the bulk generator giving the
same frames and items as the product path (synth -> bag -> annotate)."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_ttt_ros.data.annotate import annotate_bag
from spatial_ttt_ros.data.synth import generate_scene, synthesize
from spatial_ttt_ros.data.trajectory import generate_trajectory
from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.tokens import build_byte_tokenizer
from spatial_ttt_ros.spatial.observations import evidence_outside_window, last_seen
from spatial_ttt_ros.train.bake import BakeOptions, bake_bag
from spatial_ttt_ros.train.demo_data import QA_KEYS, main, parse_seeds, synth_episode, window_frames
from spatial_ttt_ros.train.shards import read_episode

pytestmark = pytest.mark.unit


def _rooms_visited(scene, poses):
    out = []
    for p in poses:
        inside = [i for i, r in enumerate(scene.rooms) if r.contains(np.asarray(p.position[None, :2]))[0]]
        if inside and (not out or out[-1] != inside[0]):
            out.append(inside[0])
    return out


def test_oneway_tour_never_comes_back_and_return_tour_does():
    scene = generate_scene(7, n_rooms=3)
    oneway = _rooms_visited(scene, generate_trajectory(scene, 7, 1500, tour="oneway"))
    back = _rooms_visited(scene, generate_trajectory(scene, 7, 1500, tour="return"))
    assert oneway == [0, 1, 2]
    assert back[:3] == [0, 1, 2] and back[3:5] == [1, 0]
    with pytest.raises(ValueError, match="tour"):
        generate_trajectory(scene, 7, 10, tour="loop")


def test_evidence_outside_window_label():
    table = {0: {"a"}, 1: {"a", "b"}, 2: set(), 3: {"b"}, 4: set(), 5: set()}
    assert last_seen(table, ["a"], 5) == 1 and last_seen(table, ["a", "b"], 5) == 3 and last_seen(table, ["c"], 5) is None
    assert evidence_outside_window(table, ["a"], 5, 3)          # a last seen at 1; window = frames 3..5
    assert not evidence_outside_window(table, ["a", "b"], 5, 3)  # b is in frame 3
    assert evidence_outside_window(table, ["a", "b"], 5, 2)
    assert not evidence_outside_window(table, ["b"], 0, 0)      # not seen yet at frame 0
    assert not evidence_outside_window(table, [], 5, 1)          # room size: no objects
    with pytest.raises(ValueError, match="window_frames"):
        evidence_outside_window(table, ["a"], 5, -1)


def test_window_frames_counts_whole_groups_of_the_preset():
    cfg = load_config("demo", weights="")
    tok = build_byte_tokenizer(320)
    per_group = len(tok.encode("<0.0 seconds>", add_special_tokens=False)) + 2 + 24
    assert per_group == 39 and window_frames(cfg, tok) == 2 * 7
    assert window_frames(cfg.replace(window_size=39), tok) == 2


def test_bulk_episode_equals_the_product_path(tmp_path):
    """synth (10 Hz) -> bag -> annotate -> bake --stride 5 gives the shard the bulk path writes."""
    cfg = load_config("demo", weights="")
    seed, frames, stride = 4, 50, 5
    rec = synthesize(tmp_path / "rec", seed, frames, cfg.frame_width, cfg.frame_height, tour="oneway")
    annotate_bag(rec.bag, rec.scene_file, seed=0)
    (baked,) = bake_bag(rec.bag, tmp_path / "baked", BakeOptions(frame_size=(128, 192), stride=stride))
    product = read_episode(baked.path)
    rgb, stamps, poses, info = synth_episode(seed, cfg, frames=frames, stride=stride, tour="oneway", window=14)
    assert rgb.shape == (10, 128, 192, 3) and product.source == info["source"] == "synth:4"
    assert np.array_equal(product.frames, rgb)
    assert np.allclose(product.stamps - product.stamps[0], stamps - stamps[0]) and np.allclose(np.diff(stamps), 0.5)
    assert np.allclose(product.poses, poses)
    assert product.items and [{k: it[k] for k in QA_KEYS} for it in info["items"]] == product.items
    assert info["descriptions"] == product.descriptions
    assert {int(k): v for k, v in info["visibility"].items()} == product.visibility
    table = {int(k): set(v) for k, v in info["visibility"].items()}
    for it in info["items"]:
        assert it["evidence_outside_window"] == evidence_outside_window(table, it["objects"], 9, 14)


def test_cli_writes_readable_shards(tmp_path, capsys):
    assert main(["--seeds", "3:5", "--out", str(tmp_path / "shards"), "--frames", "20", "--stride", "5",
                 "--workers", "1"]) == 0
    assert "2/2 scenes" in capsys.readouterr().out
    ep = read_episode(tmp_path / "shards" / "synth_0000004")
    assert ep.frames.shape == (4, 128, 192, 3) and ep.source == "synth:4" and ep.poses.shape == (4, 7)
    assert all("evidence_outside_window" in it for it in ep.items)
    with pytest.raises(ValueError, match="A:B"):
        parse_seeds("5")
    assert main(["--seeds", "5:3", "--out", str(tmp_path / "x")]) == 2


def test_cli_time_limit_starts_no_scene_after_it_and_keeps_whole_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["--seeds", "0:40", "--out", str(out), "--frames", "20", "--stride", "5", "--workers", "1",
                 "--time-limit", "0"]) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert printed.startswith("time limit: ") and f"{len(written)}/40 scenes" in printed, printed
    assert len(written) < 40  # only scenes a worker had taken before the limit
    for name in written:  # each one whole
        assert read_episode(out / name).frames.shape == (4, 128, 192, 3)
