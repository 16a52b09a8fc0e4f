"""Plain PyTorch reference of the elementwise chains around the fast weights (README.md, section 6).

These are, op for op, the current maths of ``runtime/ttt_layer.py`` (``TTTAttention.fast_qkv``,
``ttt_output``, ``lr_and_momentum``) and of HF ``Qwen3VLTextRMSNorm.forward``; the Triton versions are
checked against them, so nothing here may be regrouped. Inputs are assumed validated (``kernels.ops``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(
    x: torch.Tensor,  # [..., N]
    weight: torch.Tensor,  # [N]
    eps: float,
) -> torch.Tensor:  # [..., N] in the promotion of (weight.dtype, x.dtype)
    """HF ``Qwen3VLTextRMSNorm.forward``: normalise in fp32, round to x.dtype, then multiply by weight."""
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """cat(-x[..., half:], x[..., :half]) over the last axis."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _partial_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the first hd = cos.shape[-1] channels of x [H, n, D]; the rest passes through."""
    hd = cos.shape[-1]
    return torch.cat((x[..., :hd] * cos + rotate_half(x[..., :hd]) * sin, x[..., hd:]), dim=-1)


def fast_qkv_prep(
    raw: torch.Tensor,  # [3, n, C]: q', k', v' (post conv), C = num_heads * D
    cos: torch.Tensor,  # [n, hd], hd even and <= D
    sin: torch.Tensor,  # [n, hd]
    *,
    num_heads: int,
    silu_qk: bool,
    silu_v: bool,
    out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # q, k, v [H, n, D] contiguous, out_dtype
    """Head split, SiLU, L2 normalisation of q and k (eps on the norm), partial RoPE; all in fp32."""
    n = raw.shape[1]
    D = raw.shape[2] // num_heads
    q, k, v = (t.float().reshape(n, num_heads, D).transpose(0, 1) for t in raw)
    if silu_qk:
        q, k = F.silu(q), F.silu(k)
    if silu_v:
        v = F.silu(v)
    q = q / (q.norm(dim=-1, keepdim=True) + 1e-5)
    k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
    cos, sin = cos.float(), sin.float()
    q = _partial_rope(q, cos, sin)
    k = _partial_rope(k, cos, sin)
    return tuple(t.to(out_dtype).contiguous() for t in (q, k, v))


def ttt_gate_output(
    o: torch.Tensor,  # [H, n, D] fast-weight output
    norm_weight: torch.Tensor,  # [D] ttt_norm weight
    gate_logits: torch.Tensor,  # [n, H] ttt_scale_proj output
    eps: float,
    out_dtype: torch.dtype,
) -> torch.Tensor:  # [n, H * D] in out_dtype
    """RMSNorm of every head's output times its per-token SiLU gate, heads concatenated per token."""
    gate = F.silu(gate_logits.float()).T.unsqueeze(-1)  # [H, n, 1]
    o = rms_norm(o, norm_weight, eps) * gate
    return o.transpose(0, 1).reshape(o.shape[1], -1).to(out_dtype)


def lr_momentum(
    lr_logits: torch.Tensor,  # [n, 3H] lr_proj output
    mu_logits: torch.Tensor,  # [n, H] momentum_proj linear output, before its sigmoid
    offset: float,  # inv_softplus(base_lr)
) -> tuple[torch.Tensor, torch.Tensor]:  # lr [H, n, 3], mu [H, n, 1], fp32 contiguous
    """Per-token steps softplus(logit + offset) and momentum coefficients sigmoid(logit).

    The sigmoid runs in the logits' dtype (as ``nn.Sigmoid`` on the bf16 linear output does) and is
    converted to fp32 afterwards.
    """
    n = lr_logits.shape[0]
    H = mu_logits.shape[1]
    lr = F.softplus(lr_logits.float() + offset).view(n, H, 3).transpose(0, 1)
    mu = torch.sigmoid(mu_logits).float().T.unsqueeze(-1)
    return lr.contiguous(), mu.contiguous()
