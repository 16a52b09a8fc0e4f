"""Triton SP conv (kernels/sp_conv/triton.py) vs the PyTorch reference (F.conv3d) on the same GPU.

Every output buffer starts as NaN ($SPATIAL_TTT_POISON_OUTPUTS, triton_common.POISON_ENV), so an element no program writes fails.
Both sides compute out = sum of 27 products w * x with fp32 accumulation (the reference's CUDA depthwise
conv3d accumulates bf16 in fp32 as well; TF32 is switched off below so an fp32 cuDNN path cannot use it)
and round once to the output dtype; the weights are the same (rounded to the inputs' dtype). Only the
order of the 27-term sum and FMA contraction differ. With S = sum |w| |x| (float64, per element):

* fp32 output: |got - want| <= 2^-19 S. Each of the 27 additions rounds with relative error 2^-24 of
  a partial sum bounded by S, in either order: at most 27 * 2^-24 S per side, under 2^-19 S = 32 * 2^-24 S
  for the difference (a loose bound; the actual errors are a few ulps).
* bf16 output: the fp32 sums differ by at most that much, and rounding each to bf16 adds at most one
  bf16 ulp of max(|got|, |want|) to the difference (a value near a rounding boundary may flip):
  |got - want| <= ulp_bf16(max(|got|, |want|)) + 2^-19 S. Flips are rare: at most 1% (+ 2) of the
  elements may differ at all beyond 2^-19 S.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from spatial_ttt_ros import kernels as K  # noqa: E402
from spatial_ttt_ros.kernels import triton_common  # noqa: E402

DEV = torch.device("cuda")
BF16, FP32 = torch.bfloat16, torch.float32
SUM_TOL = 2.0**-19


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every kernel output starts as NaN, so an unwritten element fails the comparison; no TF32."""
    monkeypatch.setenv(triton_common.POISON_ENV, "1")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def gen(seed=0):
    return torch.Generator(device=DEV).manual_seed(seed)


def make_inputs(k, hw, C, dtype, w_dtype, seed=0, strided=False):
    n = hw[0] * hw[1]
    g = gen(seed)
    if strided:  # transposed token/channel strides, every other frame group, every other channel
        prev = torch.randn(3, C, n, generator=g, device=DEV).to(dtype).transpose(1, 2)
        cur = torch.randn(3, n, 2 * k, C, generator=g, device=DEV).to(dtype).transpose(1, 2)[:, ::2]
        nxt = torch.randn(3, n, 2 * C, generator=g, device=DEV).to(dtype)[..., ::2]
        weight = torch.randn(3, 27, C, generator=g, device=DEV).to(w_dtype).transpose(1, 2) / 3
    else:
        prev = torch.randn(3, n, C, generator=g, device=DEV).to(dtype)
        cur = torch.randn(3, k, n, C, generator=g, device=DEV).to(dtype)
        nxt = torch.randn(3, n, C, generator=g, device=DEV).to(dtype)
        weight = (torch.randn(3, C, 27, generator=g, device=DEV) / 3).to(w_dtype)
    return prev, cur, nxt, weight


def assert_matches(got, want, scale, name):
    """The tolerances of the module docstring; ``scale`` = S = sum |w| |x| per element (float64)."""
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.is_contiguous(), f"{name}: not contiguous"
    assert torch.isfinite(got).all(), f"{name}: non-finite values (an unwritten NaN-poisoned element?)"
    g, w = got.double(), want.double()
    err = (g - w).abs()
    bound = SUM_TOL * scale
    if got.dtype == BF16:
        flips = (err > bound).sum().item()
        assert flips <= 0.01 * got.numel() + 2, (
            f"{name}: {flips} of {got.numel()} elements differ beyond fp32 noise"
        )
        _, e = torch.frexp(torch.maximum(g.abs(), w.abs()))  # |x| = m 2^e, 0.5 <= m < 1
        bound = bound + torch.exp2((e - 8).double())  # bf16 has 8 significant bits
    worst = (err - bound).argmax()
    assert (err <= bound).all(), (
        f"{name}: {(err > bound).sum().item()} elements out of tolerance; worst got "
        f"{g.flatten()[worst].item():.9g} want {w.flatten()[worst].item():.9g}"
    )


