"""SP conv (kernels/sp_conv): the reference equals the nn.Conv3d modules of a real (tiny) TTT layer bit
for bit, the tap formula the Triton kernel implements equals the reference, and bad inputs raise ValueError."""

from __future__ import annotations

import copy

import pytest
import torch

from spatial_ttt_ros import kernels as K
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.ttt_layer import TTTAttention

BF16, FP32 = torch.bfloat16, torch.float32
HWS = [(3, 5), (1, 1), (4, 4), (2, 7)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def attn() -> TTTAttention:
    """A TTT layer's attention module of the tiny preset, built as the runtime builds it, with random taps."""
    engine = StreamingEngine.from_preset("tiny", device="cpu")
    layer = next(m for m in engine.model.modules() if isinstance(m, TTTAttention))
    layer = copy.deepcopy(layer)
    engine.close()
    with torch.no_grad():
        for i, conv in enumerate((layer.conv_q, layer.conv_k, layer.conv_v)):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen(10 + i)) / 3)
    return layer


def taps_of(attn: TTTAttention) -> torch.Tensor:
    C = attn.conv_q.weight.shape[0]
    return torch.stack([m.weight.detach().reshape(C, 27) for m in (attn.conv_q, attn.conv_k, attn.conv_v)])


def make_inputs(k, hw, C, dtype, seed=0, strided=False):
    n = hw[0] * hw[1]
    g = gen(seed)
    if strided:  # token and channel strides that are not the contiguous ones, cur's groups interleaved
        prev = torch.randn(3, C, n, generator=g).to(dtype).transpose(1, 2)
        cur = torch.randn(3, n, 2 * k, C, generator=g).to(dtype).transpose(1, 2)[:, ::2]
        nxt = torch.randn(3, n, 2 * C, generator=g).to(dtype)[..., ::2]
    else:
        prev = torch.randn(3, n, C, generator=g).to(dtype)
        cur = torch.randn(3, k, n, C, generator=g).to(dtype)
        nxt = torch.randn(3, n, C, generator=g).to(dtype)
    return prev, cur, nxt


def by_modules(module, prev, cur, nxt, hw):
    """The layer's own nn.Conv3d modules (replicate padding) over the volume prev, cur..., nxt; the
    middle k output frames are the ones whose time neighbours are all real."""
    h, w = hw
    k = cur.shape[1]
    frames = torch.cat((prev[:, None], cur, nxt[:, None]), dim=1)  # [3, k+2, h*w, C]
    out = []
    for i, conv in enumerate((module.conv_q, module.conv_k, module.conv_v)):
        vol = frames[i].reshape(k + 2, h, w, -1).permute(3, 0, 1, 2)[None]  # [1, C, k+2, h, w]
        out.append(conv(vol)[0, :, 1:-1].permute(1, 2, 3, 0).reshape(k, h * w, -1))
    return torch.stack(out)


def by_taps(prev, cur, nxt, weight, hw):
    """The sum the Triton kernel computes, tap by tap: clamped spatial neighbours, prev/cur/nxt by frame."""
    h, w = hw
    k = cur.shape[1]
    X = torch.cat((prev[:, None], cur, nxt[:, None]), dim=1).unflatten(2, (h, w))  # [3, k+2, h, w, C]
    out = torch.zeros(3, k, h, w, cur.shape[-1], dtype=torch.float64)
    ys, xs = torch.arange(h), torch.arange(w)
    for dt in range(3):
        for dy in range(3):
            for dx in range(3):
                yy = (ys + dy - 1).clamp(0, h - 1)
                xx = (xs + dx - 1).clamp(0, w - 1)
                nb = X[:, dt : dt + k][:, :, yy][:, :, :, xx].double()  # frame t + dt - 1
                out += weight[:, None, None, None, :, dt * 9 + dy * 3 + dx].double() * nb
    return out.flatten(2, 3)


@pytest.mark.parametrize("dtype", [FP32, BF16])
@pytest.mark.parametrize("hw", HWS)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_sp_conv_is_the_layer_conv(attn, k, hw, dtype):
    module = copy.deepcopy(attn).to(dtype)
    C = module.conv_q.weight.shape[0]
    prev, cur, nxt = make_inputs(k, hw, C, dtype, seed=k)
    with torch.no_grad():
        want = by_modules(module, prev, cur, nxt, hw)
        got = K.sp_conv(prev, cur, nxt, taps_of(module), hw)
        got_torch = K.sp_conv(prev, cur, nxt, taps_of(module), hw, backend="torch")
    for g in (got, got_torch):
        assert g.dtype == dtype and g.shape == (3, k, hw[0] * hw[1], C) and g.is_contiguous()
        torch.testing.assert_close(g, want, rtol=0, atol=0)


