"""The hybrid TTT attention layer: sliding-window attention + SwiGLU fast weights sharing q/k/v.

`TTTAttention` replaces `self_attn` of a Qwen3-VL decoder layer and keeps the original attention
module as `attn_layer`, so state-dict names match the released checkpoints (REFERENCE_SPEC §2.2,
§8). The module holds parameters and the per-token maths only; the streaming bookkeeping (window
cache, pending chunk, conv carry) lives in `streaming.py` and the state in `state.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm, apply_rotary_pos_emb

from .config import SpatialTTTConfig


def inv_softplus(y: float) -> float:
    """x with softplus(x) = y."""
    return y + math.log(-math.expm1(-y))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class TTTAttention(nn.Module):
    """SWA + fast-weight branch of one decoder layer (parameters named as the released code)."""

    def __init__(self, attn_layer: nn.Module, config: SpatialTTTConfig, text_config: object) -> None:
        super().__init__()
        self.attn_layer = attn_layer
        self.layer_idx = attn_layer.layer_idx
        self.head_dim = attn_layer.head_dim
        self.num_heads = text_config.num_attention_heads
        self.num_kv_heads = text_config.num_key_value_heads
        self.n_rep = self.num_heads // self.num_kv_heads
        d_model = text_config.hidden_size
        channels = self.num_heads * self.head_dim
        if channels != d_model:
            # The fast-head split and conv channel count assume it (REFERENCE_SPEC §10.3).
            raise ValueError(f"TTT layers need num_attention_heads*head_dim == hidden_size, "
                             f"got {self.num_heads}*{self.head_dim} != {d_model}")
        if channels % config.num_fw_heads:
            raise ValueError(f"num_fw_heads={config.num_fw_heads} must divide {channels} channels")
        self.n_fw = config.num_fw_heads
        self.d_fw = channels // self.n_fw
        self.d_h = int(self.d_fw * config.inter_multi)
        if self.head_dim > self.d_fw:
            raise ValueError(f"head_dim {self.head_dim} must be <= fast-head width {self.d_fw} (partial RoPE)")
        self.config = config
        self.lr_offset = inv_softplus(config.base_lr)

        self.w0 = nn.Parameter(torch.randn(self.n_fw, self.d_h, self.d_fw) / math.sqrt(self.d_fw))
        self.w1 = nn.Parameter(torch.randn(self.n_fw, self.d_fw, self.d_h) / math.sqrt(self.d_h))
        self.w2 = nn.Parameter(torch.randn(self.n_fw, self.d_h, self.d_fw) / math.sqrt(self.d_fw))
        self.lr_proj = nn.Linear(d_model, 3 * self.n_fw)
        self.q_scale = nn.Parameter(torch.ones(channels))
        self.q_offset = nn.Parameter(torch.zeros(channels))
        self.k_scale = nn.Parameter(torch.ones(channels))
        self.k_offset = nn.Parameter(torch.zeros(channels))
        self.ttt_scale_proj = nn.Linear(d_model, self.n_fw)
        nn.init.zeros_(self.ttt_scale_proj.weight)
        nn.init.zeros_(self.ttt_scale_proj.bias)
        self.ttt_norm = Qwen3VLTextRMSNorm(self.d_fw, eps=1e-5)
        self.momentum_proj = nn.Sequential(nn.Linear(d_model, self.n_fw), nn.Sigmoid())
        if config.use_conv:
            def conv() -> nn.Conv3d:
                layer = nn.Conv3d(channels, channels, 3, padding=1, groups=channels, bias=False,
                                  padding_mode="replicate")
                nn.init.dirac_(layer.weight)
                return layer
            self.conv_q, self.conv_k, self.conv_v = conv(), conv(), conv()

    # ---------------------------------------------------------------- projections
    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [n, d] -> q_hat [n, Hq, hd], k_hat [n, Hkv, hd] (q/k RMS-normed, no RoPE), v [n, Hkv, hd]."""
        attn = self.attn_layer
        n = x.shape[0]
        q = attn.q_norm(attn.q_proj(x).view(n, -1, self.head_dim))
        k = attn.k_norm(attn.k_proj(x).view(n, -1, self.head_dim))
        v = attn.v_proj(x).view(n, -1, self.head_dim)
        return q, k, v

    def raw_fast_inputs(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """GQA-expand k/v, per-channel affine on q/k -> [3, n, C] (q', k', v') before the conv."""
        n = q.shape[0]
        k = k.repeat_interleave(self.n_rep, dim=1).reshape(n, -1)
        v = v.repeat_interleave(self.n_rep, dim=1).reshape(n, -1)
        q = q.reshape(n, -1) * self.q_scale + self.q_offset
        k = k * self.k_scale + self.k_offset
        return torch.stack((q, k, v))

    def conv_groups(self, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """SP conv of k consecutive frame groups given their outer neighbours.

        prev, nxt: [3, h*w, C] raw q', k', v' of the groups before and after; cur: [3, k, h*w, C].
        Returns [3, k, h*w, C]. Replicate padding in time is the caller passing the first/last group
        as a missing neighbour; spatial replicate padding is done here; taps are the modules' weights
        (cross-correlation).
        """
        h, w = hw
        k = cur.shape[1]
        frames = torch.cat((prev[:, None], cur, nxt[:, None]), dim=1)   # [3, k+2, h*w, C]
        out = []
        for i, conv in enumerate((self.conv_q, self.conv_k, self.conv_v)):
            vol = frames[i].reshape(k + 2, h, w, -1).permute(3, 0, 1, 2)[None]  # [1, C, k+2, h, w]
            vol = F.pad(vol, (1, 1, 1, 1, 0, 0), mode="replicate")
            y = F.conv3d(vol, conv.weight, groups=vol.shape[1])           # [1, C, k, h, w]
            out.append(y[0].permute(1, 2, 3, 0).reshape(k, h * w, -1))
        return torch.stack(out)

    def fast_qkv(self, raw: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[3, n, C] (post conv) -> q, k, v [H, n, D]: head split, SiLU, L2 norm, partial RoPE (in fp32;
        returned in bf16 when config.fw_precision is "bf16").

        cos/sin: [n, hd] of the model's rotary embedding (same tensors as the SWA branch).
        """
        n = raw.shape[1]
        q, k, v = (t.float().reshape(n, self.n_fw, self.d_fw).transpose(0, 1) for t in raw)
        if self.config.qkv_silu:
            q, k = F.silu(q), F.silu(k)
            if not self.config.no_v_silu:
                v = F.silu(v)
        q = q / (q.norm(dim=-1, keepdim=True) + 1e-5)
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
        hd = self.head_dim
        cos, sin = cos.float(), sin.float()
        q = torch.cat((q[..., :hd] * cos + _rotate_half(q[..., :hd]) * sin, q[..., hd:]), dim=-1)
        k = torch.cat((k[..., :hd] * cos + _rotate_half(k[..., :hd]) * sin, k[..., hd:]), dim=-1)
        if self.config.fw_precision == "bf16":
            return q.bfloat16(), k.bfloat16(), v.bfloat16()
        return q, k, v

    def lr_and_momentum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [n, d] -> per-token rates [H, n, 3] and momentum coefficients [H, n, 1], fp32."""
        n = x.shape[0]
        lr = F.softplus(self.lr_proj(x).float() + self.lr_offset).view(n, self.n_fw, 3).transpose(0, 1)
        mu = self.momentum_proj(x).float().T.unsqueeze(-1)
        return lr.contiguous(), mu.contiguous()

    def ttt_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Fast-weight output o [H, n, D] fp32 -> RMSNorm x per-token per-head SiLU gate -> [n, C]."""
        gate = F.silu(self.ttt_scale_proj(x).float()).T.unsqueeze(-1)   # [H, n, 1]
        o = self.ttt_norm(o) * gate
        return o.transpose(0, 1).reshape(o.shape[1], -1).to(x.dtype)

    @staticmethod
    def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard RoPE of the SWA branch: q [n, Hq, hd], k [n, Hkv, hd] -> [Hq, n, hd], [Hkv, n, hd]."""
        q, k = apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos[None], sin[None])
        return q[0], k[0]
