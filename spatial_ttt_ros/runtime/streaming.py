"""Incremental decoder: units of tokens travel up the layers, the memory state is updated in place.

Exactness rules (each checked against the one-pass reference in tests):
* TTT layers answer every token from the fast weights of all previous complete chunks (apply,
  then update when the pending buffer reaches C tokens: REFERENCE_SPEC §4.1), plus sliding-window
  attention over the last W tokens (§2.4).
* The SP conv reads the next frame group (§5.3). A conv layer therefore holds one frame group
  until the next one has reached it; with k conv layers the top of the stack lags k groups behind
  (a wavefront). `drain` treats the newest group as the end of the video (replicate padding),
  exactly as a one-pass run over the same frames would.
* Anchor layers keep a full KV cache (up to the anchor-KV budget: anchor_budget.py).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from ..kernels import fw_apply, fw_update, init_fast_weight_state
from .anchor_budget import capacity_limit
from .band_attention import band_attention, band_works
from .config import SpatialTTTConfig
from .fused import FusedLayerOps
from .state import AnchorLayerState, MemoryState, TTTLayerState, Unit
from .ttt_layer import TTTAttention, muon_dtype

_SDPA_BACKENDS = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)
# Queries x query heads per KV head up to which an anchor layer's attention folds the heads into
# rows with an explicit mask (its bias: FOLD_ROWS x cache length, 94 MB in bf16 at 92k tokens).
FOLD_ROWS = 512


class Decoder:
    """Runs units through the wrapped Qwen3-VL text stack against a MemoryState."""

    def __init__(self, model: nn.Module, config: SpatialTTTConfig) -> None:
        self.model = model
        self.config = config
        self.text = model.model.language_model
        self.layers = list(self.text.layers)
        self.backend = config.kernel_backend
        self.param = next(model.parameters())
        self.anchor_limit = capacity_limit(config.anchor_kv_budget_tokens)
        self.ops = FusedLayerOps(self.backend, torch.bfloat16 if config.fw_precision == "bf16" else torch.float32)
        self._band: dict[tuple[torch.device, torch.dtype, int], bool] = {}  # band_works per device, dtype, head size

    # ------------------------------------------------------------ state
    def new_state(self) -> MemoryState:
        layers = []
        dev, dt = self.param.device, self.param.dtype
        for layer in self.layers:
            attn = layer.self_attn
            if isinstance(attn, TTTAttention):
                fast = init_fast_weight_state(attn.w0.detach(), attn.w1.detach(), attn.w2.detach(),
                                              use_momentum=self.config.use_momentum, prenorm=self.config.prenorm)
                f32 = dict(device=dev, dtype=torch.float32)
                act = dict(device=dev, dtype=torch.bfloat16 if self.config.fw_precision == "bf16" else torch.float32)
                layers.append(TTTLayerState(
                    fast=fast, pending_k=torch.zeros(attn.n_fw, 0, attn.d_fw, **act),
                    pending_v=torch.zeros(attn.n_fw, 0, attn.d_fw, **act),
                    pending_lr=torch.zeros(attn.n_fw, 0, 3, **f32), pending_mu=torch.zeros(attn.n_fw, 0, 1, **f32),
                    window_k=torch.zeros(attn.num_kv_heads, 0, attn.head_dim, device=dev, dtype=dt),
                    window_v=torch.zeros(attn.num_kv_heads, 0, attn.head_dim, device=dev, dtype=dt)))
            else:
                kv = (attn.config.num_key_value_heads, 0, attn.head_dim)
                layers.append(AnchorLayerState(k=torch.zeros(kv, device=dev, dtype=dt),
                                               v=torch.zeros(kv, device=dev, dtype=dt)))
        return MemoryState(layers=layers)

    # ------------------------------------------------------------ driving units through the stack
    @torch.no_grad()
    def run(self, state: MemoryState, units: list[Unit], *, drain: bool = False) -> list[Unit]:
        """Feed `units` (in order) at the bottom; return the units that left the top layer (final
        norm not yet applied: see `logits`). With `drain`, every held frame group is finished as the
        end of its video on the way up."""
        for idx, layer in enumerate(self.layers):
            out: list[Unit] = []
            for unit in _coalesce(units, drain):
                out += self._feed(idx, layer, state.layers[idx], unit, drain)
            if drain:
                out += self._drain(idx, layer, state.layers[idx])
            units = out
        return units

    def _feed(self, idx: int, layer: nn.Module, st: TTTLayerState | AnchorLayerState, unit: Unit,
              drain: bool = False) -> list[Unit]:
        if isinstance(st, AnchorLayerState):
            return [self._finish_layer(idx, layer, unit, self._anchor(layer, st, unit))]
        if not self.config.use_conv:
            return [self._finish_layer(idx, layer, unit, self._ttt(layer, st, unit, None))]
        emitted = []
        if st.held is not None:
            if unit.has_video and unit.segment == st.held.segment:
                # The held group continues into this unit: process them as one run so units keep
                # their size on the way up (no fragmentation of batched ingest).
                unit, st.held = _concat(st.held, unit), None
            else:
                emitted.append(self._release(idx, layer, st, None))  # end of its video
        if not unit.has_video or drain:
            # Text, or the end of the video (drain: the last group is its own look-ahead).
            emitted.append(self._finish_layer(idx, layer, unit, self._ttt(layer, st, unit, None)))
            return emitted
        # Everything before the last frame group can go now (its look-ahead is that group); the
        # last group waits for the next one.
        head, tail = _split_last_group(unit)
        if head is not None:
            nxt = self._raw(layer, tail).index_select(1, tail.video_index) if head.has_video else None
            emitted.append(self._finish_layer(idx, layer, head, self._ttt(layer, st, head, nxt)))
        st.held = _owned_unit(tail)
        return emitted

    def _drain(self, idx: int, layer: nn.Module, st: TTTLayerState | AnchorLayerState) -> list[Unit]:
        if isinstance(st, TTTLayerState) and st.held is not None:
            return [self._release(idx, layer, st, None)]
        return []

    def _release(self, idx: int, layer: nn.Module, st: TTTLayerState, nxt: torch.Tensor | None) -> Unit:
        unit, st.held = st.held, None
        return self._finish_layer(idx, layer, unit, self._ttt(layer, st, unit, nxt))

    def _finish_layer(self, idx: int, layer: nn.Module, unit: Unit, attn_out: torch.Tensor) -> Unit:
        hidden = unit.hidden + attn_out
        hidden = hidden + layer.mlp(self.ops.norm(layer.post_attention_layernorm, hidden))
        deepstack = unit.deepstack
        if idx < len(deepstack) and unit.has_video:
            hidden = hidden.index_add(0, unit.video_index, deepstack[idx].to(hidden.dtype))
        if idx + 1 >= len(deepstack):
            deepstack = []
        return Unit(hidden=hidden, position_ids=unit.position_ids, start=unit.start, video=unit.video,
                    hw=unit.hw, segment=unit.segment, deepstack=deepstack, group_starts=unit.group_starts,
                    video_index=unit.video_index, rope=unit.rope)

    # ------------------------------------------------------------ attention kinds
    def _rope(self, unit: Unit) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) [n, hd]: one rotary module serves every layer, so a unit computes them once."""
        if unit.rope is None:
            cos, sin = self.text.rotary_emb(unit.hidden, unit.position_ids[:, None, :])
            unit.rope = (cos[0], sin[0])
        return unit.rope

    def _raw(self, layer: nn.Module, unit: Unit) -> torch.Tensor:
        attn: TTTAttention = layer.self_attn
        return attn.raw_fast_inputs(*self.ops.project(attn.attn_layer, self.ops.norm(layer.input_layernorm, unit.hidden)))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int, k_start: int,
                window: int | None, scaling: float) -> torch.Tensor:
        """q [Hq, n, hd] at global positions q_start.., k/v [Hkv, m, hd] at k_start.. -> [n, Hq*hd].

        The last key is the last query's own position (keys are the cache + this unit), so plain
        causal attention is the lower-right aligned kind; a window cuts off the oldest keys."""
        n, hq, hkv = q.shape[1], q.shape[0], k.shape[0]
        rep = hq // hkv
        if n == 1 or rep > 1 and window is None and n * rep <= FOLD_ROWS:
            # One query (the window's last W keys), or few (a question, an answer's text) against
            # the whole cache: the query heads sharing a KV head become rows of one call per KV
            # head, with the causal mask per row when there are several queries (FOLD_ROWS bounds
            # it). No copy of the cache, and the many keys are split over the kernel's blocks
            # (flash with GQA runs one block per head here: on an H100 it added ~55 ms to a
            # question at 1024 frames, benchmarks/results/memory_h100_20261207).
            if window is not None:  # n == 1
                k, v = k[:, -window:], v[:, -window:]
            m, hd = k.shape[1], q.shape[2]
            mask = None
            if n > 1:
                rows = torch.arange(m - n, m, device=q.device).repeat(rep)[:, None]
                mask = (torch.arange(m, device=q.device)[None, :] <= rows)[None, None]
            with sdpa_kernel(list(_SDPA_BACKENDS)):
                out = F.scaled_dot_product_attention(q.reshape(hkv, rep * n, hd)[None], k[None], v[None],
                                                     attn_mask=mask, scale=scaling)
            return out[0].reshape(hq, n, hd).transpose(0, 1).reshape(n, -1)
        if rep > 1 and window is None and (q.device.type == "cpu" or q.dtype in (torch.float16, torch.bfloat16)):
            # A long unit against the whole cache (an anchor layer's ingest): the kernel shares each
            # KV head among its query heads (GQA) instead of a repeated copy of the cache (2 x 0.38
            # GiB per call at 1024 frames on the 2B model). On CUDA that is the flash kernel, for
            # half types only; fp32 keeps the copy and the memory-efficient kernel.
            return _sdpa(q, k, v, q_start, k_start, None, scaling, gqa=True)
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
        block = None if window is None else max(1, window // 2)
        if window is None or k.shape[1] <= window or n <= block:
            return _sdpa(q, k, v, q_start, k_start, window, scaling)
        # A long unit against a window: query blocks of W/2 tokens, each against the keys it can
        # see (W/2 + W - 1 of them), instead of every query against every key of the unit; a block
        # with its whole band in the keys runs as flash calls without a mask (band_attention.py).
        key = (q.device, q.dtype, q.shape[-1])
        if key not in self._band:
            self._band[key] = band_works(q)
        band = self._band[key]
        outs = []
        for s in range(0, n, block):
            e = min(n, s + block)
            first = q_start + s - window + 1 - k_start
            hi = q_start + e - k_start
            if band and first >= 0 and e - s < window:
                outs.append(band_attention(q[:, s:e], k[:, first:hi], v[:, first:hi], window, scaling))
            else:
                lo = max(0, first)
                outs.append(_sdpa(q[:, s:e], k[:, lo:hi], v[:, lo:hi], q_start + s, k_start + lo, window, scaling))
        return torch.cat(outs)

    def _anchor(self, layer: nn.Module, st: AnchorLayerState, unit: Unit) -> torch.Tensor:
        attn = layer.self_attn
        q, k, v = self.ops.project(attn, self.ops.norm(layer.input_layernorm, unit.hidden))
        n = q.shape[0]
        cos, sin = self._rope(unit)
        q, k = TTTAttention.rope(q, k, cos, sin)
        # Append into a growing buffer (amortised doubling) instead of re-concatenating the whole
        # cache per unit. Writes land past `length`, which forks sharing the buffer never read
        # once the parent moves on (ask() discards its fork before the next push).
        end = st.length + n
        st.reserve(end, self.anchor_limit)
        st.k[:, st.length:end] = k
        st.v[:, st.length:end] = v.transpose(0, 1)
        st.length = end
        # anchor_window_only (an ablation): the anchor sees only the last W tokens, like the SWA branch.
        window = self.config.window_size if self.config.anchor_window_only else None
        out = self._attend(q, st.k[:, :end], st.v[:, :end], st.tokens_seen, 0, window, attn.scaling)
        st.tokens_seen += n
        return attn.o_proj(out)

    def _ttt(self, layer: nn.Module, st: TTTLayerState, unit: Unit, nxt: torch.Tensor | None) -> torch.Tensor:
        attn: TTTAttention = layer.self_attn
        cfg = self.config
        x = self.ops.norm(layer.input_layernorm, unit.hidden)
        n = x.shape[0]
        q_hat, k_hat, v = self.ops.project(attn.attn_layer, x)
        cos, sin = self._rope(unit)

        # Sliding-window attention over the cached window + this unit.
        q_rot, k_rot = attn.rope(q_hat, k_hat, cos, sin)
        keys = torch.cat((st.window_k, k_rot), dim=1)
        values = torch.cat((st.window_v, v.transpose(0, 1)), dim=1)
        swa = self._attend(q_rot, keys, values, st.tokens_seen, st.tokens_seen - st.window_k.shape[1],
                           cfg.window_size, attn.attn_layer.scaling)
        st.window_k, st.window_v = _own(keys[:, -cfg.window_size:]), _own(values[:, -cfg.window_size:])

        # Fast-weight branch inputs, with the SP conv on the visual tokens.
        raw = attn.raw_fast_inputs(q_hat, k_hat, v)
        if cfg.use_conv and unit.has_video:
            groups = len(unit.group_starts)
            cur = raw.index_select(1, unit.video_index).reshape(3, groups, unit.hw[0] * unit.hw[1], -1)
            same_segment = st.conv_prev is not None and st.conv_prev_segment == unit.segment
            prev = st.conv_prev if same_segment else cur[:, 0]
            conv = self.ops.conv(attn, prev, cur, cur[:, -1] if nxt is None else nxt, unit.hw)
            raw = raw.index_copy(1, unit.video_index, conv.flatten(1, 2))
            st.conv_prev, st.conv_prev_segment = _own(cur[:, -1]), unit.segment
        q, k, v_fw = self.ops.fast_qkv(attn, raw, cos, sin)
        lr, mu, gate_logits = self.ops.side(attn, x)

        if cfg.decode_update_rule == "official" and st.prompt_end is not None and st.tokens_seen == st.prompt_end:
            # The first decode step under the reference's rule (REFERENCE_SPEC §6.4): output from
            # the current weights, then one update with the last C prompt tokens, then pending
            # holds this token alone.
            out = fw_apply(*st.fast.w, q, backend=self.backend)
            if st.tail_k is not None and st.tail_k.shape[1] == cfg.chunk_size and cfg.ttt_updates:
                st.fast = fw_update(st.fast, st.tail_k, st.tail_v, st.tail_lr, st.tail_mu,
                                    use_momentum=cfg.use_momentum, use_muon=cfg.use_muon, prenorm=cfg.prenorm,
                                    backend=self.backend)
                st.updates += 1
            st.pending_k, st.pending_v, st.pending_lr, st.pending_mu = k, v_fw, lr, mu
            st.prompt_end = None
            st.tokens_seen += n
            return attn.attn_layer.o_proj(swa + self.ops.gate_output(attn, out, gate_logits, x.dtype))
        if cfg.decode_update_rule == "official":  # the last C tokens, for the first decode step
            c = cfg.chunk_size
            st.tail_k = _own(k[:, -c:] if st.tail_k is None else torch.cat((st.tail_k, k), dim=1)[:, -c:])
            st.tail_v = _own(v_fw[:, -c:] if st.tail_v is None else torch.cat((st.tail_v, v_fw), dim=1)[:, -c:])
            st.tail_lr = _own(lr[:, -c:] if st.tail_lr is None else torch.cat((st.tail_lr, lr), dim=1)[:, -c:])
            st.tail_mu = _own(mu[:, -c:] if st.tail_mu is None else torch.cat((st.tail_mu, mu), dim=1)[:, -c:])

        # Apply-then-update in exact blocks of C tokens (global token index multiples of C).
        outputs = []
        i = 0
        while i < n:
            step = min(cfg.chunk_size - st.pending_k.shape[1], n - i)
            outputs.append(fw_apply(*st.fast.w, q[:, i:i + step], backend=self.backend, bf16_weights=st.fast.w_low))
            st.pending_k = torch.cat((st.pending_k, k[:, i:i + step]), dim=1)
            st.pending_v = torch.cat((st.pending_v, v_fw[:, i:i + step]), dim=1)
            st.pending_lr = torch.cat((st.pending_lr, lr[:, i:i + step]), dim=1)
            st.pending_mu = torch.cat((st.pending_mu, mu[:, i:i + step]), dim=1)
            at_prompt_end = st.prompt_end is not None and st.tokens_seen + i + step == st.prompt_end
            if st.pending_k.shape[1] == cfg.chunk_size and at_prompt_end:
                pass  # official rule: the prefill leaves a block ending at the prompt's end pending
            elif st.pending_k.shape[1] == cfg.chunk_size and not cfg.ttt_updates:
                # ttt_updates off (an ablation): the block is dropped, the fast weights stay at w0/w1/w2.
                _clear_pending(st)
            elif st.pending_k.shape[1] == cfg.chunk_size:
                st.fast = fw_update(st.fast, st.pending_k, st.pending_v, st.pending_lr, st.pending_mu,
                                    use_momentum=cfg.use_momentum, use_muon=cfg.use_muon, prenorm=cfg.prenorm,
                                    ns_dtype=muon_dtype(cfg), backend=self.backend,
                                    keep_bf16_weights=cfg.fw_precision == "bf16")
                _clear_pending(st)
                st.updates += 1
            i += step
        ttt = self.ops.gate_output(attn, torch.cat(outputs, dim=1), gate_logits, x.dtype)
        st.tokens_seen += n
        return attn.attn_layer.o_proj(swa + ttt)

    # ------------------------------------------------------------ head
    def logits(self, unit: Unit) -> torch.Tensor:
        """Final norm + LM head on the last token of a unit that left the top layer -> [vocab] fp32."""
        return self.model.lm_head(self.ops.norm(self.text.norm, unit.hidden[-1:]))[0].float()


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int, k_start: int,
          window: int | None, scaling: float, gqa: bool = False) -> torch.Tensor:
    """One attention call, q [Hq, n, hd], k/v [H, m, hd] (H == Hq, or Hq a multiple of H with `gqa`)
    -> [n, Hq*hd]; the last key is the last query's position."""
    n, m = q.shape[1], k.shape[1]
    if window is None or m <= window:
        # Causal with the diagonal at the bottom right: no mask is materialised (flash or
        # memory-efficient kernels take it as a flag), which matters against a long anchor cache.
        mask = causal_lower_right(n, m)
    else:
        qi = torch.arange(q_start, q_start + n, device=q.device)[:, None]
        ki = torch.arange(k_start, k_start + m, device=q.device)[None, :]
        mask = ((ki <= qi) & (ki > qi - window))[None, None]
    # No cuDNN: it rebuilds its execution plan for every new shape (~1.5 ms of host time per call,
    # measured on an H100), and the shapes here change with every unit.
    with sdpa_kernel(list(_SDPA_BACKENDS)):
        out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, scale=scaling, enable_gqa=gqa)
    return out[0].transpose(0, 1).reshape(n, -1)


