"""Triton fast-weight apply and update directions (spec 3.1-3.2); same signatures as naive.py.

Precision (README "Triton backend"), decided by the arguments alone: the GEMM inputs are bf16 when
the token inputs (x, or k and v) are 16-bit floats or the state itself is bf16; accumulation, the
gating maths and the outputs are fp32 (the outputs come back in the state dtype). The bf16 GEMM
inputs of an fp32 state are ``bf16_weights`` when the caller has them (FastWeightState.w_low, written
by the Triton update step in the same pass), else casts made here. Otherwise the all-fp32 mode runs
as the ``fp32_dot`` argument says: "cublas" (default) the reference itself (cuBLAS fp32, faster than
Triton's exact fp32 dot), "ieee" or "tf32x3" these kernels with such products. Float64 states use
the reference. Nothing is remembered between calls.
"""

# Triton kernel arguments are pointers and scalars that Triton types itself; they take no annotations.
# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..triton_common import (
    DEFAULT_FP32_DOT,
    bmm,
    config_dicts,
    dot,
    dot_precision,
    fp32_via_cublas,
    launch,
    new_output,
)
from . import naive

_LOW = (torch.bfloat16, torch.float16)


@triton.jit
def _hidden_kernel(
    X, V, W0, W1, W2, LR, P0, P1, P2,
    L, D, DH,
    GRAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # One [BLOCK_L tokens, BLOCK_N hidden units] tile of one head: a = X W0^T, b = X W2^T (and, for
    # the update, g = V W1), all reduced over D in one loop so X, V are read once per tile.
    # apply (GRAD False):  P1 = silu(a) * b
    # update (GRAD True):  P0 = eta0 * g * b * silu'(a),  P1 = eta1 * silu(a) * b,  P2 = eta2 * g * silu(a)
    pid_l = tl.program_id(0)
    pid_n = tl.program_id(1)
    h = tl.program_id(2).to(tl.int64)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_l = offs_l < L
    mask_n = offs_n < DH

    x_ptrs = X + h * L * D + offs_l[:, None] * D + offs_k[None, :]  # [BL, BK]
    w0_ptrs = W0 + h * DH * D + offs_n[None, :] * D + offs_k[:, None]  # [BK, BN] tile of W0^T
    w2_ptrs = W2 + h * DH * D + offs_n[None, :] * D + offs_k[:, None]
    v_ptrs = V + h * L * D + offs_l[:, None] * D + offs_k[None, :]
    w1_ptrs = W1 + h * D * DH + offs_k[:, None] * DH + offs_n[None, :]  # [BK, BN] tile of W1 [D, Dh]
    acc_a = tl.zeros([BLOCK_L, BLOCK_N], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK_L, BLOCK_N], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK_L, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        mask_k = offs_k < D - k0
        mask_tok = mask_l[:, None] & mask_k[None, :]
        mask_w = mask_k[:, None] & mask_n[None, :]
        x = tl.load(x_ptrs, mask=mask_tok, other=0.0)
        acc_a = dot(x, tl.load(w0_ptrs, mask=mask_w, other=0.0), acc_a, PREC)
        acc_b = dot(x, tl.load(w2_ptrs, mask=mask_w, other=0.0), acc_b, PREC)
        if GRAD:
            v = tl.load(v_ptrs, mask=mask_tok, other=0.0)
            acc_g = dot(v, tl.load(w1_ptrs, mask=mask_w, other=0.0), acc_g, PREC)
        x_ptrs += BLOCK_K
        w0_ptrs += BLOCK_K
        w2_ptrs += BLOCK_K
        v_ptrs += BLOCK_K
        w1_ptrs += BLOCK_K * DH

    sig = tl.sigmoid(acc_a)
    silu_a = acc_a * sig
    out_offs = h * L * DH + offs_l[:, None] * DH + offs_n[None, :]
    mask_out = mask_l[:, None] & mask_n[None, :]
    if GRAD:
        lr_ptrs = LR + h * L * 3 + offs_l * 3
        eta0 = tl.load(lr_ptrs, mask=mask_l, other=0.0)[:, None]
        eta1 = tl.load(lr_ptrs + 1, mask=mask_l, other=0.0)[:, None]
        eta2 = tl.load(lr_ptrs + 2, mask=mask_l, other=0.0)[:, None]
        dsilu_a = sig * (1.0 + acc_a * (1.0 - sig))
        p0 = acc_g * acc_b * dsilu_a * eta0
        p1 = silu_a * acc_b * eta1
        p2 = acc_g * silu_a * eta2
        tl.store(P0 + out_offs, p0.to(P0.dtype.element_ty), mask=mask_out)
        tl.store(P1 + out_offs, p1.to(P1.dtype.element_ty), mask=mask_out)
        tl.store(P2 + out_offs, p2.to(P2.dtype.element_ty), mask=mask_out)
    else:
        tl.store(P1 + out_offs, (silu_a * acc_b).to(P1.dtype.element_ty), mask=mask_out)


# (BLOCK_L, BLOCK_N, BLOCK_K, num_warps, num_stages) per (precision, GRAD); first = preferred on an
# H100, later ones fall back on less shared memory. The benchmark can swap these to compare tilings.
HIDDEN_CONFIGS = {
    ("bf16", False): ((128, 128, 64, 8, 3), (64, 128, 64, 4, 3), (64, 64, 64, 4, 2)),
    ("bf16", True): ((64, 128, 64, 8, 3), (64, 128, 64, 8, 2), (64, 64, 32, 4, 2)),
    ("fp32", False): ((64, 64, 32, 4, 2), (32, 64, 32, 4, 1)),
    ("fp32", True): ((64, 64, 32, 4, 2), (32, 32, 32, 4, 1)),
}


def compute_dtype(w0: torch.Tensor, *tokens: torch.Tensor) -> torch.dtype:
    """bf16 when the state is bf16 or every token input is a 16-bit float, else fp32."""
    low = w0.dtype == torch.bfloat16 or all(t.dtype in _LOW for t in tokens)
    return torch.bfloat16 if low else torch.float32


def _supported(w0: torch.Tensor) -> bool:
    return w0.is_cuda and w0.dtype in (torch.float32, torch.bfloat16)


def _gemm_weights(ws: tuple[torch.Tensor, ...], dtype: torch.dtype,
                  low: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...]:
    """The GEMM operands of the weights ``ws`` in ``dtype``: themselves, the caller's bf16 copies
    ``low`` (validated by kernels.ops), or casts."""
    if all(w.dtype == dtype for w in ws):
        return tuple(w.contiguous() for w in ws)
    if low is not None and dtype == torch.bfloat16:
        return tuple(t.contiguous() for t in low)
    return tuple(w.to(dtype).contiguous() for w in ws)


def _hidden(
    x: torch.Tensor,  # [H, L, D] compute dtype, contiguous (queries or keys)
    w0: torch.Tensor,  # [H, Dh, D] compute dtype, contiguous
    w2: torch.Tensor,  # [H, Dh, D]
    outs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],  # P0, P1, P2 [H, L, Dh] (apply writes P1 only)
    grad: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,  # (v, w1, lr fp32) for the update
    fp32_dot: str = DEFAULT_FP32_DOT,
) -> None:
    H, L, D = x.shape
    Dh = w0.shape[1]
    v, w1, lr = grad if grad is not None else (x, w0, x)  # unused placeholders for apply
    prec = "fp32" if x.dtype == torch.float32 else "bf16"
    configs = config_dicts(HIDDEN_CONFIGS[(prec, grad is not None)], ("BLOCK_L", "BLOCK_N", "BLOCK_K"))
    launch(
        _hidden_kernel,
        lambda meta: (triton.cdiv(L, meta["BLOCK_L"]), triton.cdiv(Dh, meta["BLOCK_N"]), H),
        (x, v, w0, w1, w2, lr, *outs, L, D, Dh),
        dict(GRAD=grad is not None, PREC=dot_precision(x.dtype, fp32_dot)),
        configs,
        ("hidden", dot_precision(x.dtype, fp32_dot), grad is not None),
    )


