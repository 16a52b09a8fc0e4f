"""Public fast-weight ops: validate the inputs, then dispatch to the chosen backend.

Each op has a table backend -> implementation; the "triton" entries import triton only when called.
"""

from __future__ import annotations

import math

import torch

from .backend import lazy_impl, pick_impl
from .checks import _shape, check_bf16_weights, check_fp32_dot, check_tokens, check_weights
from .elementwise import naive as ew_naive
from .newton_schulz import naive as ns_naive
from .sp_conv import naive as sp_naive
from .swiglu_fw import naive as swiglu_naive

_FW_APPLY = {"torch": swiglu_naive.fw_apply, "triton": lazy_impl("swiglu_fw.triton", "fw_apply")}
_FW_GRAD = {"torch": swiglu_naive.fw_grad, "triton": lazy_impl("swiglu_fw.triton", "fw_grad")}
_NEWTON_SCHULZ5 = {
    "torch": ns_naive.newton_schulz5,
    "triton": lazy_impl("newton_schulz.triton", "newton_schulz5"),
}
_RMS_NORM = {"torch": ew_naive.rms_norm, "triton": lazy_impl("elementwise.triton", "rms_norm")}
_FAST_QKV_PREP = {"torch": ew_naive.fast_qkv_prep, "triton": lazy_impl("elementwise.triton", "fast_qkv_prep")}
_TTT_GATE_OUTPUT = {
    "torch": ew_naive.ttt_gate_output,
    "triton": lazy_impl("elementwise.triton", "ttt_gate_output"),
}
_LR_MOMENTUM = {"torch": ew_naive.lr_momentum, "triton": lazy_impl("elementwise.triton", "lr_momentum")}
_SP_CONV = {"torch": sp_naive.sp_conv, "triton": lazy_impl("sp_conv.triton", "sp_conv")}


def fw_apply(
    w0: torch.Tensor,  # [H, Dh, D] gate
    w1: torch.Tensor,  # [H, D, Dh] output
    w2: torch.Tensor,  # [H, Dh, D] value
    x: torch.Tensor,  # [H, L, D], cast to w0.dtype
    *,
    backend: str = "auto",
    bf16_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    fp32_dot: str = "cublas",
) -> torch.Tensor:  # [H, L, D] in w0.dtype
    """o = W1 (silu(W0 x) * (W2 x)) per head and token.

    "torch" computes in the dtype of the weights. "triton" uses bf16 GEMM inputs when x is bf16/fp16
    (or the weights are bf16) and fp32 products otherwise (``fp32_dot``: "cublas" = the reference's
    matmuls, "ieee" or "tf32x3" = Triton kernels); it accumulates in fp32 and returns w0.dtype.
    ``bf16_weights``: the weights rounded to bf16 (FastWeightState.w_low), used as the bf16 GEMM
    inputs instead of casting; the caller vouches that they are exactly that rounding.
    """
    H, _, D = check_weights(w0, w1, w2)
    check_tokens("x", x, "[H, L, D]", H, D, device=w0.device)
    check_bf16_weights(bf16_weights, (w0, w1, w2))
    check_fp32_dot(fp32_dot)
    impl = pick_impl("fw_apply", _FW_APPLY, w0.device, backend)
    return impl(w0, w1, w2, x, bf16_weights=bf16_weights, fp32_dot=fp32_dot)


