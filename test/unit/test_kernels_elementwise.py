"""Elementwise chains (kernels/elementwise): the reference ops equal the runtime's formulas bit for bit.

Each test writes the formula out again, as TTTAttention (runtime/ttt_layer.py) and HF's
Qwen3VLTextRMSNorm compute it, and requires exact equality: the reference must not regroup anything,
because the Triton versions are judged against it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

from spatial_ttt_ros import kernels as K

BF16, FP32 = torch.bfloat16, torch.float32
DTYPE_PAIRS = [(BF16, BF16), (FP32, BF16), (BF16, FP32), (FP32, FP32)]  # (input, weight)
OFFSET = math.log(math.expm1(0.01))  # inv_softplus(base_lr = 0.01)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def hf_rms_norm(x, weight, eps):
    norm = Qwen3VLTextRMSNorm(weight.shape[0], eps=eps).to(weight.dtype)
    norm.weight.data.copy_(weight)
    with torch.no_grad():
        return norm(x)


def rope_tables(n, hd, dtype=BF16):
    inv_freq = 1.0 / (5e6 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = (torch.arange(n, dtype=torch.float32)[:, None] + 1000.0) * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("x_dtype,w_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("shape", [(7, 64), (5, 3, 32), (1, 80)])
def test_rms_norm_is_hf_rms_norm(shape, x_dtype, w_dtype):
    x = (3 * torch.randn(shape, generator=gen())).to(x_dtype)
    w = (1 + 0.5 * torch.randn(shape[-1], generator=gen(1))).to(w_dtype)
    got = K.rms_norm(x, w, 1e-6)
    assert got.dtype == torch.promote_types(x_dtype, w_dtype)
    assert_equal(got, hf_rms_norm(x, w, 1e-6))
    # the formula written out
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert_equal(got, w * h.to(x_dtype))


def fast_qkv_by_hand(raw, cos, sin, H, qkv_silu, no_v_silu, bf16_out):
    """TTTAttention.fast_qkv, copied."""
    n = raw.shape[1]
    q, k, v = (t.float().reshape(n, H, raw.shape[2] // H).transpose(0, 1) for t in raw)
    if qkv_silu:
        q, k = F.silu(q), F.silu(k)
        if not no_v_silu:
            v = F.silu(v)
    q = q / (q.norm(dim=-1, keepdim=True) + 1e-5)
    k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
    hd = cos.shape[-1]
    cos, sin = cos.float(), sin.float()
    q = torch.cat((q[..., :hd] * cos + rotate_half(q[..., :hd]) * sin, q[..., hd:]), dim=-1)
    k = torch.cat((k[..., :hd] * cos + rotate_half(k[..., :hd]) * sin, k[..., hd:]), dim=-1)
    if bf16_out:
        return q.bfloat16(), k.bfloat16(), v.bfloat16()
    return q, k, v


@pytest.mark.parametrize("qkv_silu,no_v_silu", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("raw_dtype", [BF16, FP32])
@pytest.mark.parametrize("out_dtype", [BF16, FP32])
@pytest.mark.parametrize("H,D,hd,n", [(4, 64, 16, 9), (3, 40, 40, 1), (2, 24, 8, 5)])
def test_fast_qkv_prep_is_ttt_layer_fast_qkv(H, D, hd, n, out_dtype, raw_dtype, qkv_silu, no_v_silu):
    raw = (2 * torch.randn(3, n, H * D, generator=gen(n))).to(raw_dtype)
    cos, sin = rope_tables(n, hd)
    got = K.fast_qkv_prep(raw, cos, sin, num_heads=H, silu_qk=qkv_silu, silu_v=qkv_silu and not no_v_silu,
                          out_dtype=out_dtype)  # fmt: skip
    want = fast_qkv_by_hand(raw, cos, sin, H, qkv_silu, no_v_silu, out_dtype == BF16)
    for g, w in zip(got, want):
        assert g.shape == (H, n, D) and g.is_contiguous()
        assert_equal(g, w)


def test_fast_qkv_prep_takes_strided_raw_and_fp32_tables():
    H, D, hd, n = 3, 32, 16, 6
    raw = torch.randn(n, 3, H * D, generator=gen()).transpose(0, 1)  # [3, n, C] view, not contiguous
    cos, sin = rope_tables(n, hd, FP32)
    got = K.fast_qkv_prep(raw, cos, sin, num_heads=H, silu_qk=True, silu_v=False, out_dtype=FP32)
    want = fast_qkv_by_hand(raw.contiguous(), cos, sin, H, True, True, False)
    for g, w in zip(got, want):
        assert_equal(g, w)


def ttt_output_by_hand(o, norm_weight, gate_logits, out_dtype):
    """TTTAttention.ttt_output, copied (ttt_norm is a Qwen3VLTextRMSNorm with eps 1e-5)."""
    gate = F.silu(gate_logits.float()).T.unsqueeze(-1)
    o = hf_rms_norm(o, norm_weight, 1e-5) * gate
    return o.transpose(0, 1).reshape(o.shape[1], -1).to(out_dtype)


@pytest.mark.parametrize("o_dtype,w_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("out_dtype", [BF16, FP32])
@pytest.mark.parametrize("H,n,D", [(4, 9, 64), (3, 1, 40)])
def test_ttt_gate_output_is_ttt_layer_ttt_output(H, n, D, out_dtype, o_dtype, w_dtype):
    o = torch.randn(H, n, D, generator=gen()).to(o_dtype)
    w = (1 + 0.5 * torch.randn(D, generator=gen(1))).to(w_dtype)
    logits = (2 * torch.randn(n, H, generator=gen(2))).to(BF16)
    got = K.ttt_gate_output(o, w, logits, 1e-5, out_dtype)
    assert got.shape == (n, H * D) and got.is_contiguous()
    assert_equal(got, ttt_output_by_hand(o, w, logits, out_dtype))


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("H,n", [(4, 9), (3, 1)])
def test_lr_momentum_is_ttt_layer_lr_and_momentum(H, n, dtype):
    lr_logits = (8 * torch.randn(n, 3 * H, generator=gen())).to(dtype)
    lr_logits[0, :2] = torch.tensor([30.0, -30.0])  # either side of softplus' threshold (20)
    mu_logits = (3 * torch.randn(n, H, generator=gen(1))).to(dtype)
    lr, mu = K.lr_momentum(lr_logits, mu_logits, OFFSET)
    # TTTAttention.lr_and_momentum after its linears; momentum_proj ends in nn.Sigmoid (logits' dtype)
    want_lr = F.softplus(lr_logits.float() + OFFSET).view(n, H, 3).transpose(0, 1).contiguous()
    want_mu = torch.nn.Sigmoid()(mu_logits).float().T.unsqueeze(-1).contiguous()
    assert lr.shape == (H, n, 3) and mu.shape == (H, n, 1) and lr.is_contiguous() and mu.is_contiguous()
    assert_equal(lr, want_lr)
    assert_equal(mu, want_mu)
    if dtype == BF16:  # the sigmoid was rounded to bf16 before the cast
        assert_equal(mu, mu.bfloat16().float())
    assert lr[0, 0, 0] == torch.tensor(30.0) + OFFSET  # above the threshold softplus is the identity


def _bad_inputs():
    x, w = torch.zeros(5, 8), torch.ones(8)
    raw, cos = torch.zeros(3, 5, 4 * 16), torch.zeros(5, 8)
    o, nw, gl = torch.zeros(4, 5, 16), torch.ones(16), torch.zeros(5, 4)
    lr_l, mu_l = torch.zeros(5, 12), torch.zeros(5, 4)

    def prep(raw=raw, cos=cos, sin=cos, **kw):
        args = dict(num_heads=4, silu_qk=True, silu_v=True, out_dtype=FP32) | kw
        return lambda: K.fast_qkv_prep(raw, cos, sin, **args)

    return [
        ("weight must be [N]", "(7,)", lambda: K.rms_norm(x, torch.ones(7), 1e-6)),
        ("x must be [..., N]", "()", lambda: K.rms_norm(torch.tensor(1.0), w, 1e-6)),
        ("x must be a floating-point tensor", "int64", lambda: K.rms_norm(x.long(), w, 1e-6)),
        ("eps must be >= 0", "-1", lambda: K.rms_norm(x, w, -1.0)),
        ("raw must be [3, n, C]", "(2, 5, 64)", prep(raw=raw[:2])),
        ("raw must be [3, n, num_heads * D]", "(3, 5, 64)", prep(num_heads=5)),
        ("num_heads must be a positive int", "0", prep(num_heads=0)),
        ("cos must be [n, hd]", "(4, 8)", prep(cos=cos[:4], sin=cos[:4])),
        ("cos must be [n, hd]", "(5, 7)", prep(cos=cos[:, :7], sin=cos[:, :7])),
        ("cos must be [n, hd]", "(5, 18)", prep(cos=torch.zeros(5, 18), sin=torch.zeros(5, 18))),
        ("sin must be [n, hd]", "(5, 6)", prep(sin=cos[:, :6])),
        ("raw must be a floating-point tensor", "int32", prep(raw=raw.int())),
        ("out_dtype must be a floating-point torch.dtype", "torch.int8", prep(out_dtype=torch.int8)),
        ("o must be [H, n, D]", "(5, 16)", lambda: K.ttt_gate_output(o[0], nw, gl, 1e-5, BF16)),
        ("norm_weight must be [D]", "(15,)", lambda: K.ttt_gate_output(o, nw[:15], gl, 1e-5, BF16)),
        ("gate_logits must be [n, H] = (5, 4)", "(4, 5)", lambda: K.ttt_gate_output(o, nw, gl.T, 1e-5, BF16)),
        ("out_dtype must be", "'bf16'", lambda: K.ttt_gate_output(o, nw, gl, 1e-5, "bf16")),
        ("mu_logits must be [n, H]", "(5, 4, 1)", lambda: K.lr_momentum(lr_l, mu_l[..., None], OFFSET)),
        ("lr_logits must be [n, 3H] = (5, 12)", "(5, 11)", lambda: K.lr_momentum(lr_l[:, :11], mu_l, OFFSET)),
        ("offset must be a finite float", "nan", lambda: K.lr_momentum(lr_l, mu_l, float("nan"))),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_validation_names_value_and_shape(case):
    prefix, shape, call = _bad_inputs()[case]
    with pytest.raises(ValueError) as err:
        call()
    assert prefix in str(err.value) and shape in str(err.value), str(err.value)


def test_backends_on_cpu():
    x, w = torch.randn(5, 8), torch.ones(8)
    with pytest.raises(ValueError, match="triton"):
        K.rms_norm(x, w, 1e-6, backend="triton")
    with pytest.raises(ValueError, match="bogus"):
        K.lr_momentum(torch.zeros(2, 6), torch.zeros(2, 2), OFFSET, backend="bogus")
    assert_equal(K.rms_norm(x, w, 1e-6), K.rms_norm(x, w, 1e-6, backend="torch"))


def test_reference_keeps_autograd():
    x = torch.randn(5, 8, requires_grad=True)
    K.rms_norm(x, torch.ones(8), 1e-6).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