def abs_sum(prev, cur, nxt, weight, hw):
    """S = sum |w| |x| per output element, in float64 through the reference."""
    w = weight.to(cur.dtype).double().abs()  # the weights as the kernels use them
    return K.sp_conv(prev.double().abs(), cur.double().abs(), nxt.double().abs(), w, hw, backend="torch")


def check(k, hw, C, dtype, w_dtype, seed=0, strided=False):
    prev, cur, nxt, weight = make_inputs(k, hw, C, dtype, w_dtype, seed, strided)
    got = K.sp_conv(prev, cur, nxt, weight, hw, backend="triton")
    want = K.sp_conv(prev, cur, nxt, weight, hw, backend="torch")
    assert_matches(got, want, abs_sum(prev, cur, nxt, weight, hw), f"sp_conv k={k} hw={hw} C={C} {dtype}")
    return got


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("C", [64, 100, 2048])
@pytest.mark.parametrize("hw", [(11, 15), (3, 5), (1, 1), (5, 3)])
@pytest.mark.parametrize("k", [1, 2, 33])
def test_sp_conv_matches_reference(k, hw, C, dtype):
    check(k, hw, C, dtype, dtype, seed=k * 7 + C)


@pytest.mark.parametrize("dtype,w_dtype", [(BF16, FP32), (FP32, BF16), (BF16, BF16)])
@pytest.mark.parametrize("k", [1, 3])
def test_sp_conv_strided_inputs(k, dtype, w_dtype):
    prev, cur, nxt, weight = make_inputs(k, (11, 15), 100, dtype, w_dtype, strided=True)
    assert not any(t.is_contiguous() for t in (prev, cur, nxt, weight))
    check(k, (11, 15), 100, dtype, w_dtype, strided=True)


def test_sp_conv_auto_is_triton_and_dirac_is_exact():
    prev, cur, nxt, _ = make_inputs(2, (11, 15), 64, BF16, BF16)
    weight = torch.zeros(3, 64, 27, device=DEV, dtype=BF16)
    weight[..., 13] = 1.0  # centre tap: one exact product, no rounding
    got = K.sp_conv(prev, cur, nxt, weight, (11, 15))
    torch.testing.assert_close(got, cur.contiguous(), rtol=0, atol=0)
    # a time-only tap (dt = -1, centre pixel) reads prev for the first group and cur after it
    weight.zero_()
    weight[..., 4] = 1.0
    got = K.sp_conv(prev, cur, nxt, weight, (11, 15), backend="triton")
    torch.testing.assert_close(got, torch.cat((prev[:, None], cur[:, :1]), dim=1), rtol=0, atol=0)
    weight.zero_()
    weight[..., 22] = 1.0  # dt = +1: cur[1] then nxt
    got = K.sp_conv(prev, cur, nxt, weight, (11, 15), backend="triton")
    torch.testing.assert_close(got, torch.cat((cur[:, 1:], nxt[:, None]), dim=1), rtol=0, atol=0)


def test_sp_conv_falls_back_for_fp16_and_autograd():
    prev, cur, nxt, weight = make_inputs(2, (3, 5), 64, torch.float16, torch.float16)
    torch.testing.assert_close(
        K.sp_conv(prev, cur, nxt, weight, (3, 5), backend="triton"),
        K.sp_conv(prev, cur, nxt, weight, (3, 5), backend="torch"),
        rtol=0, atol=0,
    )  # fmt: skip
    prev, cur, nxt, weight = make_inputs(2, (3, 5), 64, FP32, FP32)
    weight.requires_grad_(True)
    out = K.sp_conv(prev, cur, nxt, weight, (3, 5), backend="triton")
    assert out.requires_grad
    out.sum().backward()
    assert weight.grad is not None