def fw_grad(
    w0: torch.Tensor,  # [H, Dh, D]
    w1: torch.Tensor,  # [H, D, Dh]
    w2: torch.Tensor,  # [H, Dh, D]
    k: torch.Tensor,  # [H, L, D]
    v: torch.Tensor,  # [H, L, D]
    lr: torch.Tensor,  # [H, L, 3] fp32; lr[..., j] is the step of W_j (0 gate, 1 output, 2 value)
    *,
    backend: str = "auto",
    bf16_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    fp32_dot: str = "cublas",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # dW0 [H, Dh, D], dW1 [H, D, Dh], dW2 [H, Dh, D]
    """Update directions of spec 3.2: negative gradients of the lr-weighted loss -sum_t <v_t, f_S(k_t)>.

    Precision as in :func:`fw_apply`, chosen by k and v: "triton" runs bf16 GEMM inputs when both are
    bf16/fp16 (or the weights are bf16), fp32 products as ``fp32_dot`` says otherwise.
    """
    H, _, D = check_weights(w0, w1, w2)
    L = check_tokens("k", k, "[H, L, D]", H, D, device=w0.device)
    check_tokens("v", v, "[H, L, D]", H, D, L=L, device=w0.device)
    check_tokens("lr", lr, "[H, L, 3]", H, 3, L=L, device=w0.device)
    check_bf16_weights(bf16_weights, (w0, w1, w2))
    check_fp32_dot(fp32_dot)
    impl = pick_impl("fw_grad", _FW_GRAD, w0.device, backend)
    return impl(w0, w1, w2, k, v, lr, bf16_weights=bf16_weights, fp32_dot=fp32_dot)


def newton_schulz5(
    g: torch.Tensor,  # [..., M, N]
    *,
    steps: int = 5,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
    backend: str = "auto",
) -> torch.Tensor:  # [..., M, N] in dtype
    """Muon's 5-step Newton-Schulz orthogonalisation in ``dtype`` (bf16 as the official code, fp32 on
    request; tall matrices are handled transposed). The GPU kernels serve bf16; other dtypes run the
    reference."""
    if g.ndim < 2:
        raise ValueError(f"g must be [..., M, N] with at least 2 dims, got {tuple(g.shape)}")
    if not g.is_floating_point():
        raise ValueError(f"g must be a floating-point tensor, got {g.dtype}")
    if not 1 <= steps <= len(ns_naive.NS5_COEFFS):
        raise ValueError(f"steps must be in 1..{len(ns_naive.NS5_COEFFS)}, got {steps}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if dtype not in (torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.bfloat16, torch.float32 or torch.float64, got {dtype!r}")
    if dtype != torch.bfloat16:
        return ns_naive.newton_schulz5(g, steps=steps, eps=eps, dtype=dtype)
    return pick_impl("newton_schulz5", _NEWTON_SCHULZ5, g.device, backend)(g, steps=steps, eps=eps)


# ---------------------------------------------------------------- elementwise chains (README section 6)


def _check_float(name: str, t: torch.Tensor, device: torch.device | None = None, ref: str = "") -> None:
    """t is a floating-point tensor, on ``device`` (that of the tensor named ``ref``) when given."""
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on the device of {ref} ({device}), got {t.device}")


def _check_eps(eps: float) -> None:
    if not eps >= 0:  # also rejects NaN
        raise ValueError(f"eps must be >= 0, got {eps}")


def _check_out_dtype(out_dtype: torch.dtype) -> None:
    if not isinstance(out_dtype, torch.dtype) or not out_dtype.is_floating_point:
        raise ValueError(f"out_dtype must be a floating-point torch.dtype, got {out_dtype!r}")


def rms_norm(
    x: torch.Tensor,  # [..., N]
    weight: torch.Tensor,  # [N]
    eps: float,
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [..., N] in torch.promote_types(weight.dtype, x.dtype)
    """HF Qwen3VLTextRMSNorm.forward: ``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)``, the
    normalisation in fp32. "triton" matches it bit for bit up to the order of the sum of squares."""
    if x.ndim < 1:
        raise ValueError(f"x must be [..., N] with at least 1 dim, got {_shape(x)}")
    N = x.shape[-1]
    if _shape(weight) != (N,):
        raise ValueError(f"weight must be [N] = ({N},) (the last dim of x), got {_shape(weight)}")
    _check_float("x", x)
    _check_float("weight", weight, x.device, "x")
    _check_eps(eps)
    return pick_impl("rms_norm", _RMS_NORM, x.device, backend)(x, weight, eps)


def fast_qkv_prep(
    raw: torch.Tensor,  # [3, n, C]: q', k', v' after the conv, C = num_heads * D
    cos: torch.Tensor,  # [n, hd], hd even and <= D: RoPE on the first hd channels of each head
    sin: torch.Tensor,  # [n, hd]
    *,
    num_heads: int,
    silu_qk: bool,
    silu_v: bool,
    out_dtype: torch.dtype,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # q, k, v [H, n, D] contiguous, out_dtype
    """TTTAttention.fast_qkv: head split, optional SiLU, q and k divided by (L2 norm + 1e-5), partial
    RoPE of q and k, in fp32, cast to out_dtype. ``silu_v`` is the caller's ``qkv_silu and not no_v_silu``."""
    if raw.ndim != 3 or raw.shape[0] != 3:
        raise ValueError(f"raw must be [3, n, C] (q', k', v'), got {_shape(raw)}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    _, n, C = raw.shape
    if C % num_heads:
        raise ValueError(f"raw must be [3, n, num_heads * D], but C = {C} is not a multiple of num_heads = "
                         f"{num_heads}: got {_shape(raw)}")  # fmt: skip
    D = C // num_heads
    if cos.ndim != 2 or cos.shape[0] != n or cos.shape[1] % 2 or cos.shape[1] > D:
        raise ValueError(f"cos must be [n, hd] = ({n}, hd) with hd even and <= D = {D}, got {_shape(cos)}")
    if sin.shape != cos.shape:
        raise ValueError(f"sin must be [n, hd] = {_shape(cos)} like cos, got {_shape(sin)}")
    _check_float("raw", raw)
    _check_float("cos", cos, raw.device, "raw")
    _check_float("sin", sin, raw.device, "raw")
    _check_out_dtype(out_dtype)
    impl = pick_impl("fast_qkv_prep", _FAST_QKV_PREP, raw.device, backend)
    return impl(raw, cos, sin, num_heads=num_heads, silu_qk=silu_qk, silu_v=silu_v, out_dtype=out_dtype)


def ttt_gate_output(
    o: torch.Tensor,  # [H, n, D] fast-weight output
    norm_weight: torch.Tensor,  # [D] ttt_norm weight
    gate_logits: torch.Tensor,  # [n, H] ttt_scale_proj output
    eps: float,
    out_dtype: torch.dtype,
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [n, H * D] in out_dtype
    """TTTAttention.ttt_output: ``rms_norm(o, norm_weight, eps) * silu(gate_logits.float()).T[..., None]``,
    heads concatenated per token, cast to out_dtype."""
    if o.ndim != 3:
        raise ValueError(f"o must be [H, n, D], got {_shape(o)}")
    H, n, D = o.shape
    if _shape(norm_weight) != (D,):
        raise ValueError(f"norm_weight must be [D] = ({D},), got {_shape(norm_weight)}")
    if _shape(gate_logits) != (n, H):
        raise ValueError(f"gate_logits must be [n, H] = ({n}, {H}), got {_shape(gate_logits)}")
    _check_float("o", o)
    _check_float("norm_weight", norm_weight, o.device, "o")
    _check_float("gate_logits", gate_logits, o.device, "o")
    _check_eps(eps)
    _check_out_dtype(out_dtype)
    impl = pick_impl("ttt_gate_output", _TTT_GATE_OUTPUT, o.device, backend)
    return impl(o, norm_weight, gate_logits, eps, out_dtype)


def lr_momentum(
    lr_logits: torch.Tensor,  # [n, 3H] lr_proj output; channel 3h + j is the step of W_j in head h
    mu_logits: torch.Tensor,  # [n, H] momentum_proj linear output, before its sigmoid
    offset: float,  # inv_softplus(base_lr)
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:  # lr [H, n, 3], mu [H, n, 1], fp32 contiguous
    """TTTAttention.lr_and_momentum after the linears: lr = softplus(lr_logits.float() + offset) per head,
    mu = sigmoid(mu_logits) (in the logits' dtype) as fp32."""
    if mu_logits.ndim != 2:
        raise ValueError(f"mu_logits must be [n, H], got {_shape(mu_logits)}")
    n, H = mu_logits.shape
    if _shape(lr_logits) != (n, 3 * H):
        raise ValueError(f"lr_logits must be [n, 3H] = ({n}, {3 * H}), got {_shape(lr_logits)}")
    _check_float("mu_logits", mu_logits)
    _check_float("lr_logits", lr_logits, mu_logits.device, "mu_logits")
    if not math.isfinite(offset):
        raise ValueError(f"offset must be a finite float, got {offset}")
    return pick_impl("lr_momentum", _LR_MOMENTUM, mu_logits.device, backend)(lr_logits, mu_logits, offset)


# ---------------------------------------------------------------- SP conv (README section 7)


def sp_conv(
    prev: torch.Tensor,  # [3, h*w, C] q', k', v' of the frame group before cur
    cur: torch.Tensor,  # [3, k, h*w, C], k >= 1 consecutive frame groups
    nxt: torch.Tensor,  # [3, h*w, C] q', k', v' of the frame group after cur
    weight: torch.Tensor,  # [3, C, 27] depthwise taps of conv_q, conv_k, conv_v; tap = dt*9 + di*3 + dj
    hw: tuple[int, int],  # (h, w), h*w tokens row-major
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [3, k, h*w, C] contiguous, cur.dtype
    """The SP conv of a TTT layer (its conv_q/k/v modules): depthwise 3x3x3 cross-correlation over (time, h, w) of q', k', v', with
    prev / nxt as the time neighbours and replicate padding in h and w; no bias. The weights are used in
    cur's dtype; "triton" accumulates in fp32 and rounds once."""
    if cur.ndim != 4 or cur.shape[0] != 3 or cur.shape[1] < 1 or cur.shape[3] < 1:
        raise ValueError(f"cur must be [3, k, h*w, C] with k >= 1 and C >= 1, got {_shape(cur)}")
    _, _, n, C = cur.shape
    if (
        not isinstance(hw, tuple | list)
        or len(hw) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in hw)
        or hw[0] * hw[1] != n
    ):
        raise ValueError(f"hw must be (h, w), positive ints with h*w = cur.shape[2] = {n}, got {hw!r}")
    for name, t in (("prev", prev), ("nxt", nxt)):
        if _shape(t) != (3, n, C):
            raise ValueError(f"{name} must be [3, h*w, C] = (3, {n}, {C}), got {_shape(t)}")
    if _shape(weight) != (3, C, 27):
        raise ValueError(f"weight must be [3, C, 27] = (3, {C}, 27), got {_shape(weight)}")
    _check_float("cur", cur)
    for name, t in (("prev", prev), ("nxt", nxt)):
        _check_float(name, t, cur.device, "cur")
        if t.dtype != cur.dtype:
            raise ValueError(f"{name} must have the dtype of cur ({cur.dtype}), got {t.dtype}")
    _check_float("weight", weight, cur.device, "cur")
    h, w = int(hw[0]), int(hw[1])
    return pick_impl("sp_conv", _SP_CONV, cur.device, backend)(prev, cur, nxt, weight, (h, w))
