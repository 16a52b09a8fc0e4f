"""The decoder's per-layer maths through the fused kernels of `kernels/` (Triton on CUDA).

Each function computes exactly what the module method it names does (`TTTAttention.project`,
`fast_qkv`, `lr_and_momentum`, `ttt_output`, HF's RMSNorm, and the SP conv of the layer's
conv_q/k/v modules), in fewer kernel launches: the streaming
decoder is bound by launches when it decodes one token at a time. The one-pass reference keeps
calling the module methods, so on CUDA the streaming == one-pass test also checks these paths.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels import fast_qkv_prep, lr_momentum, rms_norm, sp_conv, ttt_gate_output
from .ttt_layer import TTTAttention, project_qkv


class FusedLayerOps:
    """Fused versions of the layer maths, with the kernel backend of the config."""

    def __init__(self, backend: str, fw_dtype: torch.dtype) -> None:
        self.backend = backend
        self.fw_dtype = fw_dtype
        self._side: dict[int, tuple[tuple, torch.Tensor, torch.Tensor]] = {}
        self._conv: dict[int, tuple[tuple, torch.Tensor]] = {}

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """An HF Qwen3VLTextRMSNorm module applied to x."""
        return rms_norm(x, module.weight, module.variance_epsilon, backend=self.backend)

    def project(self, attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`project_qkv` of an HF attention module (a TTT layer's `attn_layer`, or an anchor's) with
        the fused RMSNorm."""
        return project_qkv(attn, x, self.norm)

    def fast_qkv(self, attn: TTTAttention, raw: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = attn.config
        return fast_qkv_prep(raw, cos, sin, num_heads=attn.n_fw, silu_qk=cfg.qkv_silu,
                             silu_v=cfg.qkv_silu and not cfg.no_v_silu, out_dtype=self.fw_dtype, backend=self.backend)

    def side(self, attn: TTTAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """lr [H, n, 3], mu [H, n, 1] (fp32) and the output gate's logits [n, H]: the three small
        projections of x (lr_proj, momentum_proj, ttt_scale_proj) as one matmul."""
        weight, bias = self._side_weights(attn)
        logits = torch.nn.functional.linear(x, weight, bias)
        h = attn.n_fw
        lr, mu = lr_momentum(logits[:, :3 * h], logits[:, 3 * h:4 * h], attn.lr_offset, backend=self.backend)
        return lr, mu, logits[:, 4 * h:]

    def gate_output(self, attn: TTTAttention, o: torch.Tensor, gate_logits: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
        return ttt_gate_output(o, attn.ttt_norm.weight, gate_logits, attn.ttt_norm.variance_epsilon, dtype,
                               backend=self.backend)

    def conv(self, attn: TTTAttention, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor,
             hw: tuple[int, int]) -> torch.Tensor:
        """The SP conv (REFERENCE_SPEC §5.3) of k frame groups given their neighbours, with the layer's
        conv_q/k/v taps."""
        mods = (attn.conv_q, attn.conv_k, attn.conv_v)
        key = tuple((m.weight.data_ptr(), m.weight._version) for m in mods)
        cached = self._conv.get(id(attn))
        if cached is None or cached[0] != key:
            weight = torch.stack([m.weight.detach().reshape(m.weight.shape[0], 27) for m in mods])
            cached = self._conv[id(attn)] = (key, weight)
        return sp_conv(prev, cur, nxt, cached[1], hw, backend=self.backend)

    def _side_weights(self, attn: TTTAttention) -> tuple[torch.Tensor, torch.Tensor]:
        mods = (attn.lr_proj, attn.momentum_proj[0], attn.ttt_scale_proj)
        params = [p for m in mods for p in (m.weight, m.bias)]
        # Rebuilt when a parameter is replaced or changed in place (checkpoint load, training step).
        key = tuple((p.data_ptr(), p._version) for p in params)
        cached = self._side.get(id(attn))
        if cached is None or cached[0] != key:
            weight = torch.cat([m.weight.detach() for m in mods])
            bias = torch.cat([m.bias.detach() for m in mods])
            cached = self._side[id(attn)] = (key, weight, bias)
        return cached[1], cached[2]