def fw_apply(
    w0: torch.Tensor,  # [H, Dh, D] gate
    w1: torch.Tensor,  # [H, D, Dh] output
    w2: torch.Tensor,  # [H, Dh, D] value
    x: torch.Tensor,  # [H, L, D]; bf16/fp16 selects bf16 GEMM inputs
    *,
    bf16_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,  # (w0, w1, w2) in bf16
    fp32_dot: str = DEFAULT_FP32_DOT,
) -> torch.Tensor:  # [H, L, D] in w0.dtype
    """o_t = W1 (silu(W0 x_t) * (W2 x_t)): one fused kernel for the hidden layer, one GEMM for W1."""
    if not _supported(w0):
        return naive.fw_apply(w0, w1, w2, x)
    H, L, D = x.shape
    out = new_output((H, L, D), w0.dtype, w0.device)
    if L == 0:
        return out
    cdt = compute_dtype(w0, x)
    if fp32_via_cublas(cdt, fp32_dot):
        return naive.fw_apply(w0, w1, w2, x)
    xc = x.to(cdt).contiguous()
    w0c, w1c, w2c = _gemm_weights((w0, w1, w2), cdt, bf16_weights)
    hidden = new_output((H, L, w0.shape[1]), cdt, w0.device)  # silu(X W0^T) * (X W2^T)
    _hidden(xc, w0c, w2c, (hidden, hidden, hidden), fp32_dot=fp32_dot)
    return bmm(hidden, w1c.mT, out, fp32_dot=fp32_dot)  # [H, L, Dh] @ [H, Dh, D]


