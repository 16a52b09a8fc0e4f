"""Answer tokens after the first over static buffers, replayed as one CUDA graph per token.

After ask()'s prefill (held frame groups + question, eager), every further answer token runs the
whole stack for one query. Eagerly that is ~45 small kernels per layer launched from Python, and
the decode is bound by those launches (40-70 ms per token for the 2B model on an H100 host,
benchmarks/results/engine.md). Here one token's work is laid out over buffers whose shapes do
not change from token to token, so it is captured once and replayed:

* TTT layers: the sliding window is a ring of W slots (attention does not depend on key order; a
  mask hides the slots a window that is not full yet has not filled). The fast weights are copied
  in; the token's own fast k/v/rates are not kept, because they only matter to the next chunk
  update, which must not fall inside the decoded tokens (`fits` refuses such asks; they decode
  eagerly) and which the discarded fork never makes afterwards.
* Anchor layers attend over their cache buffer (shared with the memory and written past its
  length, as the eager path does) up to its capacity, with a length mask.
* The step counter, rope positions, the embedding of the previous token and the greedy argmax stay
  on the device: a replay needs no input from the host, which only reads the token back (for EOS).

`mode="static"` runs the same step without capturing it: that is how CPU tests check the
bookkeeping against the eager decode; `mode="graph"` (CUDA) captures it. A capture is reused
while the anchor buffers stay the same (they move only when they grow, by doubling).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..kernels import fw_apply
from .config import DECODE_MODES
from .state import AnchorLayerState, MemoryState, TTTLayerState
from .streaming import Decoder
from .ttt_layer import TTTAttention

log = logging.getLogger(__name__)


def resolve_decode_mode(requested: str, device: torch.device) -> str:
    """"auto" is "graph" on CUDA and "off" (the eager decode) elsewhere; "graph" needs CUDA."""
    if requested not in DECODE_MODES:
        raise ValueError(f"decode_graph must be one of {DECODE_MODES}, got {requested!r}")
    if requested == "auto":
        return "graph" if device.type == "cuda" else "off"
    if requested == "graph" and device.type != "cuda":
        raise ValueError(f"decode_graph 'graph' needs a CUDA device, the model is on {device.type}")
    return requested


class StaticDecode:
    """One-token decode steps of `decoder` over static buffers (see the module docstring)."""

    def __init__(self, decoder: Decoder, mode: str) -> None:
        if mode not in ("graph", "static"):
            raise ValueError(f"StaticDecode mode must be 'graph' or 'static', got {mode!r}")
        self.dec, self.mode = decoder, mode
        cfg, dev = decoder.config, decoder.param.device
        self.window = cfg.window_size
        self.ttt: dict[int, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}
        self.anchors: dict[int, AnchorLayerState] = {}
        # step, window length, anchor length, rope position at the first step (device, long)
        self.meta = torch.zeros(4, dtype=torch.long, device=dev)
        self.token = torch.zeros(1, dtype=torch.long, device=dev)
        self.logits: torch.Tensor | None = None
        self.ring_slots = torch.arange(self.window, device=dev)
        self.anchor_slots: dict[int, torch.Tensor] = {}
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple | None = None
        self.captures = 0
        self.capture_error = ""
        self._out_dtype = _bmm_out_dtype_works(decoder.param)

    def _scores(self, q: torch.Tensor, k_t: torch.Tensor) -> torch.Tensor:
        """q [B, r, hd] @ k_t [B, hd, m] -> fp32 [B, r, m], without an fp32 copy of the keys where
        the device's bmm can write fp32 from bf16/fp16 inputs."""
        if q.dtype == torch.float32:
            return torch.bmm(q, k_t)
        if self._out_dtype:
            return torch.bmm(q, k_t, out_dtype=torch.float32)
        return torch.bmm(q.float(), k_t.float())

    # ------------------------------------------------------------ setting up an ask
    def fits(self, state: MemoryState, steps: int) -> bool:
        """True when `steps` tokens can be decoded here: no fast-weight update falls among them and
        no frame group is still held back (ask() drains them before decoding)."""
        ttt = [s for s in state.layers if isinstance(s, TTTLayerState)]
        if any(s.held is not None for s in ttt):
            return False
        if len({s.length for s in state.layers if isinstance(s, AnchorLayerState)}) > 1:
            return False  # not drained: layers at different tokens
        return not ttt or ttt[0].pending_k.shape[1] + steps <= self.dec.config.chunk_size

    def begin(self, state: MemoryState, first_token: int, steps: int) -> None:
        """Load `state` (a drained fork) for up to `steps` decode steps whose first input is
        `first_token`. Anchor buffers without room for `steps` more tokens grow (new buffers in
        `state`, as the eager decoder grows them)."""
        self._reserve(state, steps)
        self.anchors = {i: s for i, s in enumerate(state.layers) if isinstance(s, AnchorLayerState)}
        key = tuple((i, s.k.data_ptr(), s.v.data_ptr(), s.k.shape[1]) for i, s in self.anchors.items())
        if key != self._key:
            self._allocate(state)
        self._load(state, first_token)
        if self.mode == "graph" and key != self._key:
            try:
                self._capture(state, first_token)
            except Exception as exc:  # noqa: BLE001 - any capture failure: decode uncaptured from now on
                self._graph, self.mode = None, "static"
                self.capture_error = f"{type(exc).__name__}: {exc}"
                log.warning("CUDA graph capture failed (%s); decoding without graphs", self.capture_error)
                self._load(state, first_token)
        self._key = key

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one token: (logits [vocab] fp32, next token [1]) in the static buffers."""
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step()
        return self.logits, self.token

    def _reserve(self, state: MemoryState, steps: int) -> None:
        for st in state.layers:
            if isinstance(st, AnchorLayerState):
                st.reserve(st.length + steps, self.dec.anchor_limit)

    def _allocate(self, state: MemoryState) -> None:
        self._graph = None
        for idx, st in enumerate(state.layers):
            if isinstance(st, TTTLayerState) and idx not in self.ttt:
                attn: TTTAttention = self.dec.layers[idx].self_attn
                shape = (attn.num_kv_heads, self.window, attn.head_dim)
                ring_k = st.window_k.new_zeros(shape)
                self.ttt[idx] = (ring_k, torch.zeros_like(ring_k), [torch.empty_like(w) for w in st.fast.w])
        # Anchor layers hold the same tokens once drained, but grew at different moments of the
        # wavefront, so their buffers can differ in capacity: one slot index per capacity.
        self.anchor_slots = {cap: torch.arange(cap, device=self.meta.device)
                             for cap in {s.k.shape[1] for s in self.anchors.values()}}

    def _load(self, state: MemoryState, first_token: int) -> None:
        lw = lengths = 0
        for idx, st in enumerate(state.layers):
            if isinstance(st, TTTLayerState):
                ring_k, ring_v, fw = self.ttt[idx]
                lw = st.window_k.shape[1]
                ring_k[:, :lw].copy_(st.window_k)
                ring_v[:, :lw].copy_(st.window_v)
                for mine, theirs in zip(fw, st.fast.w):
                    mine.copy_(theirs)
            else:
                lengths = st.length
        self.meta.copy_(torch.tensor([0, lw, lengths, state.next_position], dtype=torch.long))
        self.token.fill_(first_token)

    def _capture(self, state: MemoryState, first_token: int) -> None:
        """Warm up (Triton compiles, cuBLAS picks kernels) on a side stream, reload the state the
        warm-up steps moved on, capture one step."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._load(state, first_token)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls from other threads (a node's status timer) do not break it
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # records, does not run
            self._step()
        self._graph = graph
        self.captures += 1

    # ------------------------------------------------------------ one token
    @torch.no_grad()
    def _step(self) -> None:
        dec = self.dec
        step = self.meta[0:1]
        hidden = dec.text.embed_tokens(self.token)
        position = (self.meta[3:4] + step).expand(3, 1)
        cos, sin = dec.text.rotary_emb(hidden, position[:, None, :])
        cos, sin = cos[0], sin[0]
        seen = self.meta[1:2] + step          # window tokens before this one
        ring_slot = seen % self.window
        ring_mask = self.ring_slots <= seen
        anchor_slot = self.meta[2:3] + step
        anchor_masks = {cap: slots <= anchor_slot for cap, slots in self.anchor_slots.items()}
        for idx, layer in enumerate(dec.layers):
            if idx in self.ttt:
                out = self._ttt(layer, self.ttt[idx], hidden, cos, sin, ring_slot, ring_mask)
            else:
                st = self.anchors[idx]
                out = self._anchor(layer, st.k, st.v, hidden, cos, sin, anchor_slot, anchor_masks[st.k.shape[1]])
            hidden = hidden + out
            hidden = hidden + layer.mlp(dec.ops.norm(layer.post_attention_layernorm, hidden))
        logits = dec.model.lm_head(dec.ops.norm(dec.text.norm, hidden))[0].float()
        if self.logits is None:
            self.logits = torch.empty_like(logits)
        self.logits.copy_(logits)
        self.token.copy_(logits.argmax().view(1))
        self.meta[0:1].add_(1)

    def _attend(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """q [Hq, 1, hd] against k/v [Hkv, m, hd] where mask [m] (the query heads sharing a KV head
        folded into rows, as the eager n == 1 path does), as two batched matmuls and a softmax.

        Not SDPA: with a mask only its memory-efficient kernel applies, which runs one thread
        block per (head, query block), i.e. 8 blocks reading a 100k-key cache: 84% of a replay's
        GPU time, ~0.8 ms per layer (measured, H100). The matmuls spread over the whole GPU. The
        numerics follow flash attention's: fp32 scores from bf16 inputs, fp32 softmax, the
        probabilities rounded to the value dtype for the second product (fp32 accumulation)."""
        hkv, _, hd = k.shape
        scores = self._scores(q.view(hkv, -1, hd), k.transpose(1, 2)) * attn.scaling
        probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(probs.to(v.dtype), v).reshape(1, -1)

    def _anchor(self, layer: nn.Module, cache_k: torch.Tensor, cache_v: torch.Tensor, hidden: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ops, attn = self.dec.ops, layer.self_attn
        q, k, v = ops.project(attn, ops.norm(layer.input_layernorm, hidden))
        q, k = TTTAttention.rope(q, k, cos, sin)
        cache_k.index_copy_(1, slot, k)
        cache_v.index_copy_(1, slot, v.transpose(0, 1))
        return attn.o_proj(self._attend(attn, q, cache_k, cache_v, mask))

    def _ttt(self, layer: nn.Module, bufs: tuple, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             slot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ops, attn = self.dec.ops, layer.self_attn
        ring_k, ring_v, fw = bufs
        x = ops.norm(layer.input_layernorm, hidden)
        q_hat, k_hat, v = ops.project(attn.attn_layer, x)
        q_rot, k_rot = attn.rope(q_hat, k_hat, cos, sin)
        ring_k.index_copy_(1, slot, k_rot)
        ring_v.index_copy_(1, slot, v.transpose(0, 1))
        swa = self._attend(attn.attn_layer, q_rot, ring_k, ring_v, mask)
        q, _, _ = ops.fast_qkv(attn, attn.raw_fast_inputs(q_hat, k_hat, v), cos, sin)
        _, _, gate_logits = ops.side(attn, x)
        ttt = ops.gate_output(attn, fw_apply(*fw, q, backend=self.dec.backend), gate_logits, x.dtype)
        return attn.attn_layer.o_proj(swa + ttt)


def _bmm_out_dtype_works(param: torch.Tensor) -> bool:
    """Whether torch.bmm(..., out_dtype=float32) runs for this device and dtype (CUDA, recent torch)."""
    if param.dtype == torch.float32:
        return False
    try:
        a = torch.zeros(1, 1, 8, device=param.device, dtype=param.dtype)
        return torch.bmm(a, a.transpose(1, 2), out_dtype=torch.float32).dtype == torch.float32
    except (RuntimeError, TypeError, NotImplementedError):
        return False
