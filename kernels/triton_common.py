"""Pieces shared by the Triton kernels: output allocation, a launcher and a batched GEMM with epilogue.

Imported only through the Triton op modules, which are themselves imported lazily (backend.py), so
CPU machines without triton never load this file.
"""

# Triton kernel arguments are pointers and scalars that Triton types itself; they take no annotations.
# ruff: noqa: ANN001, ANN201

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

# The GPU tests set this environment variable to 1: every buffer a kernel is meant to fill completely
# then starts as NaN, so a tile that is never written shows up as NaN instead of as stale memory. (An
# environment variable of the process, read per allocation, not a module flag: see test_no_module_state.)
POISON_ENV = "SPATIAL_TTT_POISON_OUTPUTS"


def new_output(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.empty, or a NaN-filled tensor while $SPATIAL_TTT_POISON_OUTPUTS is 1."""
    if os.environ.get(POISON_ENV) == "1":
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)
    return torch.empty(tuple(shape), dtype=dtype, device=device)


# Per (device index, launch site), the index of the first config whose shared memory fitted that
# chip. A fact about the hardware (the same for every layer, engine and input), remembered so a chip
# with less shared memory than an H100 does not fail its way down the list at every launch; the one
# module-level memo test_no_module_state allows.
_FITTED: dict[tuple, int] = {}


def launch(
    kernel: triton.JITFunction,
    grid: Callable[[dict], tuple[int, ...]],
    args: Sequence,
    consts: dict,
    configs: Sequence[dict],
    site: tuple,
) -> None:
    """Run ``kernel`` with the first of ``configs`` whose shared memory fits; remember the choice per site.

    A config is a dict of block-size constexprs plus ``num_warps`` and ``num_stages``; the first one is
    the tuned choice for an H100, the later ones are smaller fallbacks for chips with less shared memory.
    """
    key = (torch.cuda.current_device(), *site)
    for i in range(_FITTED.get(key, 0), len(configs)):
        meta = {**consts, **configs[i]}
        try:
            kernel[grid(meta)](*args, **meta)
        except OutOfResources:
            continue
        _FITTED[key] = i
        return
    raise RuntimeError(f"no config of {kernel.fn.__name__} fits this GPU: {list(configs)}")


# How the all-fp32 mode runs its GEMMs (the ``fp32_dot`` argument of the fast-weight ops, checks.FP32_DOTS):
#   "cublas": the reference's own fp32 matmuls (tf32 off unless torch.backends says otherwise), so
#             the results equal the "torch" backend's; the default, because on an H100 cuBLAS fp32
#             is 1.8x faster than Triton's exact fp32 dot (benchmarks/results/kernels.md);
#   "ieee":   Triton kernels with exact fp32 products on the CUDA cores;
#   "tf32x3": Triton kernels with three tf32 tensor-core products per product (error ~2e-7, fp32-like).
DEFAULT_FP32_DOT = "cublas"


def dot_precision(dtype: torch.dtype, fp32_dot: str) -> str:
    """The PREC constexpr for GEMM operands of ``dtype``: ``fp32_dot`` for fp32, the tensor-core default else."""
    return fp32_dot if dtype == torch.float32 else "default"


def fp32_via_cublas(dtype: torch.dtype, fp32_dot: str) -> bool:
    """True when GEMMs on operands of ``dtype`` should go to the PyTorch reference (``fp32_dot`` "cublas")."""
    return dtype == torch.float32 and fp32_dot == "cublas"


@triton.jit
def dot(a, b, acc, PREC: tl.constexpr):
    """acc + a @ b with fp32 accumulation; PREC is dot_precision() of the operands."""
    if PREC == "default":
        acc = tl.dot(a, b, acc)
    else:
        acc = tl.dot(a, b, acc, input_precision=PREC)
    return acc


@triton.jit
def _bmm_kernel(
    A, B, C, ADD,
    M, N, K,
    ZA, ZB,
    s_az, s_am, s_ak,
    s_bz, s_bk, s_bn,
    s_cz, s_cm, s_cn,
    s_dz, s_dm, s_dn,
    alpha, beta,
    HAS_ADD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    # C[z] = alpha * A[z % ZA] @ B[z % ZB] (+ beta * ADD[z]); every operand is a strided view.
    pid = tl.program_id(0)
    z = tl.program_id(1).to(tl.int64)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    # Grouped tile order: GROUP_M row-tiles share their B column-tiles while they sit in L2.
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = A + (z % ZA) * s_az + offs_m[:, None] * s_am + offs_k[None, :] * s_ak
    b_ptrs = B + (z % ZB) * s_bz + offs_k[:, None] * s_bk + offs_n[None, :] * s_bn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        mask_k = offs_k < K - k0
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = dot(a, b, acc, PREC)
        a_ptrs += BLOCK_K * s_ak
        b_ptrs += BLOCK_K * s_bk

    acc = acc * alpha
    mask_c = mask_m[:, None] & mask_n[None, :]
    if HAS_ADD:
        d_ptrs = ADD + z * s_dz + offs_m[:, None] * s_dm + offs_n[None, :] * s_dn
        acc += beta * tl.load(d_ptrs, mask=mask_c, other=0.0).to(tl.float32)
    c_ptrs = C + z * s_cz + offs_m[:, None] * s_cm + offs_n[None, :] * s_cn
    tl.store(c_ptrs, acc.to(C.dtype.element_ty), mask=mask_c)


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); first = preferred on an H100.
BMM_CONFIGS = {
    "bf16_large": ((128, 128, 64, 8, 3), (128, 128, 64, 8, 2), (64, 64, 64, 4, 2)),
    "bf16_small": ((64, 128, 64, 4, 4), (64, 128, 64, 4, 3), (64, 64, 64, 4, 2)),
    "fp32": ((64, 64, 32, 4, 2), (32, 32, 32, 4, 1)),
}


@functools.cache
def config_dicts(configs: tuple[tuple, ...], names: tuple[str, ...], extra: tuple[tuple[str, int], ...] = ()
                 ) -> tuple[dict, ...]:
    """((blocks..., num_warps, num_stages), ...) -> launch() configs (a pure function, memoised; the
    dicts are only read: launch() builds its own)."""
    return tuple({**dict(zip(names, c[:-2])), **dict(extra), "num_warps": c[-2], "num_stages": c[-1]}
                 for c in configs)


@functools.cache
def sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def bmm(
    a: torch.Tensor,  # [Za, M, K] any strides (Za divides Z)
    b: torch.Tensor,  # [Zb, K, N] any strides (Zb divides Z)
    out: torch.Tensor,  # [Z, M, N] written
    *,
    alpha: float = 1.0,
    add: torch.Tensor | None = None,  # [Z, M, N]; out = alpha * a @ b + beta * add
    beta: float = 0.0,
    fp32_dot: str = "ieee",
) -> torch.Tensor:
    """Batched GEMM with fp32 accumulation; operand z of the output uses a[z % Za] and b[z % Zb].

    Operands must share a dtype: bf16 (tensor cores) or fp32 (products as ``fp32_dot`` says: "ieee"
    or "tf32x3"; "cublas" is not a Triton product and is refused here).
    """
    if a.dtype == torch.float32 and fp32_dot not in ("ieee", "tf32x3"):
        raise ValueError(f"bmm fp32_dot must be 'ieee' or 'tf32x3' for fp32 operands, got {fp32_dot!r}")
    Z, M, N = out.shape
    K = a.shape[2]
    if a.dtype != b.dtype or a.dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"bmm operands must both be bf16 or fp32, got {a.dtype} and {b.dtype}")
    if a.shape[1:] != (M, K) or b.shape[1:] != (K, N) or Z % a.shape[0] or Z % b.shape[0]:
        raise ValueError(f"bmm shapes do not chain: {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)}")
    prec = dot_precision(a.dtype, fp32_dot)
    if a.dtype == torch.float32:
        kind = "fp32"
    else:
        # Fewer than two waves of 128x128 tiles leave SMs idle: use 64x128 tiles then.
        tiles = Z * triton.cdiv(M, 128) * triton.cdiv(N, 128)
        kind = "bf16_large" if tiles >= 2 * sm_count(out.device.index or 0) else "bf16_small"
    d = out if add is None else add
    launch(
        _bmm_kernel,
        lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]), Z),
        (a, b, out, d, M, N, K, a.shape[0], b.shape[0], *a.stride(), *b.stride(), *out.stride(), *d.stride(),
         float(alpha), float(beta)),
        dict(HAS_ADD=add is not None, PREC=prec),
        config_dicts(BMM_CONFIGS[kind], ("BLOCK_M", "BLOCK_N", "BLOCK_K"), (("GROUP_M", 8),)),
        ("bmm", kind, prec, add is not None),
    )
    return out