def fw_grad(
    w0: torch.Tensor,  # [H, Dh, D]
    w1: torch.Tensor,  # [H, D, Dh]
    w2: torch.Tensor,  # [H, Dh, D]
    k: torch.Tensor,  # [H, L, D]
    v: torch.Tensor,  # [H, L, D]
    lr: torch.Tensor,  # [H, L, 3]: step of W0, W1, W2 per token
    *,
    bf16_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,  # (w0, w1, w2) in bf16
    fp32_dot: str = DEFAULT_FP32_DOT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # dW0 [H, Dh, D], dW1 [H, D, Dh], dW2 [H, Dh, D]
    """The three lr-weighted outer-product sums: one fused kernel for a, b, g and the gated, lr-scaled
    hidden quantities, then two GEMMs over the tokens (dW0 and dW2 share K and run as one launch)."""
    if not _supported(w0):
        return naive.fw_grad(w0, w1, w2, k, v, lr)
    H, Dh, D = w0.shape
    L = k.shape[1]
    dev, dt = w0.device, w0.dtype
    if L == 0:
        return torch.zeros_like(w0), torch.zeros_like(w1), torch.zeros_like(w2)
    cdt = compute_dtype(w0, k, v)
    if fp32_via_cublas(cdt, fp32_dot):
        return naive.fw_grad(w0, w1, w2, k, v, lr)
    kc, vc = (t.to(cdt).contiguous() for t in (k, v))
    w0c, w1c, w2c = _gemm_weights((w0, w1, w2), cdt, bf16_weights)
    lr32 = lr.to(torch.float32).contiguous()
    # P0 and P2 live in one buffer so that dW0 and dW2 = [P0; P2]^T K are one batched GEMM.
    p02 = new_output((2, H, L, Dh), cdt, dev)
    p1 = new_output((H, L, Dh), cdt, dev)
    _hidden(kc, w0c, w2c, (p02[0], p1, p02[1]), grad=(vc, w1c, lr32), fp32_dot=fp32_dot)
    dw02 = new_output((2, H, Dh, D), dt, dev)
    bmm(p02.view(2 * H, L, Dh).mT, kc, dw02.view(2 * H, Dh, D), fp32_dot=fp32_dot)  # z = j*H + h uses K[h]
    dw1 = bmm(vc.mT, p1, new_output((H, D, Dh), dt, dev), fp32_dot=fp32_dot)  # [H, D, L] @ [H, L, Dh]
    return dw02[0], dw1, dw02[1]
