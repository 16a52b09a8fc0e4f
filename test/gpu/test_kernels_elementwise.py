"""Triton elementwise chains (kernels/elementwise/triton.py) vs the PyTorch reference on the same GPU.

Every output buffer starts as NaN ($SPATIAL_TTT_POISON_OUTPUTS, triton_common.POISON_ENV), so an element no program writes fails.
The kernels repeat the reference's steps in the same order with the same rounding points (libdevice
exp/log1p/rsqrt as PyTorch's CUDA kernels call them, IEEE division and square root, no FMA
contraction, bf16 intermediates rounded where the reference materialises them). The only freedom left
is the order of the sums of squares (RMSNorm variance, L2 norms of q and k). Tolerances per tensor:

* No bf16 rounding anywhere in the chain (fp32 inputs, or bf16 inputs that are only widened, and an
  fp32 output): |got - want| <= 1e-6 |want| (about 8 fp32 ulps). A sum of <= 2048 squares in another
  order moves the variance or norm by a few ulps, and the result by as much. lr involves no sum and
  normally agrees exactly; 1e-6 still catches a wrong formula (softplus as log(1 + exp) is off by 1e-5
  relative and more).
* k bf16 roundings in the chain (``steps=k``; counted per test): each may flip for the few elements whose
  fp32 value sits within a few fp32 ulps of a bf16 rounding boundary, by one bf16 step (2^-7 relative
  at most); later multiplications carry a flip on. Hence |got - want| <= (k 2^-7 + 1e-6) max(|got|,
  |want|), and exactly 1 bf16 ulp where the output's rounding is the only one (fast_qkv_prep's bf16
  output, a bf16 ttt_gate_output from fp32 o). Flips are rare: at most 1% of the elements (+ 2) may
  differ by more than fp32 noise (1e-6 relative), while skipping one of the reference's intermediate bf16 roundings (RMSNorm's
  ``h.to(input_dtype)``, a bf16 norm result before the gate, the bf16 sigmoid of mu) changes 25-100%.
  Counts: rms_norm: 1 for bf16 x (h) + 1 for a bf16 result; ttt_gate_output: 1 for bf16 o + 1 when o
  and the weight are bf16 (the norm's result) + 1 for a bf16 output; mu: 1 for bf16 logits.
* q and k after RoPE also get an absolute slack of 2.4e-7 = 4 * 2^-24: where ``q*cos + rot(q)*sin``
  nearly cancels, an ulp-level change of the terms (|q|, |cos|, |sin| <= 1 after L2 normalisation) is
  a large relative change of the result, in fp32 as after rounding to bf16.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from spatial_ttt_ros import kernels as K  # noqa: E402
from spatial_ttt_ros.kernels import triton_common  # noqa: E402

DEV = torch.device("cuda")
BF16, FP32 = torch.bfloat16, torch.float32
LENGTHS = [1, 63, 100, 2648]
PREP_LENGTHS = [*LENGTHS, 5790]
OFFSET = math.log(math.expm1(0.01))  # inv_softplus(base_lr = 0.01)
ROPE_ATOL = 4 * 2.0**-24


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every kernel output starts as NaN, so an unwritten element fails the comparison."""
    monkeypatch.setenv(triton_common.POISON_ENV, "1")


def gen(seed=0):
    return torch.Generator(device=DEV).manual_seed(seed)


def assert_matches(got, want, name, steps=0, atol=0.0):
    """The tolerances of the module docstring; ``steps`` = number of bf16 roundings in the chain."""
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values (an unwritten NaN-poisoned element?)"
    g, w = got.double(), want.double()
    err = (g - w).abs()
    biggest = torch.maximum(g.abs(), w.abs())
    if steps == 0:
        bound = 1e-6 * w.abs()
    elif steps == 1 and got.dtype == BF16:  # only the output is rounded: 1 ulp
        _, e = torch.frexp(biggest)  # |x| = m 2^e, 0.5 <= m < 1
        bound = torch.exp2((e - 8).double())  # bf16 has 8 significant bits
    else:
        bound = (steps * 2.0**-7 + 1e-6) * biggest
    bound = bound + atol
    if steps:  # flips are rare (a couple allowed in tiny tensors)
        flips = (err > 1e-6 * biggest + atol).sum().item()
        assert flips <= 0.01 * got.numel() + 2, f"{name}: {flips} of {got.numel()} elements differ by > 1e-6"
    worst = (err - bound).argmax()
    assert (err <= bound).all(), (
        f"{name}: {(err > bound).sum().item()} elements out of tolerance; worst got "
        f"{g.flatten()[worst].item():.9g} want {w.flatten()[worst].item():.9g}"
    )


def rope_tables(n, hd, dtype=BF16):
    inv_freq = 1.0 / (5e6 ** (torch.arange(0, hd, 2, device=DEV, dtype=torch.float32) / hd))
    freqs = (torch.arange(n, device=DEV, dtype=torch.float32)[:, None] + 1000.0) * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


