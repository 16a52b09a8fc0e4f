"""Fast-weight state of one TTT layer and one Update(S, B) step (spec 3.3-3.5a)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .backend import lazy_impl, pick_impl
from .checks import check_tokens, check_weights
from .ops import fw_grad
from .state_update import naive as update_naive
from .state_update.naive import Weights, row_norms, row_renorm

__all__ = ["FastWeightState", "Weights", "fw_update", "init_fast_weight_state", "row_norms", "row_renorm"]

# Steps 2-4 of one update (momentum, Muon, renorm), by backend.
_UPDATE_WEIGHTS = {
    "torch": update_naive.update_weights,
    "triton": lazy_impl("state_update.triton", "update_weights"),
}


DERIVED = "derived"  # field metadata key: recomputable from the other fields, never saved or digested


@dataclass
class FastWeightState:
    """Everything one TTT layer's fast-weight memory is, as tensors (fp32 by default).

    ``w_low`` is derived data carried with the weights instead of in a cache of the kernels: the
    weights in use rounded to bf16, written by the Triton update step (``fw_update(...,
    keep_bf16_weights=True)``) for the next chunk's bf16 GEMMs, so that apply and gradient need no
    casts. Valid because states are never edited in place (every update returns a new state).
    """

    w: Weights  # weights in use for apply and gradient (normalised)
    w_main: Weights | None  # pre-norm un-normalised accumulator; None for post-norm
    momentum: Weights | None  # momentum buffers M (start at zero); None when momentum is off
    norms: Weights  # row norms r_X of the initial weights: [H, Dh, 1], [H, D, 1], [H, Dh, 1]
    w_low: Weights | None = field(default=None, metadata={DERIVED: True})  # w in bf16, or None

    def tensors(self) -> list[torch.Tensor]:
        """The state proper (w_low, derived from w, excluded)."""
        return [t for group in (self.w, self.w_main, self.momentum, self.norms) if group for t in group]

    def clone(self) -> FastWeightState:
        def copy(group: Weights | None) -> Weights | None:
            return None if group is None else tuple(t.clone() for t in group)

        return FastWeightState(copy(self.w), copy(self.w_main), copy(self.momentum), copy(self.norms),
                               copy(self.w_low))

    def nbytes(self) -> int:
        """Bytes held, the bf16 copies included."""
        return sum(t.numel() * t.element_size() for t in (*self.tensors(), *(self.w_low or ())))


def init_fast_weight_state(
    w0: torch.Tensor,  # [H, Dh, D] initial gate weight (the learned parameter, usually bf16)
    w1: torch.Tensor,  # [H, D, Dh]
    w2: torch.Tensor,  # [H, Dh, D]
    *,
    use_momentum: bool,
    prenorm: bool,
    dtype: torch.dtype = torch.float32,
) -> FastWeightState:
    """Start-of-sequence state: copies of the initial weights in ``dtype``, zero momentum, their row norms."""
    check_weights(w0, w1, w2)
    w = tuple(t.to(dtype=dtype, copy=True) for t in (w0, w1, w2))
    return FastWeightState(
        w=w,
        w_main=tuple(t.clone() for t in w) if prenorm else None,
        momentum=tuple(torch.zeros_like(t) for t in w) if use_momentum else None,
        norms=tuple(row_norms(t) for t in w),
    )


def _check_state(state: FastWeightState, *, use_momentum: bool, prenorm: bool) -> None:
    check_weights(*state.w)
    if use_momentum != (state.momentum is not None):
        raise ValueError(
            f"state.momentum is {'missing' if use_momentum else 'set'} but use_momentum={use_momentum}"
        )
    if prenorm != (state.w_main is not None):
        raise ValueError(f"state.w_main is {'missing' if prenorm else 'set'} but prenorm={prenorm}")
    for name, group in (("w_main", state.w_main), ("momentum", state.momentum)):
        for i, (t, ref) in enumerate(zip(group or (), state.w)):
            if t.shape != ref.shape:
                raise ValueError(
                    f"state.{name}[{i}] must be {tuple(ref.shape)} like state.w[{i}], got {tuple(t.shape)}"
                )
    for i, (n, ref) in enumerate(zip(state.norms, state.w)):
        if tuple(n.shape) != (*ref.shape[:2], 1):
            raise ValueError(f"state.norms[{i}] must be {(*ref.shape[:2], 1)}, got {tuple(n.shape)}")


def fw_update(
    state: FastWeightState,
    k: torch.Tensor,  # [H, L, D] keys of the chunk
    v: torch.Tensor,  # [H, L, D] values of the chunk
    lr: torch.Tensor,  # [H, L, 3] per-token steps of W0, W1, W2
    mu: torch.Tensor,  # [H, L, 1] per-token momentum coefficient; beta = mean over L
    *,
    use_momentum: bool,
    use_muon: bool,
    prenorm: bool,
    ns_dtype: torch.dtype = torch.bfloat16,
    backend: str = "auto",
    keep_bf16_weights: bool = False,
    fp32_dot: str = "cublas",
) -> FastWeightState:
    """One Update(S, B) of spec 3.5a for one chunk; returns a new state and leaves ``state`` untouched.
    ``ns_dtype``: the precision of Muon's Newton-Schulz (bf16 as the official code, or fp32).
    ``keep_bf16_weights``: the caller's next GEMMs run in bf16 (bf16 tokens): the Triton step also
    returns the new weights rounded to bf16 as ``w_low`` (written in the same pass); the reference
    leaves it None. ``fp32_dot``: the fp32 GEMM route (kernels.ops.fw_grad)."""
    _check_state(state, use_momentum=use_momentum, prenorm=prenorm)
    w0 = state.w[0]
    H, _, D = w0.shape
    L = check_tokens("k", k, "[H, L, D]", H, D, device=w0.device)
    if L == 0:
        raise ValueError(f"k must hold at least one token, got {tuple(k.shape)}")
    check_tokens("mu", mu, "[H, L, 1]", H, 1, L=L, device=w0.device)

    # 1. closed-form directions with the weights in use (fw_grad validates v and lr)
    dw = fw_grad(*state.w, k, v, lr, backend=backend, bf16_weights=state.w_low, fp32_dot=fp32_dot)
    # 2-4. momentum (beta = chunk mean of mu), Muon, post- or pre-norm renormalisation
    beta = mu.to(w0.dtype).mean(dim=1, keepdim=True) if use_momentum else None  # [H, 1, 1]
    update = pick_impl("fw_update", _UPDATE_WEIGHTS, w0.device, backend)
    w, w_main, momentum, w_low = update(
        state.w, state.w_main, state.momentum, state.norms, dw, beta, use_muon=use_muon, ns_dtype=ns_dtype,
        backend=backend, bf16_copies=keep_bf16_weights,
    )
    return FastWeightState(w=w, w_main=w_main, momentum=momentum, norms=state.norms, w_low=w_low)
