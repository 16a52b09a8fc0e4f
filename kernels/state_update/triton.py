"""Fused momentum + add + row re-normalisation (spec 3.3, 3.5); same signature as naive.update_weights.

Without Muon one pass per matrix reads dW, M, W (or W_main) and r and writes M, W (and W_main): the
reference spends about eight elementwise passes on the same work. With Muon the momentum mix runs
first (as in the reference), the three matrices go through Newton-Schulz as one batch when their
shapes agree, and the same kernel then adds the bf16 result and renormalises.
"""

# Triton kernel arguments are pointers and scalars that Triton types itself; they take no annotations.
# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import newton_schulz5
from ..triton_common import new_output
from . import naive
from .naive import Weights


@triton.jit
def _update_rows_kernel(
    U, MOM, MOM_OUT, BETA, BASE, MAIN_OUT, W_OUT, NORMS,
    n_rows, R, C, eps,
    HAS_MOM: tl.constexpr, PRENORM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # BLOCK_R whole rows of the [H*R, C] matrices; head of row i is i // R.
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    mask_r = rows < n_rows
    mask = mask_r[:, None] & (cols[None, :] < C)
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_MOM:
        beta = tl.load(BETA + rows // R, mask=mask_r, other=0.0).to(tl.float32)
        u += beta[:, None] * tl.load(MOM + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(MOM_OUT + offs, u.to(MOM_OUT.dtype.element_ty), mask=mask)
    x = tl.load(BASE + offs, mask=mask, other=0.0).to(tl.float32) + u
    if PRENORM:
        tl.store(MAIN_OUT + offs, x.to(MAIN_OUT.dtype.element_ty), mask=mask)
    norm = tl.sqrt(tl.sum(x * x, axis=1))
    r = tl.load(NORMS + rows, mask=mask_r, other=0.0).to(tl.float32)
    w = x / (norm + eps)[:, None] * r[:, None]
    tl.store(W_OUT + offs, w.to(W_OUT.dtype.element_ty), mask=mask)


def _update_rows(
    u: torch.Tensor,  # [H, R, C] update (state dtype, or bf16 from Newton-Schulz)
    mom: torch.Tensor | None,  # [H, R, C] momentum buffer, mixed in as u + beta * mom when given
    beta: torch.Tensor | None,  # [H] fp32
    base: torch.Tensor,  # [H, R, C] W (post-norm) or W_main (pre-norm)
    norms: torch.Tensor,  # [H, R, 1]
    prenorm: bool,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # (w, w_main, momentum)
    H, R, C = base.shape
    dev, dt = base.device, base.dtype
    w = new_output((H, R, C), dt, dev)
    w_main = new_output((H, R, C), dt, dev) if prenorm else None
    mom_out = new_output((H, R, C), mom.dtype, dev) if mom is not None else None
    block_c = triton.next_power_of_2(C)
    block_r = max(1, min(64, 4096 // block_c))
    u, base, norms = u.contiguous(), base.contiguous(), norms.contiguous()
    _update_rows_kernel[(triton.cdiv(H * R, block_r),)](
        u,
        mom.contiguous() if mom is not None else u,
        mom_out if mom is not None else w,
        beta if beta is not None else norms,
        base,
        w_main if prenorm else w,
        w,
        norms,
        H * R,
        R,
        C,
        eps,
        HAS_MOM=mom is not None,
        PRENORM=prenorm,
        BLOCK_R=block_r,
        BLOCK_C=block_c,
        num_warps=4,
    )
    return w, w_main, mom_out


def update_weights(
    w: Weights,  # weights in use (normalised), state dtype
    w_main: Weights | None,  # pre-norm accumulator; None for post-norm
    momentum: Weights | None,  # momentum buffers; None when momentum is off
    norms: Weights,  # row norms r_X: [H, Dh, 1], [H, D, 1], [H, Dh, 1]
    dw: Weights,  # update directions of fw_grad, state dtype
    beta: torch.Tensor | None,  # [H, 1, 1] chunk-mean momentum coefficient (None without momentum)
    *,
    use_muon: bool,
    backend: str = "auto",
) -> tuple[Weights, Weights | None, Weights | None]:  # new (w, w_main, momentum)
    """Steps 2-4 of spec 3.5a with one fused kernel per matrix (see the module docstring)."""
    if not (w[0].is_cuda and w[0].dtype in (torch.float32, torch.bfloat16)):
        return naive.update_weights(w, w_main, momentum, norms, dw, beta, use_muon=use_muon, backend=backend)
    beta_h = beta.reshape(-1).to(torch.float32).contiguous() if beta is not None else None
    mix = momentum
    if use_muon:
        if momentum is not None:
            dw = tuple(d + beta * m for d, m in zip(dw, momentum))  # as the reference, bit for bit
            momentum, mix = dw, None
        if len({tuple(d.shape) for d in dw}) == 1:  # D == Dh: one batched Newton-Schulz for all three
            dw = tuple(newton_schulz5(torch.stack(dw), backend=backend).unbind(0))
        else:
            dw = tuple(newton_schulz5(d, backend=backend) for d in dw)
    bases = w_main if w_main is not None else w
    out = [
        _update_rows(u, m, beta_h, x, r, w_main is not None)
        for u, m, x, r in zip(dw, mix if mix is not None else (None,) * 3, bases, norms)
    ]
    new_w = tuple(o[0] for o in out)
    new_main = tuple(o[1] for o in out) if w_main is not None else None
    if mix is not None:
        momentum = tuple(o[2] for o in out)
    return new_w, new_main, momentum
