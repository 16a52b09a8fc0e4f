"""Gradients of the training forward: one chunk step passes a float64 gradcheck (with and without
Muon), per-chunk checkpointing recomputes and changes no gradient, the memory path trains (a loss
on the last chunk reaches earlier chunks' keys/values and the initial fast weights), and a
trainable vision tower gets gradients too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.kernels import fw_update, init_fast_weight_state
from spatial_ttt_ros.runtime import one_pass
from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.one_pass import OnePass, attention_masks, chunk_step, fast_weight_scan
from spatial_ttt_ros.train.forward import sample_loss
from spatial_ttt_ros.train.samples import layout_sample

pytestmark = pytest.mark.unit
H, L, D, DH = 2, 3, 4, 5


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(1)
    return StreamingEngine.from_preset("tiny", device="cpu")


def _chunk(seed: int, n: int = L, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(H, n, D, generator=g, dtype=dtype) for _ in range(3))
    lr = torch.rand(H, n, 3, generator=g, dtype=dtype) * 0.5 + 0.1
    mu = torch.rand(H, n, 1, generator=g, dtype=dtype)
    return [q, k, v, lr, mu]


def _weights(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(H, DH, D, generator=g, dtype=dtype) / 2, torch.randn(H, D, DH, generator=g, dtype=dtype) / 2,
            torch.randn(H, DH, D, generator=g, dtype=dtype) / 2]


def test_gradcheck_one_chunk_step_float64():
    """Apply + Update(S, B) (momentum, pre-norm accumulator) w.r.t. q/k/v, rates, momentum, norms and state."""
    cfg = load_config("tiny", use_momentum=True, prenorm=True, use_muon=False)
    w = _weights(1)
    state = init_fast_weight_state(*w, use_momentum=True, prenorm=True, dtype=torch.float64)
    # a second state whose parts differ (w != w_main, momentum != 0), as after a first update
    state = fw_update(state, *_chunk(2)[1:], use_momentum=True, use_muon=False, prenorm=True)
    inputs = [t.detach().clone().requires_grad_() for t in
              (*_chunk(3), *state.norms, *state.w, *state.w_main, *state.momentum)]
    assert torch.autograd.gradcheck(lambda *t: chunk_step(True, cfg, "torch", *t), inputs, fast_mode=True)


def test_gradcheck_one_muon_update_float64():
    """The Muon update (Newton-Schulz run in float64 here) w.r.t. the chunk and the state."""
    w = _weights(4)
    _, k, v, lr, mu = _chunk(5)
    init = init_fast_weight_state(*w, use_momentum=True, prenorm=False, dtype=torch.float64)

    def update(k, v, lr, mu, w0, w1, w2, m0, m1, m2):
        state = type(init)(w=(w0, w1, w2), w_main=None, momentum=(m0, m1, m2), norms=init.norms)
        new = fw_update(state, k, v, lr, mu, use_momentum=True, use_muon=True, prenorm=False, ns_dtype=torch.float64)
        return (*new.w, *new.momentum)

    moms = [0.1 * t for t in _weights(6)]
    inputs = [t.detach().clone().requires_grad_() for t in (k, v, lr, mu, *init.w, *moms)]
    assert torch.autograd.gradcheck(update, inputs, fast_mode=True)


def test_a_loss_on_the_last_chunk_trains_earlier_keys_values_and_initial_weights():
    """The memory path: outputs of the last block depend on every earlier block's keys, values,
    rates and momentum only through the fast-weight updates, and on w0/w1/w2 through S_0."""
    for flags in (dict(use_momentum=True, prenorm=True, use_muon=True, muon_precision="fp32"),
                  dict(use_momentum=False, prenorm=False, use_muon=False)):
        cfg = load_config("tiny", chunk_size=4, **flags)
        w = [p.float().requires_grad_() for p in _weights(7)]
        q, k, v, lr, mu = (t.float().requires_grad_() for t in _chunk(8, n=14))  # blocks 0-3, the last holds 2
        fast = init_fast_weight_state(*w, use_momentum=cfg.use_momentum, prenorm=cfg.prenorm)
        out = fast_weight_scan(fast, q, k, v, lr, mu, cfg)
        out[:, 12:].square().sum().backward()
        for name, t in (("k", k), ("v", v), ("lr", lr)):
            for block in range(3):  # every updating block reaches the last one
                assert t.grad[:, 4 * block:4 * block + 4].abs().amax() > 0, (name, block, flags)
        if cfg.use_momentum:
            assert mu.grad[:, :12].abs().amax() > 0
        assert q.grad[:, :12].abs().amax() == 0 and q.grad[:, 12:].abs().amax() > 0  # q only applies
        assert k.grad[:, 12:].abs().amax() == 0  # the last block never updates
        for p in w:
            assert p.grad.abs().amax() > 0


def test_the_memory_path_trains_through_a_whole_ttt_layer(engine):
    """Tokens of the first chunk, far outside the sliding window, get a gradient from a loss on the
    last chunk through the fast weights alone: none when no update happens (chunk > length)."""
    attn = engine.model.model.language_model.layers[0].self_attn
    n = 30

    def grad_at_first_chunk(chunk: int) -> torch.Tensor:
        cfg = engine.config.replace(chunk_size=chunk, window_size=3)
        x = torch.randn(1, n, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
        pos = torch.arange(n).expand(3, 1, n)
        cos, sin = engine.model.model.language_model.rotary_emb(x, pos)
        valid = torch.ones(1, n, dtype=torch.bool)
        ctx = OnePass(config=cfg, video=~valid, valid=valid, grids=[[]], cos=cos, sin=sin,
                      swa_mask=attention_masks(valid, 3)[1], window=3)
        out, _ = attn(x, one_pass=ctx)
        out[0, -4:].square().sum().backward()
        return x.grad[0, :8].abs().amax()

    assert grad_at_first_chunk(8) > 0
    assert grad_at_first_chunk(1000) == 0


def _samples(engine, count: int = 2) -> list:
    out = []
    for i in range(count):
        rng = np.random.default_rng(i)
        frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4 + 2 * i)]
        out.append(layout_sample(engine.config, engine.tokenizer, engine.layout, frames, [0.5 * j for j in range(len(frames))],
                                 "How many chairs are there?", str(3 + i)))
    return out


def _grads(model, config, samples, checkpoint_chunks: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss, count = sample_loss(model, config, samples, checkpoint_chunks=checkpoint_chunks)
    (loss / count).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_per_chunk_checkpointing_gives_the_same_gradients(engine, monkeypatch):
    model = engine.model
    config = engine.config.replace(use_muon=True, prenorm=True, chunk_size=20)
    samples = _samples(engine)
    calls = []
    real_apply = one_pass.fw_apply
    monkeypatch.setattr(one_pass, "fw_apply", lambda *a, **k: calls.append(1) or real_apply(*a, **k))
    try:
        model.train()
        model.model.language_model.requires_grad_(True)
        plain = _grads(model, config, samples, checkpoint_chunks=False)
        n_plain = len(calls)
        ckpt = _grads(model, config, samples, checkpoint_chunks=True)
        n_ckpt = len(calls) - n_plain
    finally:
        model.eval()
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    assert n_ckpt == 2 * n_plain  # every block's step ran again in backward
    assert plain.keys() == ckpt.keys()
    ttt = [n for n in plain if n.endswith((".w0", ".w1", ".w2", "lr_proj.weight", "conv_k.weight"))]
    assert len(ttt) == 3 * 5 and all(plain[n].abs().amax() > 0 for n in ttt)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_trainable_vision_tower_gets_gradients(engine):
    model = engine.model
    try:
        model.train()
        model.requires_grad_(True)
        grads = _grads(model, engine.config, _samples(engine, 1), checkpoint_chunks=True)
    finally:
        model.eval()
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    vision = [n for n in grads if n.startswith("model.visual.")]
    assert vision and any(grads[n].abs().amax() > 0 for n in vision)
