"""Input validation shared by the public ops: ValueError naming the value and the expected shape."""

from __future__ import annotations

import torch


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_weights(w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> tuple[int, int, int]:
    """Check w0, w2: [H, Dh, D] and w1: [H, D, Dh] (same float dtype and device); return (H, Dh, D)."""
    if w0.ndim != 3:
        raise ValueError(f"w0 must be [H, Dh, D], got {_shape(w0)}")
    H, Dh, D = w0.shape
    if _shape(w2) != (H, Dh, D):
        raise ValueError(f"w2 must be [H, Dh, D] = {(H, Dh, D)} like w0, got {_shape(w2)}")
    if _shape(w1) != (H, D, Dh):
        raise ValueError(f"w1 must be [H, D, Dh] = {(H, D, Dh)}, got {_shape(w1)}")
    if not w0.is_floating_point():
        raise ValueError(f"w0 must be a floating-point tensor, got {w0.dtype}")
    for name, w in (("w1", w1), ("w2", w2)):
        if w.dtype != w0.dtype:
            raise ValueError(f"{name} must have the dtype of w0 ({w0.dtype}), got {w.dtype}")
        if w.device != w0.device:
            raise ValueError(f"{name} must be on the device of w0 ({w0.device}), got {w.device}")
    return H, Dh, D


def check_tokens(
    name: str,
    t: torch.Tensor,
    layout: str,
    H: int,
    width: int,
    *,
    L: int | None = None,
    device: torch.device,
) -> int:
    """Check t: [H, L, width] (``layout`` names it in messages) on ``device``; L is free unless given.

    Returns L.
    """
    expected = f"({H}, {'L' if L is None else L}, {width})"
    if t.ndim != 3 or t.shape[0] != H or t.shape[2] != width or (L is not None and t.shape[1] != L):
        raise ValueError(f"{name} must be {layout} = {expected}, got {_shape(t)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} must be on the device of the weights ({device}), got {t.device}")
    return t.shape[1]


FP32_DOTS = ("cublas", "ieee", "tf32x3")  # the fp32 GEMM routes of the Triton fast-weight ops (triton_common)


def check_fp32_dot(fp32_dot: str) -> None:
    if fp32_dot not in FP32_DOTS:
        raise ValueError(f"fp32_dot must be one of {FP32_DOTS}, got {fp32_dot!r}")


def check_bf16_weights(low: tuple[torch.Tensor, ...] | None, ws: tuple[torch.Tensor, ...]) -> None:
    """``low``: None, or bf16 tensors shaped and placed like the weights ``ws`` (their GEMM copies)."""
    if low is None:
        return
    if not isinstance(low, tuple | list) or len(low) != len(ws):
        raise ValueError(f"bf16_weights must be None or {len(ws)} tensors (w0, w1, w2 in bf16), got {low!r:.80}")
    for i, (t, w) in enumerate(zip(low, ws)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.bfloat16 or t.shape != w.shape or t.device != w.device:
            got = (tuple(t.shape), t.dtype, t.device) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"bf16_weights[{i}] must be a bf16 tensor of shape {tuple(w.shape)} on {w.device}, "
                             f"got {got}")
