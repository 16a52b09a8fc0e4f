"""Plain PyTorch reference of the 5-step Newton-Schulz iteration used by Muon (spec 3.4)."""

from __future__ import annotations

import torch

# (a_i, b_i, c_i) of iteration i; one tuned triple per step rather than one fixed triple.
NS5_COEFFS: tuple[tuple[float, float, float], ...] = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)


def newton_schulz5(
    g: torch.Tensor,  # [..., M, N], any float dtype
    steps: int = 5,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:  # [..., M, N] in ``dtype``
    """Approximately orthogonalise each matrix of ``g`` (singular values pushed towards ~1) in ``dtype``
    (bf16 as the official code; fp32 or float64 on request).

    Each step is the official ``zeropower_via_newtonschulz5`` line ``B = b * A + c * A @ A``, which
    Python evaluates as ``(c * A) @ A``: c scales the Gram matrix (rounded to ``dtype``) before the
    product. ``c * (A @ A)`` differs by up to 1e-2 per call in bf16.
    """
    x = g.to(dtype)
    # Iterate on the wide orientation so X X^T is the smaller Gram matrix.
    tall = g.shape[-2] > g.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in NS5_COEFFS[:steps]:
        gram = x @ x.mT  # [..., min, min]
        x = a * x + (b * gram + (c * gram) @ gram) @ x
    return x.mT if tall else x