def test_sp_conv_strided_inputs_and_weight_dtype(attn):
    k, hw = 3, (3, 5)
    C = attn.conv_q.weight.shape[0]
    prev, cur, nxt = make_inputs(k, hw, C, BF16, seed=1, strided=True)
    assert not (prev.is_contiguous() or cur.is_contiguous() or nxt.is_contiguous())
    module = copy.deepcopy(attn).to(BF16)
    with torch.no_grad():
        want = by_modules(module, prev, cur, nxt, hw)
        # fp32 weights are rounded to the inputs' dtype, as the bf16 module holds them
        got = K.sp_conv(prev, cur, nxt, taps_of(attn), hw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # a non-contiguous weight view
    w_view = taps_of(module).transpose(0, 1).contiguous().transpose(0, 1)
    assert not w_view.is_contiguous()
    torch.testing.assert_close(K.sp_conv(prev, cur, nxt, w_view, hw), want, rtol=0, atol=0)


@pytest.mark.parametrize("hw", HWS)
@pytest.mark.parametrize("k", [1, 4])
def test_tap_formula_is_reference(k, hw):
    """The formula of README section 7 (and of the Triton kernel) equals the reference in float64."""
    C = 6
    prev, cur, nxt = make_inputs(k, hw, C, torch.float64, seed=3)
    weight = torch.randn(3, C, 27, generator=gen(4), dtype=torch.float64)
    got = K.sp_conv(prev, cur, nxt, weight, hw, backend="torch")
    torch.testing.assert_close(got, by_taps(prev, cur, nxt, weight, hw), rtol=1e-12, atol=1e-12)


def test_sp_conv_dirac_is_identity():
    k, hw, C = 2, (3, 4), 5
    prev, cur, nxt = make_inputs(k, hw, C, FP32)
    weight = torch.zeros(3, C, 27)
    weight[..., 13] = 1.0  # centre tap
    torch.testing.assert_close(K.sp_conv(prev, cur, nxt, weight, hw), cur.contiguous(), rtol=0, atol=0)


def test_sp_conv_validation():
    k, hw, C = 2, (3, 5), 8
    prev, cur, nxt = make_inputs(k, hw, C, FP32)
    weight = torch.randn(3, C, 27)
    cases = [
        ((prev, cur[0], nxt, weight, hw), r"cur must be \[3, k, h\*w, C\]"),
        ((prev, cur[:, :0], nxt, weight, hw), r"k >= 1 and C >= 1, got \(3, 0, 15, 8\)"),
        ((prev[..., :0], cur[..., :0], nxt[..., :0], weight[:, :0], hw), r"C >= 1, got \(3, 2, 15, 0\)"),
        ((prev, cur, nxt, weight, (5, 5)), r"hw must be \(h, w\).*= 15, got \(5, 5\)"),
        ((prev, cur, nxt, weight, (15,)), r"hw must be"),
        ((prev, cur, nxt, weight, (3.0, 5)), r"hw must be"),
        (
            (prev[:, :-1], cur, nxt, weight, hw),
            r"prev must be \[3, h\*w, C\] = \(3, 15, 8\), got \(3, 14, 8\)",
        ),
        ((prev, cur, nxt[:2], weight, hw), r"nxt must be \[3, h\*w, C\] = \(3, 15, 8\), got \(2, 15, 8\)"),
        (
            (prev, cur, nxt, weight[:, :, :9], hw),
            r"weight must be \[3, C, 27\] = \(3, 8, 27\), got \(3, 8, 9\)",
        ),
        ((prev, cur.long(), nxt, weight, hw), r"cur must be a floating-point tensor"),
        ((prev.double(), cur, nxt, weight, hw), r"prev must have the dtype of cur"),
        ((prev, cur, nxt, weight.long(), hw), r"weight must be a floating-point tensor"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            K.sp_conv(*args)
    with pytest.raises(ValueError, match="bogus"):
        K.sp_conv(prev, cur, nxt, weight, hw, backend="bogus")
    with pytest.raises(ValueError, match="triton"):
        K.sp_conv(prev, cur, nxt, weight, hw, backend="triton")  # CPU tensors
