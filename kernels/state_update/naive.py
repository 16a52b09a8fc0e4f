"""Plain PyTorch reference of steps 2-4 of one Update(S, B) (spec 3.3-3.5): momentum, Muon, renorm."""

from __future__ import annotations

import torch

from ..ops import newton_schulz5

Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (W0 [H, Dh, D], W1 [H, D, Dh], W2 [H, Dh, D])


def row_norms(w: torch.Tensor) -> torch.Tensor:  # [H, R, C] -> [H, R, 1]
    """L2 norm of every row (over the last axis)."""
    if w.ndim != 3:
        raise ValueError(f"w must be [H, R, C], got {tuple(w.shape)}")
    return w.norm(dim=-1, keepdim=True)


def row_renorm(
    w: torch.Tensor,  # [H, R, C]
    row_norms: torch.Tensor,  # [H, R, 1] target norms r_X
    *,
    eps: float = 1e-5,
) -> torch.Tensor:  # [H, R, C]
    """w / (||row|| + eps) * row_norms; eps is added to the norm, not inside the square root."""
    if w.ndim != 3:
        raise ValueError(f"w must be [H, R, C], got {tuple(w.shape)}")
    if tuple(row_norms.shape) != (*w.shape[:2], 1):
        raise ValueError(f"row_norms must be [H, R, 1] = {(*w.shape[:2], 1)}, got {tuple(row_norms.shape)}")
    return w / (w.norm(dim=-1, keepdim=True) + eps) * row_norms


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
    bf16_copies: bool = False,  # noqa: ARG001 - the reference's GEMMs run in the state dtype: no copies
) -> tuple[Weights, Weights | None, Weights | None, Weights | None]:  # new (w, w_main, momentum, w_low)
    """Momentum mix, optional Newton-Schulz (in ``ns_dtype``), then post-norm (w_main None) or pre-norm
    renormalisation. ``w_low`` (bf16 copies of the new w, asked for by ``bf16_copies``) is always None
    here: only the Triton step writes them, in the same pass."""
    if momentum is not None:
        # the buffer keeps the post-momentum, pre-orthogonalisation update
        dw = tuple(d + beta * m for d, m in zip(dw, momentum))
        momentum = dw
    if use_muon:
        # orthogonalise each matrix separately (bf16 by default), then add into the state dtype
        dw = tuple(newton_schulz5(d, dtype=ns_dtype, backend=backend).to(w[0].dtype) for d in dw)
    if w_main is not None:
        w_main = tuple(m + u for m, u in zip(w_main, dw))
        w = tuple(row_renorm(m, r) for m, r in zip(w_main, norms))
    else:
        w = tuple(row_renorm(x + u, r) for x, u, r in zip(w, dw, norms))
    return w, w_main, momentum, None
