"""Engine behaviour: asks leave memory untouched, persistence, bad input, checkpoints, presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from spatial_ttt_ros.runtime.config import RELEASED_TTT_LAYERS, SpatialTTTConfig, load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.model import (
    load_checkpoint,
    save_checkpoint,
    ttt_parameter_names,
    wrap_ttt_layers,
)
from spatial_ttt_ros.runtime.tokens import patchify_pair, patchify_pairs


def _engine(**overrides: object) -> StreamingEngine:
    return StreamingEngine.from_preset("tiny", device="cpu", overrides=overrides)


def _push(engine: StreamingEngine, n: int, seed: int = 0, t0: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        engine.push_frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), t0 + 0.2 * i)


def test_ask_leaves_memory_untouched_and_is_repeatable():
    engine = _engine()
    _push(engine, 7)  # odd: one frame waits for its pair
    before = engine.state.digest()
    a = engine.ask("How many chairs?", max_new_tokens=6)
    b = engine.ask("How many chairs?", max_new_tokens=6)
    assert engine.state.digest() == before
    assert a.token_ids == b.token_ids and a.text == b.text
    assert a.frames_seen == 7 and a.last_stamp_s == pytest.approx(1.2)
    assert 1 <= len(a.token_ids) <= 6 and a.total_s >= a.prefill_s > 0


def test_ask_before_any_frame_is_a_clear_error():
    with pytest.raises(ValueError, match="no frames"):
        _engine().ask("How many chairs?")


def test_save_load_ask_gives_the_same_tokens(tmp_path):
    engine = _engine()
    _push(engine, 9)
    expected = engine.ask("Where is the door?", max_new_tokens=5).token_ids
    path = tmp_path / "memory" / "m.safetensors"
    engine.save(path)
    fresh = _engine()
    fresh.load(path)
    assert fresh.frames_in_memory == 9
    assert fresh.ask("Where is the door?", max_new_tokens=5).token_ids == expected
    assert fresh.state.digest() == engine.state.digest()
    assert not list(path.parent.glob(".*.tmp")), "atomic save left a temp file"


def test_truncated_or_mismatched_memory_file_is_rejected_and_memory_kept(tmp_path):
    engine = _engine()
    _push(engine, 4)
    path = tmp_path / "m.safetensors"
    engine.save(path)
    digest = engine.state.digest()
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a valid memory file"):
        engine.load(truncated)
    other = _engine(chunk_size=30)
    with pytest.raises(ValueError, match="chunk_size"):
        other.load(path)
    with pytest.raises(ValueError, match="not found"):
        engine.load(tmp_path / "missing.safetensors")
    assert engine.state.digest() == digest


@pytest.mark.parametrize("image, stamp, match", [
    (np.zeros((48, 64, 3), np.float32), 1.0, "dtype"),
    (np.zeros((48, 64, 4), np.uint8), 1.0, "HxWx3"),
    (np.zeros((48, 64), np.uint8), 1.0, "HxWx3"),
    (np.zeros((0, 64, 3), np.uint8), 1.0, "too small"),
    (np.zeros((48, 64, 3), np.uint8), float("nan"), "finite"),
    (np.zeros((48, 64, 3), np.uint8), 0.1, "backwards"),
    ([[0, 0, 0]], 1.0, "numpy array"),
])
def test_bad_frames_raise_and_leave_state_unchanged(image, stamp, match):
    engine = _engine()
    _push(engine, 3, t0=0.0)  # last stamp 0.4
    before = engine.state.digest()
    with pytest.raises(ValueError, match=match):
        engine.push_frame(image, stamp)
    with pytest.raises(ValueError, match="pose"):
        engine.push_frame(np.zeros((48, 64, 3), np.uint8), 5.0, pose=np.full(7, math.inf))
    assert engine.state.digest() == before and engine.frames_in_memory == 3


def test_ttt_memory_is_flat_while_only_anchor_kv_grows():
    engine = _engine()
    sizes = []
    for n in (20, 40, 80):
        _push(engine, 20, seed=n, t0=engine.state.last_stamp_s + 1 if engine.state.last_stamp_s else 0.0)
        sizes.append(engine.counters.bytes_by_part)
    for part in ("fast_weights", "momentum", "row_norms", "window_kv"):
        assert sizes[0][part] == sizes[1][part] == sizes[2][part], part
    assert max(s["pending"] for s in sizes) <= 2 * 3 * 24 * 32 * 4 * 2  # bounded by one chunk
    assert sizes[0]["anchor_kv"] < sizes[1]["anchor_kv"] < sizes[2]["anchor_kv"]
    assert engine.counters.updates > 0 and engine.counters.tokens > 0


def test_checkpoint_round_trip_and_missing_key_names_it(tmp_path):
    engine = _engine()
    _push(engine, 6)
    expected = engine.ask("How big is the room?", max_new_tokens=4).token_ids
    path = save_checkpoint(engine.model, tmp_path / "ckpt")
    assert path.name == "model.safetensors"
    keys = load_file(str(path)).keys()
    assert "model.language_model.layers.0.self_attn.attn_layer.q_proj.weight" in keys
    assert "model.language_model.layers.3.self_attn.q_proj.weight" in keys  # anchor keeps its names
    assert "model.language_model.layers.1.self_attn.conv_v.weight" in keys

    reloaded = StreamingEngine.from_preset("tiny", device="cpu", checkpoint=str(tmp_path / "ckpt"),
                                           overrides={"seed": 123})  # different random init, then load
    _push(reloaded, 6)
    assert reloaded.ask("How big is the room?", max_new_tokens=4).token_ids == expected

    tensors = load_file(str(path))
    del tensors["model.language_model.layers.2.self_attn.ttt_scale_proj.weight"]
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"layers\.2\.self_attn\.ttt_scale_proj\.weight"):
        load_checkpoint(reloaded.model, tmp_path / "bad.safetensors")
    tensors = load_file(str(path))
    tensors["model.language_model.layers.0.self_attn.surprise"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="unexpected keys"):
        load_checkpoint(reloaded.model, tmp_path / "extra.safetensors")
    assert load_checkpoint(reloaded.model, tmp_path / "extra.safetensors", allow_unexpected=True)["unexpected"] == 1
    (tmp_path / "ckpt.bin").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="only from safetensors"):
        load_checkpoint(reloaded.model, tmp_path / "ckpt.bin")


def test_released_layer_map_names_and_shapes():
    """One Qwen3-VL-2B-sized decoder layer: the TTT parameters carry the released names and shapes
    (REFERENCE_SPEC §2.2) and add 3,361,300 parameters."""
    hf = Qwen3VLConfig(
        text_config=dict(vocab_size=512, hidden_size=2048, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=2048,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]))
    model = Qwen3VLForConditionalGeneration(hf)
    wrap_ttt_layers(model, load_config("spatial_ttt_2b").replace(ttt_layers=(0,)))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    prefix = "model.language_model.layers.0.self_attn."
    assert shapes[prefix + "w0"] == (4, 512, 512) and shapes[prefix + "w1"] == (4, 512, 512)
    assert shapes[prefix + "lr_proj.weight"] == (12, 2048) and shapes[prefix + "lr_proj.bias"] == (12,)
    assert shapes[prefix + "q_scale"] == (2048,) and shapes[prefix + "k_offset"] == (2048,)
    assert shapes[prefix + "ttt_scale_proj.weight"] == (4, 2048)
    assert shapes[prefix + "ttt_norm.weight"] == (512,)
    assert shapes[prefix + "momentum_proj.0.weight"] == (4, 2048)
    assert shapes[prefix + "conv_q.weight"] == (2048, 1, 3, 3, 3)
    assert shapes[prefix + "attn_layer.k_proj.weight"] == (1024, 2048)
    added = sum(int(np.prod(shapes[n])) for n in ttt_parameter_names(model))
    assert added == 3_361_300


def test_presets_and_config_validation():
    released = load_config("spatial_ttt_2b")
    assert released.ttt_layers == RELEASED_TTT_LAYERS and len(released.ttt_layers) == 21
    assert sorted(set(range(28)) - set(released.ttt_layers)) == [3, 7, 11, 15, 19, 23, 27]
    assert (released.chunk_size, released.window_size, released.use_muon, released.prenorm) == (2648, 2648, False, False)
    train = load_config("spatial_ttt_2b_train")
    assert train.use_muon and train.prenorm
    with pytest.raises(ValueError, match="unknown model preset"):
        load_config("nope")
    with pytest.raises(ValueError, match="unknown config fields"):
        load_config("tiny", chunk=3)
    with pytest.raises(ValueError, match="chunk_size"):
        SpatialTTTConfig(chunk_size=0)
    with pytest.raises(ValueError, match="multiple of 32"):
        SpatialTTTConfig(frame_height=100)
    with pytest.raises(FileNotFoundError, match="base_model"):
        StreamingEngine.from_preset("spatial_ttt_2b", device="cpu")


def test_patchify_matches_the_hf_video_processor_layout():
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    mine, grid = patchify_pair(frames)
    video = torch.from_numpy(frames).float().div(255).sub(0.5).div(0.5).permute(0, 3, 1, 2)[None]
    ref, t, h, w = Qwen3VLVideoProcessor().patchify(video, patch_size=16, merge_size=2, temporal_patch_size=2)
    assert grid == (t, h, w) == (1, 4, 6)
    assert torch.equal(mine, ref[0])


def test_patchify_of_several_pairs_at_once_is_the_pairs_in_order():
    # the engine and the training forward convert all pairs of a pass in one call (on the device)
    frames = np.random.default_rng(1).integers(0, 256, (6, 64, 96, 3), dtype=np.uint8)
    rows, grid = patchify_pairs(torch.from_numpy(frames))
    assert grid == (3, 4, 6)
    assert torch.equal(rows, torch.cat([patchify_pair(frames[i:i + 2])[0] for i in range(0, 6, 2)]))
    for bad in (frames[:3], frames[:, :50], frames.astype(np.float32)):
        with pytest.raises(ValueError, match="frames"):
            patchify_pairs(torch.from_numpy(np.ascontiguousarray(bad)))
