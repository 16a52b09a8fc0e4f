"""Samples from baked shards: the engine's exact ids for the same frames and question, answers that
parse back to the item's answer, determinism in (seed, index, step), the evidence label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.data.annotate import annotate_bag
from spatial_ttt_ros.data.synth import synthesize
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.reference import build_sequence
from spatial_ttt_ros.spatial.answers import parse_answer
from spatial_ttt_ros.spatial.describe import describe_episode, summarize_episode
from spatial_ttt_ros.spatial.qa import item_prompt
from spatial_ttt_ros.spatial.scene import validate_scene
from spatial_ttt_ros.train.bake import BakeOptions, bake_bag
from spatial_ttt_ros.train.dataset import answer_text, build_source, evidence_outside_window
from spatial_ttt_ros.train.samples import IGNORE, layout_sample
from spatial_ttt_ros.train.shards import read_episode

pytestmark = pytest.mark.unit
STAGES = [{"name": "describe", "steps": 4, "mix": {"describe": 1.0}, "window": {"start": 400}},
          {"name": "qa", "steps": 6, "mix": {"qa": 0.8, "describe": 0.2}}]


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(1)
    return StreamingEngine.from_preset("tiny", device="cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    res = synthesize(root / "a", seed=5, n_frames=12, width=192, height=128)
    annotate_bag(res.bag, res.scene_file, chunk_frames=4)
    out = root / "shards"
    bake_bag(res.bag, out, BakeOptions((64, 96)))
    # The same bag without its scene: chunk descriptions from annotations.jsonl, no visibility.
    (res.scene_file).rename(root / "a" / "scene.hidden")
    bake_bag(res.bag, root / "noscene", BakeOptions((64, 96)))
    return out, root / "noscene"


def _source(engine, shards, *, max_frames=8, stages=STAGES, seed=0, **extra):
    cfg = {"shards": [str(p) + "/*" for p in shards], "max_frames": max_frames, "stages": stages, **extra}
    return build_source(cfg, engine.config, engine.tokenizer, engine.layout, seed=seed)


def _streamed_ids(engine, sample, shard_dir):
    ep = read_episode(shard_dir)
    first, last = sample.meta["clip"]
    frames = [(ep.frames[i], float(ep.stamps[i])) for i in range(first, last + 1)]
    q = engine.tokenizer.encode(sample.meta["question"], add_special_tokens=False) + list(engine.layout.suffix)
    a = engine.tokenizer.encode(sample.meta["answer"], add_special_tokens=False) + [engine.layout.eos]
    return build_sequence(engine, [frames], q + a)[0], a


def test_samples_are_the_engines_sequence(engine, shards):
    src = _source(engine, shards)
    seen = set()
    for index in range(12):
        step = 4 + index % 6 if index % 3 else index % 4  # both stages
        s = src.sample(index, step)
        seen.add((s.meta["task"], s.meta["evidence_outside_window"] is None))
        shard = next(p / s.meta["episode"] for p in shards if (p / s.meta["episode"]).is_dir()
                     and read_episode(p / s.meta["episode"], load_frames=False).source == s.meta["source"])
        ids, answer = _streamed_ids(engine, s, shard)
        assert s.input_ids.tolist() == ids.tolist()
        assert s.labels[s.labels != IGNORE].tolist() == answer
        first, last = s.meta["clip"]
        clip = read_episode(shard).frames[first:last + 1]
        assert torch.equal(s.frames[:len(clip)], torch.from_numpy(clip)) and s.frames.shape[0] == len(clip) + len(clip) % 2
        assert len(s.stamps) == s.frames.shape[0]
        video_end = int((s.input_ids == engine.layout.vision_end).nonzero().max()) + 1
        assert video_end <= src.max_clip_tokens()
        assert last - first + 1 <= 8
        if s.meta["task"] == "qa":
            lo, hi = s.meta["item"]["frame_range"]
            assert first <= lo <= hi <= last
            assert s.meta["question"] == item_prompt(s.meta["item"], append_many_rooms=True).text
    assert {t for t, _ in seen} == {"qa", "describe"}


def test_describe_target_is_what_the_clip_has_seen(engine, shards):
    src = _source(engine, shards[:1], stages=[{"steps": 3, "mix": {"describe": 1}}])
    s = src.sample(3, 1)
    ep = read_episode(shards[0] / s.meta["episode"])
    first, last = s.meta["clip"]
    table = {f - first: ep.visibility[f] for f in range(first, last + 1)}
    assert s.meta["answer"] == describe_episode(validate_scene(ep.scene), table)
    assert s.meta["kind"] == "describe" and s.meta["window"] == 40
    # Without visibility: a chunk description, clip from frame 0 to the chunk's end.
    src2 = _source(engine, shards[1:], stages=[{"steps": 3, "mix": {"describe": 1}}])
    s2 = src2.sample(0, 0)
    ep2 = read_episode(shards[1] / s2.meta["episode"])
    chunk = next(d for d in ep2.descriptions if d["text"] == s2.meta["answer"])
    assert chunk["type"] == "chunk_description" and s2.meta["clip"] == [0, chunk["frame_range"][1]]
    assert s2.meta["evidence_outside_window"] is None


def test_summary_target_counts_what_the_clip_has_seen(engine, shards):
    src = _source(engine, shards[:1], stages=[{"steps": 3, "mix": {"summary": 1}}])
    for index in range(4):
        s = src.sample(index, 1)
        ep = read_episode(shards[0] / s.meta["episode"])
        first, last = s.meta["clip"]
        table = {f - first: ep.visibility[f] for f in range(first, last + 1)}
        assert s.meta["answer"] == summarize_episode(validate_scene(ep.scene), table)
        assert s.meta["kind"] == "summary" and s.meta["task"] == "summary"
        assert len(s.meta["answer"]) < len(describe_episode(validate_scene(ep.scene), table)) / 2
    # without visibility there is nothing to count from: a clear error when the source is built
    with pytest.raises(ValueError, match="summary"):
        _source(engine, shards[1:], stages=[{"steps": 3, "mix": {"summary": 1}}])


def test_every_answer_text_parses_back_to_the_items_answer(shards):
    ep = read_episode(shards[0] / "a_bag_0")
    assert len({it["kind"] for it in ep.items}) >= 3
    for item in ep.items:
        prompt = item_prompt(item)
        parsed = parse_answer(prompt, answer_text(item))
        assert parsed.ok, (item, answer_text(item))
        if item["options"]:
            assert parsed.choice == item["answer"] and parsed.choice_text == item["answer_text"]
        elif item["kind"] == "locate":  # one decimal: within 5 cm of the item's position
            assert parsed.position == pytest.approx(tuple(item["answer"]), abs=0.05 + 1e-9)
        else:
            scale = 0.01 if item["unit"] == "cm" else 1.0
            assert parsed.value == pytest.approx(item["answer"] * scale, abs=1e-9)
    for value, unit, text in [(3.0, "m", "3"), (2, "count", "2"), (0.1 + 0.2, "m", "0.30000000000000004"), (2.35, "m", "2.35"), (44.5, "m^2", "44.5"), (153, "cm", "153")]:
        assert answer_text({"options": [], "answer": value, "unit": unit}) == text


def test_deterministic_in_seed_index_step(engine, shards):
    a, b = _source(engine, shards), _source(engine, shards)
    for index, step in [(0, 0), (5, 3), (17, 9)]:
        x, y = a.sample(index, step), b.sample(index, step)
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.frames, y.frames) and x.meta == y.meta
    draws = {tuple(a.sample(i, 6).input_ids.tolist()) for i in range(8)}
    assert len(draws) > 1
    other = _source(engine, shards, seed=1)
    assert any(not torch.equal(other.sample(i, 6).input_ids, a.sample(i, 6).input_ids) for i in range(8))
    assert a.sample(2, 1).meta["window"] == 275 and a.sample(2, 4).meta["stage"] == "qa"


def test_ask_at_end_asks_after_the_whole_tour(engine, shards):
    """ask_at_end: 1 -> every QA clip is the longest one max_frames allows around its item (the end
    of the episode when it fits), so all items of an episode share their ask time; the default (0)
    keeps the random clips, and leaves the draws of existing recipes as they were."""
    qa = [{"name": "qa", "steps": 1, "mix": {"qa": 1.0}}]
    n = read_episode(next(iter(shards[0].iterdir())), load_frames=False).num_frames
    for max_frames in (n, 8):
        src = _source(engine, shards[:1], max_frames=max_frames, stages=qa, ask_at_end=1.0)
        for i in range(12):
            meta = src.sample(i, 0).meta
            first, last = meta["item"]["frame_range"]
            end = min(n - 1, first + max_frames - 1)
            assert meta["clip"] == [max(0, end - max_frames + 1), end], (max_frames, meta["item"]["question"])
            assert meta["clip"][0] <= first and last <= meta["clip"][1]
    ends = {_source(engine, shards[:1], max_frames=n, stages=qa).sample(i, 0).meta["clip"][1] for i in range(24)}
    assert len(ends) > 1  # random clips end at different frames
    half = _source(engine, shards[:1], max_frames=n, stages=qa, ask_at_end=0.5)
    at_end = [half.sample(i, 0).meta["clip"] == [0, n - 1] for i in range(40)]
    assert 5 < sum(at_end) < 40
    plain, zero = _source(engine, shards[:1], stages=qa), _source(engine, shards[:1], stages=qa, ask_at_end=0)
    assert all(plain.sample(i, 0).meta == zero.sample(i, 0).meta for i in range(6))


def test_evidence_outside_window_against_the_attention_mask(engine):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(6)]
    s = layout_sample(engine.config, engine.tokenizer, engine.layout, frames, [0.5 * i for i in range(6)], "Q?", "1")
    query = int((s.labels != IGNORE).nonzero()[0, 0]) - 1
    pads = (s.input_ids == engine.layout.video_pad).nonzero().flatten().tolist()
    per_group = len(pads) // 3
    for window in range(1, len(s) + 2):
        for frame in range(6):
            group = pads[(frame // 2) * per_group:(frame // 2 + 1) * per_group]
            # key k is visible to the query iff query - window < k <= query (runtime/reference.py's mask)
            visible = any(query - window < k <= query for k in group)
            assert evidence_outside_window(s, engine.layout, frame, window) == (not visible), (window, frame)


def test_evidence_label_is_set_with_visibility(engine, shards):
    src = _source(engine, shards[:1], stages=[{"steps": 1, "mix": {"qa": 1}}])
    labels = [src.sample(i, 0).meta["evidence_outside_window"] for i in range(6)]
    # tiny: W = 40 tokens, shorter than any question, so every answer needs the memory
    assert labels == [True] * 6
    big = _source(engine, shards[:1], stages=[{"steps": 1, "mix": {"qa": 1}}])
    big.config = engine.config.replace(window_size=100000)
    assert [big.sample(i, 0).meta["evidence_outside_window"] for i in range(6)] == [False] * 6


@pytest.mark.parametrize("cfg, match", [
    ({"max_frames": 8, "stages": STAGES}, "data.shards"),
    ({"shards": ["/nonexistent/*"], "max_frames": 8, "stages": STAGES}, "no episode shard"),
    ({"shards": ["X"], "max_frames": 0, "stages": STAGES}, "data.max_frames"),
    ({"shards": ["X"], "max_frames": 8, "stages": STAGES, "fps": 2}, "unknown keys"),
    ({"shards": ["X"], "max_frames": 8, "stages": STAGES, "ask_at_end": 1.5}, "data.ask_at_end"),
    ({"shards": ["X"], "max_frames": 8, "stages": STAGES, "ask_at_end": True}, "data.ask_at_end"),
])
def test_bad_data_config(engine, shards, cfg, match):
    cfg = {k: ([str(shards[0] / "*")] if v == ["X"] else v) for k, v in cfg.items()}
    with pytest.raises(ValueError, match=match):
        build_source(cfg, engine.config, engine.tokenizer, engine.layout, seed=0)


def test_bad_sources_are_refused(engine, shards):
    src = _source(engine, shards)
    need = src.max_clip_tokens()  # prefix + 4 groups x (timestamp + 6 vision tokens + 2)
    assert need > 4 * 8 and len(src) == sum(len(v) for v in src.qa.values()) + len(src.describe) > 0
    with pytest.raises(ValueError, match=f"window.start {need - 1} is below the {need} tokens"):
        _source(engine, shards, stages=[{"steps": 2, "mix": {"describe": 1}, "window": {"start": need - 1}}])
    _source(engine, shards, stages=[{"steps": 2, "mix": {"describe": 1}, "window": {"start": need}}])
    with pytest.raises(ValueError, match="asks for qa"):
        _source(engine, shards, stages=[{"steps": 2, "mix": {"qa": 1}, "kinds": ["route_plan"]}], max_frames=1)
    with pytest.raises(ValueError, match="bake again with --preset"):
        build_source({"shards": [str(shards[0] / "*")], "max_frames": 8, "stages": STAGES},
                     engine.config.replace(frame_height=32), engine.tokenizer, engine.layout, seed=0)
    src = _source(engine, shards)
    with pytest.raises(ValueError, match="index"):
        src.sample(-1, 0)
    with pytest.raises(ValueError, match="past the curriculum"):
        src.sample(0, 10)


def test_robot_kinds_with_the_pose_channel_clip_at_the_ask_frame_with_poses(engine, shards):
    """pose_text on: the robot-relative items' clips end at their ask frame, the shard's poses are in
    the layout (the engine fed the same frames and poses streams the same ids); with pose_text off
    a stage asking for them is refused."""
    posed = StreamingEngine(engine.config.replace(pose_text=True), engine.model, engine.tokenizer)
    robot = ["locate", "robot_distance", "robot_direction"]
    stages = [{"name": "qa", "steps": 4, "mix": {"qa": 1.0}, "kinds": robot}]
    src = _source(posed, shards[:1], max_frames=12, stages=stages)
    ep = read_episode(next(iter(shards[0].iterdir())))
    kinds = set()
    for index in range(6):
        s = src.sample(index, 0)
        kinds.add(s.meta["kind"])
        first, last = s.meta["clip"]
        assert s.meta["kind"] in robot and last == s.meta["item"]["frame_range"][1] == ep.num_frames - 1
        q = posed.tokenizer.encode(s.meta["question"], add_special_tokens=False) + list(posed.layout.suffix)
        a = posed.tokenizer.encode(s.meta["answer"], add_special_tokens=False) + [posed.layout.eos]
        frames = [(ep.frames[i], float(ep.stamps[i]), ep.poses[i]) for i in range(first, last + 1)]
        assert s.input_ids.tolist() == build_sequence(posed, [frames], q + a)[0].tolist()
        assert " yaw=" in posed.tokenizer.decode(s.input_ids.tolist())
    assert len(kinds) >= 2
    # an item asked before the episode's end (its frame_range ends earlier) keeps that ask frame
    for item in src.shards[0].episode.items:
        if item["kind"] in robot:
            item["frame_range"] = [item["frame_range"][0], max(item["frame_range"][0], ep.num_frames - 4)]
    for index in range(6):
        s = src.sample(index, 0)
        assert s.meta["clip"][1] == s.meta["item"]["frame_range"][1] < ep.num_frames - 1
    with pytest.raises(ValueError, match="need a preset with pose_text"):
        _source(engine, shards[:1], max_frames=12, stages=stages)
