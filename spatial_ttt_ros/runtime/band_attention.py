"""Sliding-window attention of a block of queries without a materialised mask.

A block of n queries at positions P..P+n-1 (n < W) sees, row r, the keys (P + r - W, P + r]. That
band is not one causal pattern, so it runs as three unmasked or causal flash calls over disjoint
key ranges, merged by their log-sum-exps:

    tail   [P+1-W, P+n-W]   n keys, row r sees key j iff j >= r: causal after flipping rows and keys
    middle [P+n-W+1, P-1]   W-n-1 keys every row sees: no mask
    head   [P, P+n-1]       n keys, row r sees key j iff j <= r: causal

Each part is a flash kernel with its causal flag, where a boolean band mask sends SDPA to the
memory-efficient kernel over all W + n - 1 keys with the mask read from memory (the largest single
GPU cost of ingest in benchmarks/results/profile_ingest_h100_20261207.txt). Equal to the masked
form up to rounding (test/unit/test_band_attention.py).

Used on the CPU only: there it is 1.31x faster per 2B-shaped block (band_attention_cpu.md); on an
H100 the three flash calls lost to the one masked call, 0.82 against 0.64 ms per block
(band_attention_cuda.md), and ingest fell from 245 to 196 frames/s at 1024 frames
(benchmarks/results/band_ingest_h100_20261207/). `benchmarks.bench_band --device cuda` re-measures it.
Its two primitives, `flash_lse` (a flash call that returns the log-sum-exp) and `merge_lse`, also
serve the split-KV candidate of benchmarks/bench_question_attention.py.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def band_supported(q: torch.Tensor) -> bool:
    """Whether the flash kernels that return a log-sum-exp take `q`'s device, dtype and head size:
    CPU tensors in fp32, bf16 or fp16; on CUDA fp16/bf16 with a head size that is a multiple of 8
    up to 256 on an sm80+ GPU (flash attention's own limits)."""
    if q.device.type == "cpu":
        return q.dtype in (torch.float32, torch.bfloat16, torch.float16)
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    d = q.shape[-1]
    return d % 8 == 0 and d <= 256 and torch.cuda.get_device_capability(q.device) >= (8, 0)


def band_works(q: torch.Tensor) -> bool:
    """Whether the decoder should run q's window attention as bands: q is on the CPU (the one device
    where it pays, module docstring), band_supported(q), and a small band on q's dtype and head size
    equals the masked form: the kernels are private torch ops, so a torch build whose signature or
    behaviour differs keeps the masked form (with a warning) instead of failing or answering wrongly."""
    if q.device.type != "cpu" or not band_supported(q):
        return False
    window, n, d = 16, 8, q.shape[-1]
    g = torch.Generator().manual_seed(0)
    q_, k_, v_ = (torch.randn(2, rows, d, generator=g).to(q.device, q.dtype) for rows in (n, window + n - 1, window + n - 1))
    qi = torch.arange(window - 1, window + n - 1, device=q.device)[:, None]
    ki = torch.arange(window + n - 1, device=q.device)[None]
    mask = ((ki <= qi) & (ki > qi - window))[None, None]
    want = F.scaled_dot_product_attention(q_[None], k_[None], v_[None], attn_mask=mask)[0].transpose(0, 1).reshape(n, -1)
    try:
        got = band_attention(q_, k_, v_, window, d ** -0.5)
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        log.warning("band attention unavailable on %s %s (%s); window attention keeps its mask", q.device, q.dtype, exc)
        return False
    tol = 1e-4 if q.dtype == torch.float32 else 3e-2
    if not torch.allclose(got.float(), want.float(), atol=tol, rtol=tol):
        log.warning("band attention differs from the masked form on %s %s; window attention keeps its mask",
                    q.device, q.dtype)
        return False
    return True


def flash_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
              scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(output [B, H, n, d], log-sum-exp [B, H, n] fp32) of q [B, H, n, d] against k/v [B, H, m, d]
    with the flash kernels that return the log-sum-exp (private torch ops: callers probe them, as
    band_works does); `causal` is top-left aligned (row r sees keys 0..r)."""
    if q.device.type == "cuda":
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scaling)
    else:
        out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scaling)
    return out[0], out[1].float()


def merge_lse(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Attention over the union of disjoint key sets from each set's (output [..., n, d], lse [..., n]):
    the outputs weighted by exp(lse - the joint lse), in fp32."""
    lse = torch.logsumexp(torch.stack([s for _, s in parts]), dim=0)
    return sum(o.float() * (s - lse).exp()[..., None] for o, s in parts)


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
           scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """flash_lse for one batch row: q [H, n, d], k/v [H, m, d]."""
    out, lse = flash_lse(q[None], k[None], v[None], causal, scaling)
    return out[0], lse[0]


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scaling: float) -> torch.Tensor:
    """q [H, n, hd] at positions P..P+n-1; k/v [H, W+n-1, hd] at positions P+1-W..P+n-1 (the last
    key is the last query's own); 1 <= n < W -> [n, H*hd], each row over the W keys it sees."""
    h, n, hd = q.shape
    if not 1 <= n < window or k.shape[1] != window + n - 1 or v.shape[1] != k.shape[1]:
        raise ValueError(f"band_attention: {n} queries need {window + n - 1} keys for window {window}, "
                         f"got {k.shape[1]} (and {v.shape[1]} values)")
    tail_o, tail_lse = _flash(q.flip(1), k[:, :n].flip(1), v[:, :n].flip(1), True, scaling)
    parts = [(tail_o.flip(1), tail_lse.flip(1)), _flash(q, k[:, -n:], v[:, -n:], True, scaling)]
    if window - n - 1 > 0:
        parts.append(_flash(q, k[:, n:window - 1], v[:, n:window - 1], False, scaling))
    return merge_lse(parts).to(q.dtype).transpose(0, 1).reshape(n, h * hd)