def _own(t: torch.Tensor) -> torch.Tensor:
    """`t`, or a compact copy when it is a slice of a larger tensor: what the memory keeps must not
    pin the tensor it was cut from (a window's last W keys of window + unit, the last frame group's
    conv inputs of a whole pass). Views kept that way held ~2.5 GiB beyond the memory's parts on the
    2B model at 1024 frames (benchmarks/results/memory_h100_20261207)."""
    return t if t.untyped_storage().nbytes() <= t.numel() * t.element_size() else t.clone()


def _owned_unit(unit: Unit) -> Unit:
    """A unit kept in the memory (a held frame group) with every tensor compact (`_own`)."""
    return replace(unit, hidden=_own(unit.hidden), position_ids=_own(unit.position_ids), video=_own(unit.video),
                   deepstack=[_own(d) for d in unit.deepstack],
                   video_index=None if unit.video_index is None else _own(unit.video_index),
                   rope=None if unit.rope is None else (_own(unit.rope[0]), _own(unit.rope[1])))


def _clear_pending(st: TTTLayerState) -> None:
    """Empty the pending block (fresh empty tensors: an empty slice would pin the block)."""
    st.pending_k, st.pending_v = _own(st.pending_k[:, :0]), _own(st.pending_v[:, :0])
    st.pending_lr, st.pending_mu = _own(st.pending_lr[:, :0]), _own(st.pending_mu[:, :0])


