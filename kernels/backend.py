"""Run-time choice between the PyTorch reference ("torch") and the Triton kernels ("triton")."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping

import torch

BACKENDS = ("torch", "triton")


@functools.cache
def triton_available() -> bool:
    """True when ``import triton`` succeeds (it is missing on CPU wheels and some Jetson images)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def select_backend(device: torch.device | str, requested: str = "auto") -> str:
    """Resolve ``requested`` ("auto", "torch" or "triton") to a backend usable on ``device``.

    "auto" picks "triton" on CUDA when triton is importable and "torch" everywhere else.
    """
    if requested != "auto" and requested not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {requested!r}")
    device = torch.device(device)
    triton_ok = device.type == "cuda" and triton_available()
    if requested == "auto":
        return "triton" if triton_ok else "torch"
    if requested == "triton" and not triton_ok:
        reason = "triton is not importable" if device.type == "cuda" else f"device is {device.type}"
        raise ValueError(f"backend 'triton' needs a CUDA device with triton importable, but {reason}")
    return requested


def pick_impl(op: str, impls: Mapping[str, Callable], device: torch.device, requested: str) -> Callable:
    """The implementation of ``op`` for the backend chosen by :func:`select_backend`.

    Ops without a Triton version yet run the reference under "auto"; asking for "triton"
    explicitly is an error rather than a silent fallback.
    """
    backend = select_backend(device, requested)
    if backend not in impls:
        if requested == "auto":
            backend = "torch"
        else:
            raise NotImplementedError(f"{op} has no {backend!r} implementation yet (have {sorted(impls)})")
    return impls[backend]


def lazy_impl(module: str, name: str) -> Callable:
    """``kernels.<module>.<name>``, imported at its first call.

    The Triton modules import triton at load time; deferring that keeps ``import kernels`` working on
    machines without triton, where :func:`select_backend` never picks them.
    """

    def call(*args, **kwargs):  # noqa: ANN202
        impl = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return impl(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{name}"
    return call
