"""Triton SP conv: one fused pass for q', k', v' and all k frame groups; same signature as naive.py.

Program (token block, channel block, (i, t)) computes out[i, t, tokens, channels] for BLOCK_P tokens
(row-major over (h, w)) and BLOCK_C channels (contiguous in memory in the usual layout). For each of the
27 taps it loads the neighbour rows through computed row pointers: the frame t + dt - 1 is prev[i] below
0, nxt[i] at k and cur[i, t + dt - 1] otherwise (chosen once per dt, a branch on a program scalar); the
spatial neighbour is (clamp(y + dy, 0, h-1), clamp(x + dx, 0, w-1)), i.e. replicate padding. Products
are accumulated in fp32 and rounded once to the output dtype. The weights are rounded to the inputs'
dtype first, as the reference does (F.conv3d needs one dtype), then widened to fp32.

Differences to the reference are the order of the 27-term sum (and FMA contraction): a few fp32 ulps of
sum |w x|, and now and then a 1-ulp flip of a bf16 output (test/gpu/test_kernels_sp_conv.py states the
tolerances). Other dtypes (fp16, float64), tensors that need autograd and CPU tensors run the reference.
"""

# Triton kernel arguments are pointers and scalars that Triton types itself; they take no annotations.
# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..triton_common import new_output
from . import naive

_DTYPES = (torch.float32, torch.bfloat16)
BLOCK_P = 16  # tokens per program
MAX_BLOCK_C = 128  # channels per program
MAX_GRID_Z = 65535  # CUDA limit of grid axes 1 and 2 (3k programs on axis 2)


@triton.jit
def _frame_taps(acc, src, s_row, s_ch, wt, y, x, h, w, ch, mask, C, DT: tl.constexpr):
    # acc += sum over the 9 spatial taps (dy, dx) of one frame: weight tap DT*9 + dy*3 + dx times the row
    # at (clamp(y + dy - 1), clamp(x + dx - 1)). src: the frame's first element; wt: WT + i*27*C.
    ch_off = ch[None, :] * s_ch
    for dy in tl.static_range(3):
        yy = tl.minimum(tl.maximum(y + (dy - 1), 0), h - 1)
        for dx in tl.static_range(3):
            xx = tl.minimum(tl.maximum(x + (dx - 1), 0), w - 1)
            row = (yy * w + xx).to(tl.int64)
            vals = tl.load(src + row[:, None] * s_row + ch_off, mask=mask, other=0.0).to(tl.float32)
            tap = tl.load(wt + (DT * 9 + dy * 3 + dx) * C + ch, mask=ch < C, other=0.0)
            acc += vals * tap[None, :]
    return acc


@triton.jit
def _sp_conv_kernel(
    PREV, CUR, NXT, WT, OUT,
    k, h, w, C,
    s_p0, s_p1, s_p2,
    s_c0, s_c1, s_c2, s_c3,
    s_n0, s_n1, s_n2,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # PREV, NXT [3, h*w, C], CUR [3, k, h*w, C] strided; WT [3, 27, C] fp32 contiguous;
    # OUT [3, k, h*w, C] contiguous.
    hw = h * w
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    z = tl.program_id(2).to(tl.int64)
    i = z // k
    t = z % k
    y = p // w
    x = p % w
    mask = (p < hw)[:, None] & (ch < C)[None, :]
    wt = WT + i * 27 * C
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for dt in tl.static_range(3):
        f = t + (dt - 1)  # frame index in -1..k
        if f < 0:
            acc = _frame_taps(acc, PREV + i * s_p0, s_p1, s_p2, wt, y, x, h, w, ch, mask, C, dt)
        elif f >= k:
            acc = _frame_taps(acc, NXT + i * s_n0, s_n1, s_n2, wt, y, x, h, w, ch, mask, C, dt)
        else:
            acc = _frame_taps(acc, CUR + i * s_c0 + f * s_c1, s_c2, s_c3, wt, y, x, h, w, ch, mask, C, dt)
    dst = OUT + (z * hw + p.to(tl.int64))[:, None] * C + ch[None, :]
    tl.store(dst, acc.to(OUT.dtype.element_ty), mask=mask)


def _triton_ok(*tensors: torch.Tensor) -> bool:
    """CUDA fp32/bf16 tensors, none of which autograd has to track."""
    if not all(t.is_cuda and t.dtype in _DTYPES for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def sp_conv(
    prev: torch.Tensor,  # [3, h*w, C], any strides
    cur: torch.Tensor,  # [3, k, h*w, C], any strides
    nxt: torch.Tensor,  # [3, h*w, C], any strides
    weight: torch.Tensor,  # [3, C, 27], any float dtype
    hw: tuple[int, int],
) -> torch.Tensor:  # [3, k, h*w, C] contiguous, cur.dtype
    """The SP conv (naive.sp_conv) in one launch."""
    h, w = hw
    _, k, n, C = cur.shape
    if (
        not _triton_ok(prev, cur, nxt)
        or not weight.is_cuda
        or (torch.is_grad_enabled() and weight.requires_grad)
        or 3 * k > MAX_GRID_Z
    ):
        return naive.sp_conv(prev, cur, nxt, weight, hw)
    out = new_output((3, k, n, C), cur.dtype, cur.device)
    if n == 0 or C == 0:
        return out
    # [3, 27, C] fp32, rounded to the inputs' dtype first as the reference's F.conv3d sees it.
    wt = weight.to(cur.dtype).float().transpose(1, 2).contiguous()
    block_c = min(MAX_BLOCK_C, max(16, triton.next_power_of_2(C)))
    grid = (triton.cdiv(n, BLOCK_P), triton.cdiv(C, block_c), 3 * k)
    _sp_conv_kernel[grid](
        prev, cur, nxt, wt, out, k, h, w, C, *prev.stride(), *cur.stride(), *nxt.stride(),
        BLOCK_P=BLOCK_P, BLOCK_C=block_c, num_warps=4,
    )  # fmt: skip
    return out
