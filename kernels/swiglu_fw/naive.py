"""Plain PyTorch reference of the SwiGLU fast-weight network (spec 3.1-3.2).

Inputs are assumed validated (see ``kernels.ops``). Everything is computed in the dtype of the
weights: the fp32 state at inference, float64 in the tests. The keyword arguments of the Triton
versions (``bf16_weights``, ``fp32_dot``) are accepted and have no effect here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fw_apply(
    w0: torch.Tensor,  # [H, Dh, D] gate
    w1: torch.Tensor,  # [H, D, Dh] output
    w2: torch.Tensor,  # [H, Dh, D] value
    x: torch.Tensor,  # [H, L, D], any float dtype
    *,
    bf16_weights: tuple[torch.Tensor, ...] | None = None,  # noqa: ARG001 - Triton's GEMM inputs only
    fp32_dot: str = "cublas",  # noqa: ARG001
) -> torch.Tensor:  # [H, L, D] in w0.dtype
    """o_t = W1 (silu(W0 x_t) * (W2 x_t)) for every head and token."""
    x = x.to(w0.dtype)
    a = x @ w0.mT  # [H, L, Dh]
    b = x @ w2.mT  # [H, L, Dh]
    return (F.silu(a) * b) @ w1.mT


def fw_grad(
    w0: torch.Tensor,  # [H, Dh, D]
    w1: torch.Tensor,  # [H, D, Dh]
    w2: torch.Tensor,  # [H, Dh, D]
    k: torch.Tensor,  # [H, L, D]
    v: torch.Tensor,  # [H, L, D]
    lr: torch.Tensor,  # [H, L, 3]: step of W0, W1, W2 per token
    *,
    bf16_weights: tuple[torch.Tensor, ...] | None = None,  # noqa: ARG001 - Triton's GEMM inputs only
    fp32_dot: str = "cublas",  # noqa: ARG001
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # dW0 [H, Dh, D], dW1 [H, D, Dh], dW2 [H, Dh, D]
    """Negative gradients of L = -sum_t <v_t, f_S(k_t)>, each matrix weighted per token by its own lr.

    Plain sums over the L tokens (no averaging); the step multiplies the key/hidden side of each
    outer product.
    """
    dtype = w0.dtype
    k, v, lr = k.to(dtype), v.to(dtype), lr.to(dtype)
    eta0, eta1, eta2 = lr[..., 0:1], lr[..., 1:2], lr[..., 2:3]  # [H, L, 1] each

    a = k @ w0.mT  # [H, L, Dh]
    b = k @ w2.mT  # [H, L, Dh]
    g = v @ w1  # [H, L, Dh] = W1^T v_t
    sig = torch.sigmoid(a)
    silu_a = a * sig
    dsilu_a = sig * (1.0 + a * (1.0 - sig))
    h = silu_a * b  # [H, L, Dh]

    dw1 = v.mT @ (h * eta1)  # [H, D, Dh]
    dw0 = (g * b * dsilu_a).mT @ (k * eta0)  # [H, Dh, D]
    dw2 = (g * silu_a).mT @ (k * eta2)  # [H, Dh, D]
    return dw0, dw1, dw2
