"""The hybrid TTT attention layer: sliding-window attention + SwiGLU fast weights sharing q/k/v.

`TTTAttention` replaces `self_attn` of a Qwen3-VL decoder layer and keeps the original attention
module as `attn_layer`, so state-dict names match the released checkpoints (REFERENCE_SPEC §2.2,
§8). The module holds parameters and the per-token maths only; the streaming bookkeeping (window
cache, pending chunk, conv carry) lives in `streaming.py` and the state in `state.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm, apply_rotary_pos_emb

from ..kernels import fast_qkv_prep, lr_momentum, ttt_gate_output
from .config import SpatialTTTConfig


def inv_softplus(y: float) -> float:
    """x with softplus(x) = y."""
    return y + math.log(-math.expm1(-y))


def muon_dtype(config: SpatialTTTConfig) -> torch.dtype:
    """The dtype of Muon's Newton-Schulz for `config.muon_precision`."""
    return torch.float32 if config.muon_precision == "fp32" else torch.bfloat16


def project_qkv(attn: nn.Module, x: torch.Tensor, norm: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q/k/v projections of an HF Qwen3-VL attention module, q and k RMS-normed per head (by the
    module's q_norm/k_norm, or `norm(module, t)` in their place), no RoPE: [n, heads, hd] each."""
    norm = norm or (lambda module, t: module(t))
    n, hd = x.shape[0], attn.head_dim
    q = norm(attn.q_norm, attn.q_proj(x).view(n, -1, hd))
    k = norm(attn.k_norm, attn.k_proj(x).view(n, -1, hd))
    return q, k, attn.v_proj(x).view(n, -1, hd)


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

    def forward(self, hidden_states: torch.Tensor, *args: object, one_pass: object = None,
                **kwargs: object) -> tuple[torch.Tensor, None]:
        """The HF attention signature, for whole sequences: hidden_states [B, N, d] -> ([B, N, d], None).
        Needs the `one_pass` context of `runtime.one_pass.decoder_one_pass` (the streaming decoder
        drives the layer's pieces itself and never calls this)."""
        from .one_pass import OnePass, ttt_one_pass

        if not isinstance(one_pass, OnePass):
            raise ValueError(f"TTTAttention.forward needs one_pass=OnePass(...) (runtime/one_pass.py), got {one_pass!r}")
        return ttt_one_pass(self, hidden_states, one_pass), None

    # ---------------------------------------------------------------- projections
    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [n, d] -> q_hat [n, Hq, hd], k_hat [n, Hkv, hd] (q/k RMS-normed, no RoPE), v [n, Hkv, hd]."""
        return project_qkv(self.attn_layer, x)

    def raw_fast_inputs(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """GQA-expand k/v, per-channel affine on q/k -> [3, n, C] (q', k', v') before the conv."""
        n = q.shape[0]
        k = k.repeat_interleave(self.n_rep, dim=1).reshape(n, -1)
        v = v.repeat_interleave(self.n_rep, dim=1).reshape(n, -1)
        q = q.reshape(n, -1) * self.q_scale + self.q_offset
        k = k * self.k_scale + self.k_offset
        return torch.stack((q, k, v))

    def fast_qkv(self, raw: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[3, n, C] (post conv) -> q, k, v [H, n, D]: head split, SiLU, L2 norm, partial RoPE (in fp32;
        returned in bf16 when config.fw_precision is "bf16"); the maths is `kernels.fast_qkv_prep`'s
        PyTorch reference.

        cos/sin: [n, hd] of the model's rotary embedding (same tensors as the SWA branch).
        """
        cfg = self.config
        return fast_qkv_prep(raw, cos, sin, num_heads=self.n_fw, silu_qk=cfg.qkv_silu,
                             silu_v=cfg.qkv_silu and not cfg.no_v_silu,
                             out_dtype=torch.bfloat16 if cfg.fw_precision == "bf16" else torch.float32, backend="torch")

    def lr_and_momentum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [n, d] -> per-token rates [H, n, 3] = softplus(lr_proj(x) + offset) and momentum
        coefficients [H, n, 1] = sigmoid(momentum_proj), fp32 (`kernels.lr_momentum`)."""
        return lr_momentum(self.lr_proj(x), self.momentum_proj[0](x), self.lr_offset, backend="torch")

    def ttt_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Fast-weight output o [H, n, D] fp32 -> RMSNorm x per-token per-head SiLU gate -> [n, C]
        (`kernels.ttt_gate_output`)."""
        return ttt_gate_output(o, self.ttt_norm.weight, self.ttt_scale_proj(x), self.ttt_norm.variance_epsilon,
                               x.dtype, backend="torch")

    @staticmethod
    def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard RoPE of the SWA branch: q [n, Hq, hd], k [n, Hkv, hd] -> [Hq, n, hd], [Hkv, n, hd]."""
        q, k = apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos[None], sin[None])
        return q[0], k[0]
