"""One attention call for all frame groups of the Qwen3-VL vision tower.

The vision tower attends within each frame group (a packed sequence with `cu_seqlens`). With
`sdpa`, transformers splits the packed sequence on the host: per block a device-to-host copy of
the lengths (a full synchronisation) and one SDPA call per group, 768 calls for 32 groups: the
tower then runs host-bound with the GPU idle about half the time (measured on an H100: 149 ms of
wall time for 64 frames against 64 ms of GPU kernels; benchmarks/profile_engine.py --vision).

transformers hands the packed form (`cu_seq_lens_q`, `max_length_q`) only to attention
implementations whose name contains "flash" (`is_flash_attention_requested`), so this SDPA
implementation is registered under such a name through transformers' public
`AttentionInterface`. Groups of one size (always the case here: every frame group has the same
grid) become a batch for a single SDPA call; other packings fall back to one call per sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

NAME = "flash_packed_sdpa"  # "flash" selects transformers' packed-sequence path; the maths is SDPA


def packed_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                cu_seq_lens_q: torch.Tensor | None = None, max_length_q: int | None = None,
                is_causal: bool = False, **kwargs: object) -> tuple[torch.Tensor, None]:
    """q/k/v [1, H, N, d] packed sequences -> [1, N, H, d] (the layout transformers expects back)."""
    if attention_mask is not None or is_causal or dropout:
        raise ValueError("packed_sdpa serves the vision tower only (no mask, not causal, no dropout)")
    _, heads, n, dim = query.shape
    groups = n if cu_seq_lens_q is None else cu_seq_lens_q.shape[0] - 1
    if cu_seq_lens_q is None or (max_length_q is not None and max_length_q * groups == n):
        # Equal lengths (their sum is n and none exceeds the max): one batched call, no host sync.
        length = n if cu_seq_lens_q is None else max_length_q
        q, k, v = (t[0].view(heads, groups, length, dim).transpose(0, 1) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, scale=scaling)            # [G, H, L, d]
        return out.transpose(1, 2).reshape(1, n, heads, dim), None
    bounds = cu_seq_lens_q.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], scale=scaling)
            for a, b in zip(bounds[:-1], bounds[1:])]
    return torch.cat(outs, dim=2).transpose(1, 2), None


def use_packed_vision_attention(model: nn.Module) -> None:
    """Switch the vision tower of a Qwen3-VL model from `sdpa` to `packed_sdpa` (other choices,
    e.g. a real flash-attention install, are left alone)."""
    AttentionInterface.register(NAME, packed_sdpa)
    visual = model.model.visual
    if visual.config._attn_implementation == "sdpa":
        visual.config._attn_implementation = NAME
