"""Fused momentum + add + row re-normalisation (spec 3.3, 3.5); same signature as naive.update_weights.

Without Muon one pass (a single launch for the three matrices) reads dW, M, W (or W_main) and r and
writes M, W (and W_main): the reference spends about eight elementwise passes per matrix. With Muon the momentum mix runs
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


@triton.jit(do_not_specialize=["R0", "C0", "R1", "C1", "R2", "C2"])
def _update_rows_kernel(
    U0, MOM0, MOM_OUT0, BASE0, MAIN_OUT0, W_OUT0, W_LOW0, NORMS0, R0, C0,
    U1, MOM1, MOM_OUT1, BASE1, MAIN_OUT1, W_OUT1, W_LOW1, NORMS1, R1, C1,
    U2, MOM2, MOM_OUT2, BASE2, MAIN_OUT2, W_OUT2, W_LOW2, NORMS2, R2, C2,
    BETA, H, eps,
    HAS_MOM: tl.constexpr, PRENORM: tl.constexpr, EMIT_LOW: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # Program (i, j): BLOCK_R whole rows of matrix j (0: W0, 1: W1, 2: W2), viewed as [H*R_j, C_j];
    # the head of row r is r // R_j. One launch covers the three matrices. EMIT_LOW also writes the
    # new weights in bf16 for the next chunk's bf16 GEMMs (the same rounding as a cast would do).
    j = tl.program_id(1)
    if j == 0:
        U = U0
        MOM = MOM0
        MOM_OUT = MOM_OUT0
        BASE = BASE0
        MAIN_OUT = MAIN_OUT0
        W_OUT = W_OUT0
        W_LOW = W_LOW0
        NORMS = NORMS0
        R = R0
        C = C0
    elif j == 1:
        U = U1
        MOM = MOM1
        MOM_OUT = MOM_OUT1
        BASE = BASE1
        MAIN_OUT = MAIN_OUT1
        W_OUT = W_OUT1
        W_LOW = W_LOW1
        NORMS = NORMS1
        R = R1
        C = C1
    else:
        U = U2
        MOM = MOM2
        MOM_OUT = MOM_OUT2
        BASE = BASE2
        MAIN_OUT = MAIN_OUT2
        W_OUT = W_OUT2
        W_LOW = W_LOW2
        NORMS = NORMS2
        R = R2
        C = C2
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    mask_r = rows < H * R
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
    if EMIT_LOW:
        tl.store(W_LOW + offs, w.to(tl.bfloat16), mask=mask)


def _update_rows(
    u: Weights,  # [H, R, C] updates (state dtype, or bf16 from Newton-Schulz)
    mom: Weights | None,  # [H, R, C] momentum buffers, mixed in as u + beta * mom when given
    beta: torch.Tensor | None,  # [H] fp32
    base: Weights,  # [H, R, C] W (post-norm) or W_main (pre-norm)
    norms: Weights,  # [H, R, 1]
    prenorm: bool,
    emit_low: bool,
    eps: float = 1e-5,
) -> tuple[Weights, Weights | None, Weights | None, Weights | None]:  # (w, w_main, momentum, w bf16)
    H = base[0].shape[0]
    dev, dt = base[0].device, base[0].dtype
    w = tuple(new_output(x.shape, dt, dev) for x in base)
    w_low = tuple(new_output(x.shape, torch.bfloat16, dev) for x in base) if emit_low else None
    w_main = tuple(new_output(x.shape, dt, dev) for x in base) if prenorm else None
    mom_out = tuple(new_output(m.shape, m.dtype, dev) for m in mom) if mom is not None else None
    per_matrix = []
    for j in range(3):
        R, C = base[j].shape[1:]
        per_matrix += [
            u[j].contiguous(),
            mom[j].contiguous() if mom is not None else u[j],  # placeholders where a flag is off
            mom_out[j] if mom is not None else w[j],
            base[j].contiguous(),
            w_main[j] if prenorm else w[j],
            w[j],
            w_low[j] if emit_low else w[j],
            norms[j].contiguous(),
            R,
            C,
        ]
    block_c = triton.next_power_of_2(max(x.shape[2] for x in base))
    block_r = max(1, min(64, 4096 // block_c))
    max_rows = max(H * x.shape[1] for x in base)
    _update_rows_kernel[(triton.cdiv(max_rows, block_r), 3)](
        *per_matrix,
        beta if beta is not None else norms[0],
        H,
        eps,
        HAS_MOM=mom is not None,
        PRENORM=prenorm,
        EMIT_LOW=emit_low,
        BLOCK_R=block_r,
        BLOCK_C=block_c,
        num_warps=4,
    )
    return w, w_main, mom_out, w_low


def update_weights(
    w: Weights,  # weights in use (normalised), state dtype
    w_main: Weights | None,  # pre-norm accumulator; None for post-norm
    momentum: Weights | None,  # momentum buffers; None when momentum is off
    norms: Weights,  # row norms r_X: [H, Dh, 1], [H, D, 1], [H, Dh, 1]
    dw: Weights,  # update directions of fw_grad, state dtype
    beta: torch.Tensor | None,  # [H, 1, 1] chunk-mean momentum coefficient (None without momentum)
    *,
    use_muon: bool,
    ns_dtype: torch.dtype = torch.bfloat16,
    backend: str = "auto",
    bf16_copies: bool = False,
) -> tuple[Weights, Weights | None, Weights | None, Weights | None]:  # new (w, w_main, momentum, w_low)
    """Steps 2-4 of spec 3.5a with one fused kernel per matrix (see the module docstring). Newton-Schulz
    in another dtype than bf16 runs the reference step. ``bf16_copies`` (the caller's next GEMMs run
    in bf16 on an fp32 state): the kernel also writes the new weights rounded to bf16 (w_low)."""
    if not (w[0].is_cuda and w[0].dtype in (torch.float32, torch.bfloat16)) or (use_muon and ns_dtype != torch.bfloat16):
        return naive.update_weights(w, w_main, momentum, norms, dw, beta, use_muon=use_muon, ns_dtype=ns_dtype,
                                    backend=backend)
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
    # bf16 copies of the new weights for the next chunk, when its GEMMs run in bf16 on an fp32 state
    emit_low = bf16_copies and w[0].dtype == torch.float32
    new_w, new_main, mixed, low = _update_rows(dw, mix, beta_h, bases, norms, w_main is not None, emit_low)
    return new_w, new_main, mixed if mix is not None else momentum, low