def _split_last_group(unit: Unit) -> tuple[Unit | None, Unit]:
    """(tokens before the last frame group or None, the last frame group's tokens)."""
    at = unit.group_starts[-1]
    if at == 0:
        return None, unit
    n_video = (len(unit.group_starts) - 1) * unit.hw[0] * unit.hw[1]

    def part(sl: slice, video_sl: slice, starts: list[int], offset: int) -> Unit:
        return Unit(hidden=unit.hidden[sl], position_ids=unit.position_ids[:, sl], start=unit.start + offset,
                    video=unit.video[sl], hw=unit.hw, segment=unit.segment,
                    deepstack=[d[video_sl] for d in unit.deepstack], group_starts=starts,
                    video_index=unit.video_index[video_sl] - offset,
                    rope=None if unit.rope is None else (unit.rope[0][sl], unit.rope[1][sl]))

    head = part(slice(0, at), slice(0, n_video), unit.group_starts[:-1], 0)
    tail = part(slice(at, None), slice(n_video, None), [0], at)
    return head, tail


def _concat(a: Unit, b: Unit) -> Unit:
    """Two consecutive units at the same layer as one unit (frame groups of one video segment,
    or, when draining, text before or after them)."""
    n = len(a)
    rope = None
    if a.rope is not None and b.rope is not None:
        rope = (torch.cat((a.rope[0], b.rope[0])), torch.cat((a.rope[1], b.rope[1])))
    if a.has_video and b.has_video:
        deepstack = [torch.cat(pair) for pair in zip(a.deepstack, b.deepstack)]
    else:
        deepstack = a.deepstack if a.has_video else b.deepstack
    video = a if a.has_video else b
    return Unit(hidden=torch.cat((a.hidden, b.hidden)), position_ids=torch.cat((a.position_ids, b.position_ids), dim=1),
                start=a.start, video=torch.cat((a.video, b.video)), hw=video.hw, segment=video.segment,
                deepstack=deepstack, group_starts=a.group_starts + [g + n for g in b.group_starts],
                video_index=torch.cat((a.video_index, b.video_index + n)), rope=rope)


def _coalesce(units: list[Unit], drain: bool) -> list[Unit]:
    """Merge neighbouring units that can run as one (they are consecutive in the token stream):
    frame groups of one video segment; when draining (nothing is held back), text too. Fewer,
    larger units per layer mean fewer kernel launches for the same work."""
    out: list[Unit] = []
    for unit in units:
        prev = out[-1] if out else None
        if prev is None or prev.start + len(prev) != unit.start:
            out.append(unit)
        elif prev.has_video and unit.has_video:
            if prev.segment == unit.segment and len(prev.deepstack) == len(unit.deepstack):
                out[-1] = _concat(prev, unit)
            else:
                out.append(unit)
        elif drain:
            out[-1] = _concat(prev, unit)
        else:
            out.append(unit)
    return out
