"""Muon's 5-step Newton-Schulz on the GPU; same signature as naive.py (spec 3.4, README section 4).

Two versions of one algorithm, both bf16 GEMMs with fp32 accumulation and one rounding per GEMM:

* ``newton_schulz5_triton``: three Triton GEMM launches per iteration with the polynomial fused into
  the epilogues (``A = X X^T``; ``P = (c A) A + b A``; ``X = P X + a X``);
* ``newton_schulz5_cublas``: the same three steps through cuBLAS (``bmm``/``baddbmm``).

Both scale the Gram matrix by c (rounded to bf16) *before* the product, as the official
``B = b * A + c * A @ A`` (Python: ``(c * A) @ A``) and naive.py do; ``c * (A @ A)`` differs by up
to 1e-2 per call in bf16.

``newton_schulz5``, the one the backend table uses, is the cuBLAS version: at 12 x 512 x 512 on an
H100 it measured 0.45 ms against 1.03 ms for the Triton one. These GEMMs are small (3.2 GFLOP, one
wave of tiles), so per-launch overhead decides, and cuBLAS launches are cheaper than Triton's from
Python. benchmarks/bench_kernels.py times both; the GPU tests check both against float64.
"""

from __future__ import annotations

import torch

from ..triton_common import bmm, new_output
from .naive import NS5_COEFFS


def _prepare(g: torch.Tensor, eps: float) -> tuple[torch.Tensor, bool]:
    """bf16, wide orientation, Frobenius-normalised, batch flattened: [Z, m, n] with m <= n."""
    x = g.to(torch.bfloat16)
    tall = g.shape[-2] > g.shape[-1]
    if tall:
        x = x.mT
    # explicit bf16: under autocast the norm, and so the quotient, would be fp32
    x = (x / (x.norm(dim=(-2, -1), keepdim=True) + eps)).to(torch.bfloat16)
    return x.reshape(-1, *x.shape[-2:]), tall


def _finish(x: torch.Tensor, g: torch.Tensor, tall: bool) -> torch.Tensor:
    shape = (*g.shape[:-2], g.shape[-1], g.shape[-2]) if tall else g.shape
    x = x.reshape(shape)
    return x.mT if tall else x


def newton_schulz5_triton(
    g: torch.Tensor,  # [..., M, N], any float dtype
    steps: int = 5,
    eps: float = 1e-7,
) -> torch.Tensor:  # [..., M, N] bf16
    """Newton-Schulz with Triton GEMMs whose epilogues apply the polynomial coefficients."""
    x, tall = _prepare(g, eps)
    x = x.contiguous()
    Z, m, n = x.shape
    gram = new_output((Z, m, m), torch.bfloat16, x.device)
    poly = new_output((Z, m, m), torch.bfloat16, x.device)
    for a, b, c in NS5_COEFFS[:steps]:
        bmm(x, x.mT, gram)
        bmm(c * gram, gram, poly, add=gram, beta=b)
        x = bmm(poly, x, new_output((Z, m, n), torch.bfloat16, x.device), add=x, beta=a)
    return _finish(x, g, tall)


def newton_schulz5_cublas(
    g: torch.Tensor,  # [..., M, N], any float dtype
    steps: int = 5,
    eps: float = 1e-7,
) -> torch.Tensor:  # [..., M, N] bf16
    """The same three fused steps per iteration through cuBLAS."""
    x, tall = _prepare(g, eps)
    for a, b, c in NS5_COEFFS[:steps]:
        gram = torch.bmm(x, x.mT)
        poly = torch.baddbmm(gram, c * gram, gram, beta=b, alpha=1.0)
        x = torch.baddbmm(x, poly, x, beta=a, alpha=1.0)
    return _finish(x, g, tall)


def newton_schulz5(
    g: torch.Tensor,  # [..., M, N], any float dtype
    steps: int = 5,
    eps: float = 1e-7,
) -> torch.Tensor:  # [..., M, N] bf16
    """Muon's Newton-Schulz on CUDA: the cuBLAS version, measured faster (module docstring)."""
    if not g.is_cuda:
        from .naive import newton_schulz5 as reference

        return reference(g, steps=steps, eps=eps)
    return newton_schulz5_cublas(g, steps=steps, eps=eps)
