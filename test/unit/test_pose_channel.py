"""The pose channel (config.pose_text): each frame group's timestamp line carries the camera pose of
its second frame. The training layout equals what the engine streams, the one-pass reference and
the training forward equal the streaming engine with it on, and the released presets' layout is
byte for byte the one from before the channel existed."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime.config import available_presets, load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.reference import build_sequence, one_pass_logits
from spatial_ttt_ros.runtime.tokens import (
    ChatLayout,
    build_byte_tokenizer,
    group_text,
    pose_text,
    pose_xy_yaw,
    timestamp_text,
)
from spatial_ttt_ros.spatial.camera import CameraPose, look_at_pose
from spatial_ttt_ros.train.forward import forward_logits
from spatial_ttt_ros.train.samples import IGNORE, TrainSample, layout_sample

pytestmark = pytest.mark.unit
QUESTION = "Where is the chair?"
# sha256 of layout_sample's ids for _golden_sample, computed with the code of main before the pose
# channel existed (commit 745fd0d): the released layout must not move by a byte.
GOLDEN = {"tiny": (169, "4739b68d061a4bff3390ef93c31939666dcb024f26ee00cd82e55bfface47209"),
          "demo": (241, "0c02bb76f77dc28596b2503ba63ff82fd427725dd9907fce983850d7774b95d7")}


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(1)
    return StreamingEngine.from_preset("tiny", device="cpu")


def _pose7(i: int) -> np.ndarray:
    """A camera touring a room (optical frame in the map), as x y z qx qy qz qw."""
    eye = np.array([1.0 + 0.4 * i, -2.0 + 0.3 * i, 1.3])
    target = eye + np.array([math.cos(0.5 * i), math.sin(0.5 * i), -0.1])
    p = look_at_pose(eye, target)
    return np.r_[p.position, p.orientation]


def _frames(n: int, seed: int) -> list[tuple[np.ndarray, float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 1.5 + 0.25 * i, _pose7(i)) for i in range(n)]


def _golden_sample(preset: str, **overrides: object) -> TrainSample:
    cfg = load_config(preset, weights="", **overrides)
    tok = build_byte_tokenizer(cfg.tiny_text["vocab_size"])
    layout = ChatLayout.from_tokenizer(tok, cfg.system_prompt)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(7)]
    stamps = [1.5 + 0.37 * i for i in range(7)]
    return layout_sample(cfg, tok, layout, frames, stamps, QUESTION, "1.2 -0.4",
                         poses=[_pose7(i) for i in range(7)] if cfg.pose_text else None)


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_released_layout_is_unchanged_byte_for_byte(preset):
    s = _golden_sample(preset)
    n, digest = GOLDEN[preset]
    assert len(s) == n
    assert hashlib.sha256(s.input_ids.numpy().astype("<i8").tobytes()).hexdigest() == digest
    # poses given with the channel off are ignored
    cfg = load_config(preset, weights="")
    tok = build_byte_tokenizer(cfg.tiny_text["vocab_size"])
    with_poses = layout_sample(cfg, tok, ChatLayout.from_tokenizer(tok, cfg.system_prompt),
                               [np.zeros((48, 64, 3), np.uint8)] * 3, [0.0, 0.5, 1.0], QUESTION, "x",
                               poses=[_pose7(i) for i in range(3)])
    without = layout_sample(cfg, tok, ChatLayout.from_tokenizer(tok, cfg.system_prompt),
                            [np.zeros((48, 64, 3), np.uint8)] * 3, [0.0, 0.5, 1.0], QUESTION, "x")
    assert torch.equal(with_poses.input_ids, without.input_ids)


def test_every_released_preset_has_the_channel_off_and_its_text_is_the_timestamp():
    for name in available_presets():
        assert load_config(name, weights="").pose_text is False, name
    for a, b, t0 in [(0.0, 0.0, 0.0), (3.3, 3.45, 1.0), (1e5, 1e5 + 0.1, 7.0)]:
        assert group_text(a, b, t0) == timestamp_text(((a - t0) + (b - t0)) / 2)
    on = _golden_sample("tiny", pose_text=True)
    assert len(on) > GOLDEN["tiny"][0]


def test_pose_text_form_and_heading():
    # optical +z along map +y: yaw 90; rounding, no "-0.0", yaw wrapped into [-179, 180]
    p = look_at_pose([1.25, -0.04, 1.3], [1.25, 5.0, 1.3])
    x, y, yaw = pose_xy_yaw(np.r_[p.position, p.orientation])
    assert (round(x, 6), round(y, 6), round(yaw, 6)) == (1.25, -0.04, 90.0)
    assert pose_text((x, y, yaw)) == "x=1.2 y=0.0 yaw=90"
    assert pose_text((-3.06, 12.0, -179.6)) == "x=-3.1 y=12.0 yaw=180"
    assert group_text(2.0, 2.5, 1.0, (x, y, yaw)) == "<1.2 seconds x=1.2 y=0.0 yaw=90>"
    # 4x4 and 7-vector give the same, and agree with the spatial layer's CameraPose.forward
    for i in range(6):
        q = _pose7(i)
        m = np.eye(4)
        cam = CameraPose(q[:3], q[3:])
        m[:3, :3], m[:3, 3] = cam.rotation, cam.position
        a, b = pose_xy_yaw(q), pose_xy_yaw(m)
        np.testing.assert_allclose(a, b, atol=1e-9)
        f = cam.forward
        assert math.isclose(a[2], math.degrees(math.atan2(f[1], f[0])), abs_tol=1e-9)
    with pytest.raises(ValueError, match="straight up or down"):
        pose_xy_yaw(np.r_[look_at_pose([0, 0, 1], [0, 0, 0], up=(0, 1, 0)).position,
                          look_at_pose([0, 0, 1], [0, 0, 0], up=(0, 1, 0)).orientation])
    with pytest.raises(ValueError, match="quaternion"):
        pose_xy_yaw([0, 0, 0, 0, 0, 0, 0])


def test_frames_without_a_pose_are_a_clear_error(base):
    engine = StreamingEngine(base.config.replace(pose_text=True), base.model, base.tokenizer)
    image = np.zeros((48, 64, 3), np.uint8)
    engine.push_frame(image, 0.0, _pose7(0))
    before = engine.state.digest()
    with pytest.raises(ValueError, match="pose_text is on: every frame needs its camera pose"):
        engine.push_frame(image, 0.5)
    assert engine.state.digest() == before and engine.frames_in_memory == 1
    with pytest.raises(ValueError, match="pose_text is on"):
        layout_sample(engine.config, engine.tokenizer, engine.layout, [image] * 2, [0.0, 1.0], QUESTION, "x")
    with pytest.raises(ValueError, match="frame 1 has no camera pose"):
        layout_sample(engine.config, engine.tokenizer, engine.layout, [image] * 2, [0.0, 1.0], QUESTION, "x",
                      poses=[_pose7(0), None])


def _stream(engine: StreamingEngine, frames: list, max_new: int = 4):
    for image, stamp, pose in frames:
        engine.push_frame(image, stamp, pose)
    return engine.ask(QUESTION, max_new_tokens=max_new, return_logits=True)


@pytest.mark.parametrize("n_frames,batch", [(5, 1), (8, 3)])
def test_layout_with_poses_equals_what_the_engine_streams(base, n_frames, batch):
    """Prompt ids of layout_sample == the engine's (one-pass reference builds its own, compared too),
    and the streaming logits == the one-pass reference == the training forward."""
    engine = StreamingEngine(base.config.replace(pose_text=True, ingest_batch_groups=batch), base.model,
                             base.tokenizer)
    frames = _frames(n_frames, seed=n_frames)
    answer = _stream(engine, frames)
    q = engine.tokenizer.encode(QUESTION, add_special_tokens=False) + list(engine.layout.suffix)
    # the one-pass reference (its own layout code) equals the engine
    ref = one_pass_logits(engine, [frames], q + answer.token_ids[:-1])[-len(answer.token_ids):]
    scale = ref.abs().max().item()
    assert (ref - answer.logits).abs().max().item() <= 2e-5 * max(1.0, scale)
    # the training sample's prompt is the engine's stream: the training forward gives its logits
    s = layout_sample(engine.config, engine.tokenizer, engine.layout, [f for f, _, _ in frames],
                      [t for _, t, _ in frames], QUESTION, "x", poses=[p for _, _, p in frames])
    prompt = s.input_ids[:-int((s.labels != IGNORE).sum())]
    assert build_sequence(engine, [frames], q)[0].tolist() == prompt.tolist()
    ids = torch.cat((prompt, torch.tensor(answer.token_ids[:-1], dtype=torch.long)))
    sample = TrainSample(input_ids=ids, labels=torch.full_like(ids, IGNORE), frames=s.frames, stamps=s.stamps)
    with torch.no_grad():
        got = forward_logits(engine.model, engine.config, [sample])[0][-len(answer.token_ids):]
    assert (got - answer.logits).abs().max().item() <= 2e-5 * max(1.0, scale)
    assert answer.token_ids == [int(t) for t in got.argmax(-1)]
    # the pose of the newest frame is in the last group's line
    text = engine.tokenizer.decode(prompt.tolist())
    last = pose_text(pose_xy_yaw(frames[-1][2]))
    assert text.count(" x=") == (n_frames + 1) // 2 and f"{last}><|vision_start|>" in text


def test_poses_change_the_answer_logits(base):
    """Guard against a vacuous channel: other poses, same frames -> other logits."""
    frames = _frames(4, seed=1)
    moved = [(f, t, np.r_[p[:3] + 3.0, p[3:]]) for f, t, p in frames]
    a = _stream(StreamingEngine(base.config.replace(pose_text=True), base.model, base.tokenizer), frames, 1)
    b = _stream(StreamingEngine(base.config.replace(pose_text=True), base.model, base.tokenizer), moved, 1)
    assert (a.logits - b.logits).abs().max() > 1e-4


def test_pending_poses_survive_save_and_load(base, tmp_path):
    cfg = base.config.replace(pose_text=True)
    frames = _frames(5, seed=2)
    engine = StreamingEngine(cfg, base.model, base.tokenizer)
    for image, stamp, pose in frames:
        engine.push_frame(image, stamp, pose)
    assert len(engine.state.pending_poses) == 1  # the fifth frame waits for its pair
    engine.save(tmp_path / "m.safetensors")
    want = engine.ask(QUESTION, max_new_tokens=2, return_logits=True)
    other = StreamingEngine(cfg, base.model, base.tokenizer)
    other.load(tmp_path / "m.safetensors")
    got = other.ask(QUESTION, max_new_tokens=2, return_logits=True)
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    off = StreamingEngine(base.config, base.model, base.tokenizer)
    with pytest.raises(ValueError, match="pose_text"):
        off.load(tmp_path / "m.safetensors")
