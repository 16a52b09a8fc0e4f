"""The memory-ablation switches of the engine do what they say (config.ttt_updates,
config.anchor_window_only) and a preset's own weights load by default (config.weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.model import save_checkpoint
from spatial_ttt_ros.runtime.state import TTTLayerState
from spatial_ttt_ros.runtime.ttt_layer import TTTAttention

pytestmark = pytest.mark.unit
QUESTION = "How many chairs are in this room?"


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(n)]


def _logits(frames: list[np.ndarray], **overrides: object) -> tuple[StreamingEngine, torch.Tensor]:
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu", overrides=overrides)
    for i, f in enumerate(frames):
        engine.push_frame(f, 0.5 * i)
    return engine, engine.ask(QUESTION, max_new_tokens=3, return_logits=True).logits


def test_ttt_updates_off_keeps_the_initial_fast_weights():
    frames = _frames(12)
    engine, off = _logits(frames, ttt_updates=False)
    assert engine.counters.updates == 0 and engine.counters.tokens > 3 * engine.config.chunk_size
    for layer, st in zip(engine.model.model.language_model.layers, engine.state.layers):
        if isinstance(st, TTTLayerState):
            attn: TTTAttention = layer.self_attn
            for got, init in zip(st.fast.w, (attn.w0, attn.w1, attn.w2)):
                assert torch.equal(got, init.float())
    # Same as a chunk so long that no update ever happens; different from the product.
    _, never = _logits(frames, chunk_size=10**6)
    _, full = _logits(frames)
    assert torch.allclose(off, never, atol=1e-5)
    assert not torch.allclose(off, full, atol=1e-3)


def test_anchor_window_only_forgets_what_left_the_window():
    frames = _frames(40)
    changed = [np.full_like(frames[0], 255)] + frames[1:]
    # Window-only memory: TTT updates off and anchors windowed -> a pure sliding-window model, whose
    # answer cannot depend on frame 0 (~400 tokens back; 4 layers x W = 160 tokens of reach).
    _, a = _logits(frames, ttt_updates=False, anchor_window_only=True)
    _, b = _logits(changed, ttt_updates=False, anchor_window_only=True)
    assert torch.allclose(a, b, atol=1e-6)
    # With full anchors the first frame still matters.
    _, c = _logits(frames, ttt_updates=False)
    _, d = _logits(changed, ttt_updates=False)
    assert not torch.allclose(c, d, atol=1e-4)


def test_preset_weights_load_by_default(tmp_path):
    base = StreamingEngine.from_preset("tiny", device="cpu")
    with torch.no_grad():
        for p in base.model.parameters():
            p.add_(0.01)
    save_checkpoint(base.model, tmp_path / "w")
    preset = load_config("tiny").to_dict() | {"weights": "w/model.safetensors"}
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(preset))
    cfg = load_config(tmp_path / "p.yaml")
    assert cfg.weights == str((tmp_path / "w" / "model.safetensors").resolve())
    loaded = StreamingEngine.from_preset(str(tmp_path / "p.yaml"), device="cpu")
    for (name, a), b in zip(base.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        StreamingEngine.from_preset(str(tmp_path / "p.yaml"), device="cpu", overrides={"weights": str(tmp_path / "no")})


def _official_pair(pad: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Logits of the same ask under the block and the official decode rule; and N mod C."""
    out, rem = [], None
    for rule in ("block", "official"):
        engine = StreamingEngine.from_preset("tiny", device="cpu", overrides={"decode_update_rule": rule})
        for i, f in enumerate(_frames(10)):
            engine.push_frame(f, 0.5 * i)
        engine.flush()
        question = "How many chairs?" + " " * pad
        n = engine.state.tokens + len(engine.tokenizer.encode(question, add_special_tokens=False)) + len(engine.layout.suffix)
        rem = n % engine.config.chunk_size
        logits = engine.ask(question, max_new_tokens=4, return_logits=True).logits
        assert logits.shape[0] >= 3
        out.append(logits)
    return out[0], out[1], rem


def test_official_decode_rule_follows_the_reference_spec():
    """REFERENCE_SPEC §6.4: the first answer token comes from the prefill (unaffected); the first
    decode step answers from the weights before its update and then updates with the last C prompt
    tokens; a prompt ending exactly on a block boundary leaves that block for that update."""
    torch.set_num_threads(1)
    c = load_config("tiny").chunk_size
    # Prompt length N not a multiple of C: token 2 as the block rule, tokens 3.. from S + one more update.
    pad = next(p for p in range(c) if _official_pair_len(p) % c == 5)
    block, official, rem = _official_pair(pad)
    assert rem == 5
    assert torch.allclose(block[:2], official[:2], atol=1e-6)
    assert not torch.allclose(block[2:3], official[2:3], atol=1e-4)
    # N a multiple of C: the prefill defers the last block, so token 2 already differs.
    pad = next(p for p in range(c) if _official_pair_len(p) % c == 0)
    block, official, rem = _official_pair(pad)
    assert rem == 0
    assert torch.allclose(block[:1], official[:1], atol=1e-6)
    assert not torch.allclose(block[1:2], official[1:2], atol=1e-4)


def _official_pair_len(pad: int) -> int:
    engine = StreamingEngine.from_preset("tiny", device="cpu")
    for i, f in enumerate(_frames(10)):
        engine.push_frame(f, 0.5 * i)
    engine.flush()
    question = "How many chairs?" + " " * pad
    return engine.state.tokens + len(engine.tokenizer.encode(question, add_special_tokens=False)) + len(engine.layout.suffix)
