"""Triton versions of the elementwise chains; same signatures and, up to reduction order, results as naive.py.

Each kernel does the reference's steps in the same order in fp32 and rounds where the reference does:

* every product, sum and quotient is rounded on its own: the kernels are compiled with
  ``enable_fp_fusion=False``, so no ``a * b + c`` becomes an FMA (PyTorch runs each op as its own kernel);
* exp, log1p and rsqrt are libdevice's, i.e. the CUDA math library that PyTorch's kernels call; division
  and square root are IEEE (``div_rn``, ``sqrt_rn``) where Triton's ``/`` and ``tl.sqrt`` are
  approximate; libdevice keeps subnormals (``enable_reflect_ftz=False``) as PyTorch's build does;
* where the reference materialises a bf16 tensor and computes on with it, the value is rounded to bf16
  with integer operations (``_round_bf16``), which the compiler cannot fold away as it may do with a
  ``.to(tl.bfloat16).to(tl.float32)`` pair.

What differs is the order of the sums of squares (RMSNorm variance, L2 norms): ulp-level differences in
fp32 outputs, and now and then a 1-ulp flip of a bf16 output. Other dtypes (fp16, float64), tensors
that need autograd, rows wider than MAX_BLOCK and CPU tensors run the reference.
"""

# Triton kernel arguments are pointers and scalars that Triton types itself; they take no annotations.
# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from ..triton_common import new_output
from . import naive

_DTYPES = (torch.float32, torch.bfloat16)
MAX_BLOCK = 8192  # widest row (next power of two of N or D) held in registers by one program
BLOCK_T = 64  # tokens per program of the lr/momentum kernel


def _launch_options() -> dict[str, bool]:
    """Compile options that keep PyTorch's rounding (see the module docstring), where this Triton has them."""
    try:
        from triton.backends.nvidia.compiler import CUDAOptions

        known = set(CUDAOptions.__dataclass_fields__)
    except (ImportError, AttributeError):  # pragma: no cover - other Triton layouts
        known = {"enable_fp_fusion"}
    return {name: False for name in ("enable_fp_fusion", "enable_reflect_ftz") if name in known}


_OPTIONS = _launch_options()


@triton.jit
def _round_bf16(x):
    # fp32 -> nearest bf16 (ties to even) -> fp32, on the bits; NaN stays NaN, overflow gives inf.
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, bits.to(tl.float32, bitcast=True))


@triton.jit
def _silu(x):
    # F.silu on CUDA: x / (1 + exp(-x)) in fp32
    return libdevice.div_rn(x, 1.0 + libdevice.exp(-x))


@triton.jit
def _rms_times_weight(x, w, inv_n, eps, ROUND_H: tl.constexpr):
    # weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype), the product in fp32 (not yet rounded to the
    # result dtype). x, w: fp32 rows, zero beyond N. mean = sum * (1/N), as PyTorch's CUDA mean.
    variance = tl.sum(x * x, axis=0) * inv_n
    h = x * libdevice.rsqrt(variance + eps)
    if ROUND_H:  # x was bf16: h.to(input_dtype)
        h = _round_bf16(h)
    return w * h