# ---------------------------------------------------------------- rms_norm

RMS_SHAPES = {
    "hidden": lambda n: (n, 2048),
    "qk_heads": lambda n: (n, 3, 128),
    "ragged": lambda n: (n, 5, 80),
}
DTYPE_PAIRS = [(BF16, BF16), (FP32, BF16), (BF16, FP32), (FP32, FP32)]  # (input, weight)


@pytest.mark.parametrize("x_dtype,w_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("shape", list(RMS_SHAPES))
@pytest.mark.parametrize("n", LENGTHS)
def test_rms_norm_matches_reference(n, shape, x_dtype, w_dtype):
    dims = RMS_SHAPES[shape](n)
    x = (3 * torch.randn(dims, generator=gen(n), device=DEV)).to(x_dtype)
    w = (1 + 0.5 * torch.randn(dims[-1], generator=gen(1), device=DEV)).to(w_dtype)
    got = K.rms_norm(x, w, 1e-6, backend="triton")
    assert got.is_contiguous()
    steps = (x_dtype == BF16) + (got.dtype == BF16)
    assert_matches(got, K.rms_norm(x, w, 1e-6, backend="torch"), "rms_norm", steps)


def test_rms_norm_strided_inputs():
    n = 100
    merged = torch.randn(n, 6, 128, generator=gen(), device=DEV)[:, ::2]  # leading dims not mergeable
    columns = torch.randn(128, n, generator=gen(1), device=DEV).T  # last dim not contiguous
    w = torch.randn(128, generator=gen(2), device=DEV).bfloat16()
    for x in (merged, columns, merged.bfloat16()):
        got = K.rms_norm(x, w, 1e-6, backend="triton")
        steps = (x.dtype == BF16) + (got.dtype == BF16)
        assert_matches(got, K.rms_norm(x, w, 1e-6, backend="torch"), "rms_norm", steps)


# ---------------------------------------------------------------- fast_qkv_prep

PREP_SHAPES = [(4, 512, 128), (3, 80, 48)]  # (H, D, hd): released model (partial RoPE); odd H, ragged D


def check_prep(raw, cos, sin, H, silu_qk, silu_v, out_dtype):
    kw = dict(num_heads=H, silu_qk=silu_qk, silu_v=silu_v, out_dtype=out_dtype)
    got = K.fast_qkv_prep(raw, cos, sin, backend="triton", **kw)
    want = K.fast_qkv_prep(raw, cos, sin, backend="torch", **kw)
    for name, g, w in zip("qkv", got, want):
        assert g.is_contiguous()
        assert_matches(g, w, name, steps=int(out_dtype == BF16), atol=ROPE_ATOL if name != "v" else 0.0)


@pytest.mark.parametrize("out_dtype", [FP32, BF16])
@pytest.mark.parametrize("raw_dtype", [BF16, FP32])
@pytest.mark.parametrize("H,D,hd", PREP_SHAPES)
@pytest.mark.parametrize("n", PREP_LENGTHS)
def test_fast_qkv_prep_matches_reference(n, H, D, hd, raw_dtype, out_dtype):
    raw = (2 * torch.randn(3, n, H * D, generator=gen(n), device=DEV)).to(raw_dtype)
    cos, sin = rope_tables(n, hd)
    check_prep(raw, cos, sin, H, True, True, out_dtype)


@pytest.mark.parametrize("out_dtype", [FP32, BF16])
@pytest.mark.parametrize("silu_qk,silu_v", [(True, False), (False, False), (False, True)])
def test_fast_qkv_prep_flags(silu_qk, silu_v, out_dtype):
    H, D, hd, n = 3, 80, 48, 100
    raw = (2 * torch.randn(3, n, H * D, generator=gen(), device=DEV)).bfloat16()
    check_prep(raw, *rope_tables(n, hd), H, silu_qk, silu_v, out_dtype)


def test_fast_qkv_prep_strided_raw_fp32_tables_and_no_rope():
    H, D, hd, n = 4, 512, 128, 63
    raw = torch.randn(n, 3, H * D, generator=gen(), device=DEV).transpose(0, 1)  # [3, n, C] view
    check_prep(raw, *rope_tables(n, hd, FP32), H, True, True, FP32)
    empty = torch.zeros(n, 0, device=DEV)  # hd = 0: no rotation at all
    check_prep(raw, empty, empty, H, True, True, BF16)


# ---------------------------------------------------------------- ttt_gate_output

GATE_DTYPES = [(FP32, BF16, BF16), (FP32, BF16, FP32), (BF16, BF16, BF16), (BF16, FP32, FP32)]  # (o, w, out)


@pytest.mark.parametrize("o_dtype,w_dtype,out_dtype", GATE_DTYPES)
@pytest.mark.parametrize("H,D", [(4, 512), (3, 80)])
@pytest.mark.parametrize("n", LENGTHS)
def test_ttt_gate_output_matches_reference(n, H, D, o_dtype, w_dtype, out_dtype):
    o = (0.3 * torch.randn(H, n, D, generator=gen(n), device=DEV)).to(o_dtype)
    w = (1 + 0.5 * torch.randn(D, generator=gen(1), device=DEV)).to(w_dtype)
    logits = (2 * torch.randn(n, H, generator=gen(2), device=DEV)).bfloat16()
    got = K.ttt_gate_output(o, w, logits, 1e-5, out_dtype, backend="triton")
    assert got.is_contiguous()
    steps = (o_dtype == BF16) + (o_dtype == w_dtype == BF16) + (out_dtype == BF16)
    want = K.ttt_gate_output(o, w, logits, 1e-5, out_dtype, backend="torch")
    assert_matches(got, want, "ttt_gate_output", steps)


def test_ttt_gate_output_strided_inputs():
    H, n, D = 3, 100, 80
    o = torch.randn(n, H, D, generator=gen(), device=DEV).transpose(0, 1)  # [H, n, D] view
    logits = torch.randn(H, n, generator=gen(1), device=DEV).bfloat16().T  # [n, H] view
    w = torch.randn(D, generator=gen(2), device=DEV).bfloat16()
    got = K.ttt_gate_output(o, w, logits, 1e-5, BF16, backend="triton")
    assert_matches(got, K.ttt_gate_output(o, w, logits, 1e-5, BF16, backend="torch"), "ttt_gate_output", 1)


# ---------------------------------------------------------------- lr_momentum


@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("H", [3, 4])
@pytest.mark.parametrize("n", LENGTHS)
def test_lr_momentum_matches_reference(n, H, dtype):
    lr_logits = (8 * torch.randn(n, 3 * H, generator=gen(n), device=DEV)).to(dtype)
    lr_logits[0, :2] = torch.tensor([30.0, -30.0])  # either side of softplus' threshold
    mu_logits = (3 * torch.randn(n, H, generator=gen(1), device=DEV)).to(dtype)
    lr, mu = K.lr_momentum(lr_logits, mu_logits, OFFSET, backend="triton")
    want_lr, want_mu = K.lr_momentum(lr_logits, mu_logits, OFFSET, backend="torch")
    assert lr.is_contiguous() and mu.is_contiguous()
    assert_matches(lr, want_lr, "lr")
    assert_matches(mu, want_mu, "mu", steps=int(dtype == BF16))
    if dtype == BF16:  # the sigmoid is rounded to bf16 before the cast, as in the reference
        assert torch.equal(mu, mu.bfloat16().float())


# ---------------------------------------------------------------- dispatch and edge cases


def test_auto_picks_triton_and_autograd_falls_back():
    x = torch.randn(63, 3, 128, generator=gen(), device=DEV).bfloat16()
    w = torch.randn(128, generator=gen(1), device=DEV).bfloat16()
    assert torch.equal(K.rms_norm(x, w, 1e-6), K.rms_norm(x, w, 1e-6, backend="triton"))
    raw = torch.randn(3, 63, 4 * 512, generator=gen(2), device=DEV).bfloat16()
    cos, sin = rope_tables(63, 128)
    kw = dict(num_heads=4, silu_qk=True, silu_v=True, out_dtype=BF16)
    for a, b in zip(
        K.fast_qkv_prep(raw, cos, sin, **kw), K.fast_qkv_prep(raw, cos, sin, backend="triton", **kw)
    ):
        assert torch.equal(a, b)
    # tensors that autograd tracks run the reference, which keeps the graph
    wg = w.float().requires_grad_()
    out = K.rms_norm(x, wg, 1e-6, backend="triton")
    assert out.requires_grad
    out.sum().backward()
    assert wg.grad is not None


def test_no_tokens():
    H, D = 4, 512
    q, k, v = K.fast_qkv_prep(torch.zeros(3, 0, H * D, device=DEV), torch.zeros(0, 128, device=DEV),
                              torch.zeros(0, 128, device=DEV), num_heads=H, silu_qk=True, silu_v=True,
                              out_dtype=BF16, backend="triton")  # fmt: skip
    assert q.shape == k.shape == v.shape == (H, 0, D)
    out = K.ttt_gate_output(torch.zeros(H, 0, D, device=DEV), torch.ones(D, device=DEV),
                            torch.zeros(0, H, device=DEV), 1e-5, BF16, backend="triton")  # fmt: skip
    assert out.shape == (0, H * D)
    lr, mu = K.lr_momentum(torch.zeros(0, 3 * H, device=DEV), torch.zeros(0, H, device=DEV), OFFSET,
                           backend="triton")  # fmt: skip
    assert lr.shape == (H, 0, 3) and mu.shape == (H, 0, 1)
    assert K.rms_norm(torch.zeros(0, 3, 128, device=DEV), torch.ones(128, device=DEV), 1e-6,
                      backend="triton").shape == (0, 3, 128)  # fmt: skip
