"""Public fast-weight ops: validate the inputs, then dispatch to the chosen backend.

Each op has a table backend -> implementation; the "triton" entries import triton only when called.
"""

from __future__ import annotations

import torch

from .backend import lazy_impl, pick_impl
from .checks import check_tokens, check_weights
from .newton_schulz import naive as ns_naive
from .swiglu_fw import naive as swiglu_naive

_FW_APPLY = {"torch": swiglu_naive.fw_apply, "triton": lazy_impl("swiglu_fw.triton", "fw_apply")}
_FW_GRAD = {"torch": swiglu_naive.fw_grad, "triton": lazy_impl("swiglu_fw.triton", "fw_grad")}
_NEWTON_SCHULZ5 = {
    "torch": ns_naive.newton_schulz5,
    "triton": lazy_impl("newton_schulz.triton", "newton_schulz5"),
}


def fw_apply(
    w0: torch.Tensor,  # [H, Dh, D] gate
    w1: torch.Tensor,  # [H, D, Dh] output
    w2: torch.Tensor,  # [H, Dh, D] value
    x: torch.Tensor,  # [H, L, D], cast to w0.dtype
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [H, L, D] in w0.dtype
    """o = W1 (silu(W0 x) * (W2 x)) per head and token.

    "torch" computes in the dtype of the weights. "triton" uses bf16 GEMM inputs when x is bf16/fp16
    (or the weights are bf16) and exact fp32 otherwise; it accumulates in fp32 and returns w0.dtype.
    """
    H, _, D = check_weights(w0, w1, w2)
    check_tokens("x", x, "[H, L, D]", H, D, device=w0.device)
    return pick_impl("fw_apply", _FW_APPLY, w0.device, backend)(w0, w1, w2, x)


def fw_grad(
    w0: torch.Tensor,  # [H, Dh, D]
    w1: torch.Tensor,  # [H, D, Dh]
    w2: torch.Tensor,  # [H, Dh, D]
    k: torch.Tensor,  # [H, L, D]
    v: torch.Tensor,  # [H, L, D]
    lr: torch.Tensor,  # [H, L, 3] fp32; lr[..., j] is the step of W_j (0 gate, 1 output, 2 value)
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # dW0 [H, Dh, D], dW1 [H, D, Dh], dW2 [H, Dh, D]
    """Update directions of spec 3.2: negative gradients of the lr-weighted loss -sum_t <v_t, f_S(k_t)>.

    Precision as in :func:`fw_apply`, chosen by k and v: "triton" runs bf16 GEMM inputs when both are
    bf16/fp16 (or the weights are bf16), exact fp32 otherwise.
    """
    H, _, D = check_weights(w0, w1, w2)
    L = check_tokens("k", k, "[H, L, D]", H, D, device=w0.device)
    check_tokens("v", v, "[H, L, D]", H, D, L=L, device=w0.device)
    check_tokens("lr", lr, "[H, L, 3]", H, 3, L=L, device=w0.device)
    return pick_impl("fw_grad", _FW_GRAD, w0.device, backend)(w0, w1, w2, k, v, lr)


def newton_schulz5(
    g: torch.Tensor,  # [..., M, N]
    *,
    steps: int = 5,
    eps: float = 1e-7,
    backend: str = "auto",
) -> torch.Tensor:  # [..., M, N] bf16
    """Muon's 5-step Newton-Schulz orthogonalisation in bf16 (tall matrices are handled transposed)."""
    if g.ndim < 2:
        raise ValueError(f"g must be [..., M, N] with at least 2 dims, got {tuple(g.shape)}")
    if not g.is_floating_point():
        raise ValueError(f"g must be a floating-point tensor, got {g.dtype}")
    if not 1 <= steps <= len(ns_naive.NS5_COEFFS):
        raise ValueError(f"steps must be in 1..{len(ns_naive.NS5_COEFFS)}, got {steps}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return pick_impl("newton_schulz5", _NEWTON_SCHULZ5, g.device, backend)(g, steps=steps, eps=eps)