@triton.jit
def _rms_norm_kernel(
    X, W, OUT,
    N, s_row, s_col, inv_n, eps,
    ROUND_H: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # One row of x [rows, N] (strided) per program; OUT [rows, N] contiguous in the result dtype.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * s_row + cols * s_col, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    y = _rms_times_weight(x, w, inv_n, eps, ROUND_H)
    tl.store(OUT + row * N + cols, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _qk_head(src, s_c, d, mask, partner, rot, lower, cos, sin, SILU: tl.constexpr):
    # One head's D channels of q' or k' at src: SiLU, x / (||x|| + 1e-5), RoPE on the first hd
    # channels. rotate_half needs channel `partner` (d + hd/2 below hd/2, d - hd/2 up to hd), which is
    # loaded a second time and goes through the same steps (the norm is the row's).
    x = tl.load(src + d * s_c, mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(src + partner * s_c, mask=rot, other=0.0).to(tl.float32)
    if SILU:
        x = _silu(x)
        xp = _silu(xp)
    den = libdevice.sqrt_rn(tl.sum(x * x, axis=0)) + 1e-5
    x = libdevice.div_rn(x, den)
    xp = libdevice.div_rn(xp, den)
    turned = tl.where(lower, -xp, xp)  # rotate_half(x[..., :hd]) = cat(-x[hd/2:hd], x[:hd/2])
    return tl.where(rot, x * cos + turned * sin, x)


@triton.jit
def _fast_qkv_kernel(
    RAW, COS, SIN, OUT,
    n, D, HD,
    s_rj, s_rt, s_rc, s_ct, s_cd, s_st, s_sd,
    SILU_QK: tl.constexpr, SILU_V: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # Program (t, h): token t, fast head h. RAW [3, n, C] strided; OUT [3, H, n, D] contiguous.
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    plane = tl.num_programs(1).to(tl.int64) * n * D  # elements of one of q, k, v
    d = tl.arange(0, BLOCK_D)
    mask = d < D
    half = HD // 2
    rot = d < HD
    lower = d < half
    partner = tl.where(lower, d + half, d - half)
    cos = tl.load(COS + t * s_ct + d * s_cd, mask=rot, other=0.0).to(tl.float32)
    sin = tl.load(SIN + t * s_st + d * s_sd, mask=rot, other=0.0).to(tl.float32)
    src = RAW + t * s_rt + h * D * s_rc
    dst = OUT + (h * n + t) * D + d
    q = _qk_head(src, s_rc, d, mask, partner, rot, lower, cos, sin, SILU_QK)
    tl.store(dst, q.to(OUT.dtype.element_ty), mask=mask)
    k = _qk_head(src + s_rj, s_rc, d, mask, partner, rot, lower, cos, sin, SILU_QK)
    tl.store(dst + plane, k.to(OUT.dtype.element_ty), mask=mask)
    v = tl.load(src + 2 * s_rj + d * s_rc, mask=mask, other=0.0).to(tl.float32)
    if SILU_V:
        v = _silu(v)
    tl.store(dst + 2 * plane, v.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gate_output_kernel(
    O_IN, W, G, OUT,
    D, s_oh, s_ot, s_od, s_gt, s_gh, inv_d, eps,
    ROUND_H: tl.constexpr, ROUND_R: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # Program (t, h): RMSNorm of o[h, t, :] times silu(gate_logits[t, h]) -> OUT[t, h*D:(h+1)*D].
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    row_len = tl.num_programs(1).to(tl.int64) * D  # H * D
    d = tl.arange(0, BLOCK_D)
    mask = d < D
    x = tl.load(O_IN + h * s_oh + t * s_ot + d * s_od, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + d, mask=mask, other=0.0).to(tl.float32)
    r = _rms_times_weight(x, w, inv_d, eps, ROUND_H)
    if ROUND_R:  # the RMSNorm result is a bf16 tensor (o and weight bf16)
        r = _round_bf16(r)
    g = tl.load(G + t * s_gt + h * s_gh).to(tl.float32)
    y = r * _silu(g)  # a bf16 or fp32 tensor times the fp32 gate: fp32
    tl.store(OUT + t * row_len + h * D + d, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _lr_momentum_kernel(
    LR_IN, MU_IN, LR, MU,
    n, H, s_lt, s_lc, s_mt, s_mh, offset,
    ROUND_MU: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # BLOCK_T tokens per program. lr: channel c = 3h + j of token t -> LR[h, t, j]; mu: MU[h, t].
    t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.arange(0, BLOCK_C)
    t_ok = t < n
    m_lr = t_ok[:, None] & (c < 3 * H)[None, :]
    x = tl.load(LR_IN + t[:, None] * s_lt + c[None, :] * s_lc, mask=m_lr, other=0.0).to(tl.float32)
    x = x + offset
    lr = tl.where(x > 20.0, x, libdevice.log1p(libdevice.exp(x)))  # F.softplus, beta 1, threshold 20
    tl.store(LR + ((c // 3)[None, :] * n + t[:, None]) * 3 + (c % 3)[None, :], lr, mask=m_lr)
    m_mu = t_ok[:, None] & (c < H)[None, :]
    m = tl.load(MU_IN + t[:, None] * s_mt + c[None, :] * s_mh, mask=m_mu, other=0.0).to(tl.float32)
    mu = libdevice.div_rn(1.0, 1.0 + libdevice.exp(-m))  # torch.sigmoid in fp32 ...
    if ROUND_MU:  # ... stored in the logits' dtype (bf16), then .float()
        mu = _round_bf16(mu)
    tl.store(MU + c[None, :] * n + t[:, None], mu, mask=m_mu)


def _triton_ok(*tensors: torch.Tensor) -> bool:
    """CUDA fp32/bf16 tensors, none of which autograd has to track."""
    if not all(t.is_cuda and t.dtype in _DTYPES for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _block(width: int) -> int:
    return max(16, triton.next_power_of_2(width))


def _warps(block: int) -> int:
    return max(1, min(8, block // 256))


def rms_norm(
    x: torch.Tensor,  # [..., N]
    weight: torch.Tensor,  # [N]
    eps: float,
) -> torch.Tensor:  # [..., N] in the promotion of (weight.dtype, x.dtype), contiguous
    """HF Qwen3VLTextRMSNorm.forward, one program per row."""
    N = x.shape[-1]
    if not _triton_ok(x, weight) or _block(N) > MAX_BLOCK:
        return naive.rms_norm(x, weight, eps)
    out = new_output(x.shape, torch.promote_types(weight.dtype, x.dtype), x.device)
    rows = out.numel() // N if N else 0
    if rows == 0:
        return out
    x2 = x.reshape(rows, N)  # a view unless the leading dims cannot be merged
    block = _block(N)
    _rms_norm_kernel[(rows,)](
        x2, weight.contiguous(), out, N, x2.stride(0), x2.stride(1), 1.0 / N, float(eps),
        ROUND_H=x.dtype == torch.bfloat16, BLOCK_N=block, num_warps=_warps(block), **_OPTIONS,
    )  # fmt: skip
    return out


def fast_qkv_prep(
    raw: torch.Tensor,  # [3, n, C], any strides
    cos: torch.Tensor,  # [n, hd]
    sin: torch.Tensor,  # [n, hd]
    *,
    num_heads: int,
    silu_qk: bool,
    silu_v: bool,
    out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # q, k, v [H, n, D] contiguous, out_dtype
    """TTTAttention.fast_qkv, one program per (token, head) writing that head's q, k and v rows."""
    _, n, C = raw.shape
    D = C // num_heads
    if not _triton_ok(raw, cos, sin) or out_dtype not in _DTYPES or _block(D) > MAX_BLOCK:
        return naive.fast_qkv_prep(
            raw, cos, sin, num_heads=num_heads, silu_qk=silu_qk, silu_v=silu_v, out_dtype=out_dtype
        )
    out = new_output((3, num_heads, n, D), out_dtype, raw.device)
    if n and D:
        hd = cos.shape[1]
        if not hd:  # no rotation: the tables are never read, pass a non-null placeholder
            cos = sin = raw[0]
        block = _block(D)
        _fast_qkv_kernel[(n, num_heads)](
            raw, cos, sin, out, n, D, hd, *raw.stride(), *cos.stride(), *sin.stride(),
            SILU_QK=bool(silu_qk), SILU_V=bool(silu_v), BLOCK_D=block, num_warps=_warps(block), **_OPTIONS,
        )  # fmt: skip
    return out[0], out[1], out[2]


def ttt_gate_output(
    o: torch.Tensor,  # [H, n, D], any strides
    norm_weight: torch.Tensor,  # [D]
    gate_logits: torch.Tensor,  # [n, H]
    eps: float,
    out_dtype: torch.dtype,
) -> torch.Tensor:  # [n, H * D] in out_dtype
    """TTTAttention.ttt_output, one program per (token, head) writing its D slice of the output row."""
    H, n, D = o.shape
    if not _triton_ok(o, norm_weight, gate_logits) or out_dtype not in _DTYPES or _block(D) > MAX_BLOCK:
        return naive.ttt_gate_output(o, norm_weight, gate_logits, eps, out_dtype)
    out = new_output((n, H * D), out_dtype, o.device)
    if n and D:
        block = _block(D)
        both_bf16 = o.dtype == torch.bfloat16 and norm_weight.dtype == torch.bfloat16
        _gate_output_kernel[(n, H)](
            o, norm_weight.contiguous(), gate_logits, out, D, *o.stride(), *gate_logits.stride(),
            1.0 / D, float(eps),
            ROUND_H=o.dtype == torch.bfloat16, ROUND_R=both_bf16, BLOCK_D=block, num_warps=_warps(block),
            **_OPTIONS,
        )  # fmt: skip
    return out


def lr_momentum(
    lr_logits: torch.Tensor,  # [n, 3H]
    mu_logits: torch.Tensor,  # [n, H], before the sigmoid
    offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # lr [H, n, 3], mu [H, n, 1], fp32 contiguous
    """TTTAttention.lr_and_momentum after its two linears: one launch for both outputs."""
    n, H = mu_logits.shape
    if not _triton_ok(lr_logits, mu_logits) or _block(3 * H) > MAX_BLOCK:
        return naive.lr_momentum(lr_logits, mu_logits, offset)
    lr = new_output((H, n, 3), torch.float32, lr_logits.device)
    mu = new_output((H, n, 1), torch.float32, lr_logits.device)
    if n and H:
        _lr_momentum_kernel[(triton.cdiv(n, BLOCK_T),)](
            lr_logits, mu_logits, lr, mu, n, H, *lr_logits.stride(), *mu_logits.stride(), float(offset),
            ROUND_MU=mu_logits.dtype == torch.bfloat16, BLOCK_T=BLOCK_T, BLOCK_C=_block(3 * H), num_warps=4,
            **_OPTIONS,
        )  # fmt: skip
    return lr, mu
