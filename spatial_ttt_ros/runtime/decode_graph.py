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

The question itself (its tokens and the chat suffix, on a drained memory) runs the same way as
one block of Q query rows, Q the question's length rounded up to a bucket (`QUESTION_BUCKETS`,
at most the window): its keys go after the window ring in the TTT layers' attention (a mask gives
each row the last W positions, itself included) and into the anchor caches past their length (a
row sees the cache up to itself); padded rows are computed and ignored, and only the real tokens
enter the ring for the decode steps that follow. One capture per bucket, on the same buffers as
the token step. The eager question pass launches ~45 kernels per layer per unit from Python:
68 ms for the first token at 1024 frames on an H100 (benchmarks/results/engine_compare_bf16_b32.md).

`mode="static"` runs the same step without capturing it: that is how CPU tests check the
bookkeeping against the eager decode; `mode="graph"` (CUDA) captures it. A capture is reused
while the anchor buffers stay the same (they move only when they grow: state.grown_capacity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
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


QUESTION_BUCKETS = (16, 32, 64, 128, 256)  # question-pass shapes (tokens): one capture each


class StaticDecode:
    """The question pass and one-token decode steps of `decoder` over static buffers (see the
    module docstring)."""

    def __init__(self, decoder: Decoder, mode: str) -> None:
        if mode not in ("graph", "static"):
            raise ValueError(f"StaticDecode mode must be 'graph' or 'static', got {mode!r}")
        self.dec, self.mode = decoder, mode
        cfg, dev = decoder.config, decoder.param.device
        self.window = cfg.window_size
        self.ttt: dict[int, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}
        self.anchors: dict[int, AnchorLayerState] = {}
        # step, window length, anchor length, rope position at the first step, question length
        # (device, long)
        self.meta = torch.zeros(5, dtype=torch.long, device=dev)
        self.token = torch.zeros(1, dtype=torch.long, device=dev)
        self.logits: torch.Tensor | None = None
        self.ring_slots = torch.arange(self.window, device=dev)
        self.anchor_slots: dict[int, torch.Tensor] = {}
        self._graph: torch.cuda.CUDAGraph | None = None
        self._question_graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.question_ids = {b: torch.zeros(b, dtype=torch.long, device=dev) for b in QUESTION_BUCKETS}
        self.question_rows = {b: torch.arange(b, device=dev) for b in QUESTION_BUCKETS}
        self._key: tuple | None = None
        self.question_buckets = QUESTION_BUCKETS  # () runs every question eagerly (benchmarks compare)
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

    def fits_at(self, tokens: int, steps: int) -> bool:
        """Whether `steps` tokens after the first `tokens` of a stream fall before the next
        fast-weight update (updates close every block of C tokens counted from the stream's start):
        `fits` for a memory not drained yet, so that a question that will not fit is never split
        from the frames it arrives with (one eager run is cheaper than a drain plus a question)."""
        c = self.dec.config.chunk_size
        return not self.dec.config.ttt_layers or tokens % c + steps <= c

    def question_bucket(self, n: int) -> int | None:
        """The question-pass shape for `n` tokens, or None (too long: the question runs eagerly)."""
        return next((b for b in self.question_buckets if n <= b <= self.window), None)

    def begin_question(self, state: MemoryState, ids: list[int], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the question `ids` over `state` (a drained fork for which `fits(state, len(ids) +
        steps)`) and load what `steps` decode steps after it need: (logits [vocab] fp32 of its
        last token, the first answer token [1]). `state` itself is not advanced."""
        bucket = self.question_bucket(len(ids))
        if bucket is None:
            raise ValueError(f"a question of {len(ids)} tokens has no static bucket (buckets "
                             f"{self.question_buckets}, window {self.window})")
        self._key = self._prepare_buffers(state, max(bucket, len(ids) + steps))  # new buffers: no graphs
        if self.mode == "graph" and bucket not in self._question_graphs:
            self._capture_all(state, ids, bucket)
        self._load(state, 0, ids, bucket)
        graph = self._question_graphs.get(bucket)
        if graph is not None:
            graph.replay()
        else:
            self._question(bucket)
        return self.logits, self.token

    def _prepare_buffers(self, state: MemoryState, reserve: int) -> tuple:
        """Room in the anchor caches, the ring and fast-weight buffers; the key of the anchor
        buffers (captures are valid while it stays)."""
        self._reserve(state, reserve)
        self.anchors = {i: s for i, s in enumerate(state.layers) if isinstance(s, AnchorLayerState)}
        key = tuple((i, s.k.data_ptr(), s.v.data_ptr(), s.k.shape[1]) for i, s in self.anchors.items())
        if key != self._key:
            self._allocate(state)
            self._question_graphs.clear()
        return key

    def _capture_all(self, state: MemoryState, ids: list[int], bucket: int) -> None:
        """Captures of the token step (when missing) and of the question pass for `bucket`; on
        failure, both run uncaptured from now on."""
        try:
            if self._graph is None:
                self._graph = self._record(self._step, lambda: self._load(state, 0))
            self._question_graphs[bucket] = self._record(lambda: self._question(bucket),
                                                         lambda: self._load(state, 0, ids, bucket))
        except Exception as exc:  # noqa: BLE001 - any capture failure: run uncaptured from now on
            self._give_up_graphs(exc)

    def _give_up_graphs(self, exc: Exception) -> None:
        self._graph, self._question_graphs, self.mode = None, {}, "static"
        self.capture_error = f"{type(exc).__name__}: {exc}"
        log.warning("CUDA graph capture failed (%s); decoding without graphs", self.capture_error)

    def begin(self, state: MemoryState, first_token: int, steps: int) -> None:
        """Load `state` (a drained fork) for up to `steps` decode steps whose first input is
        `first_token`. Anchor buffers without room for `steps` more tokens grow (new buffers in
        `state`, as the eager decoder grows them)."""
        key = self._prepare_buffers(state, steps)
        self._load(state, first_token)
        if self.mode == "graph" and (key != self._key or self._graph is None):
            try:
                self._graph = self._record(self._step, lambda: self._load(state, first_token))
            except Exception as exc:  # noqa: BLE001 - any capture failure: decode uncaptured from now on
                self._give_up_graphs(exc)
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

    def _load(self, state: MemoryState, first_token: int, ids: list[int] | None = None,
              bucket: int = 0) -> None:
        """Copy `state`'s window and fast weights into the buffers, reset the counters; with `ids`
        (question tokens), also the question buffer of `bucket` (zero-padded)."""
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
        n = 0 if ids is None else len(ids)
        self.meta.copy_(torch.tensor([0, lw, lengths, state.next_position, n], dtype=torch.long))
        self.token.fill_(first_token)
        if ids is not None:
            padded = torch.zeros(bucket, dtype=torch.long)
            padded[:n] = torch.tensor(ids, dtype=torch.long)
            self.question_ids[bucket].copy_(padded)

    def _record(self, run: Callable[[], None], load: Callable[[], None]) -> torch.cuda.CUDAGraph:
        """`run` (a token step or a question pass) warmed up on a side stream (Triton compiles,
        cuBLAS picks kernels), the buffers the warm-up moved on `load`ed back, one `run` captured."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                load()
                run()
        torch.cuda.current_stream().wait_stream(stream)
        load()
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls from other threads (a node's status timer) do not break it
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # records, does not run
            run()
        self.captures += 1
        return graph

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

    # ------------------------------------------------------------ the question
    @torch.no_grad()
    def _question(self, bucket: int) -> None:
        """The question (meta[4] real tokens of `question_ids[bucket]`) as one block over the
        buffers: logits and argmax of its last real token, then the ring, the anchor caches and
        the counters as the token steps after it expect them."""
        dec, w = self.dec, self.window
        rows = self.question_rows[bucket]
        n = self.meta[4:5]
        hidden = dec.text.embed_tokens(self.question_ids[bucket])
        position = (self.meta[3:4] + rows).expand(3, bucket)
        cos, sin = dec.text.rotary_emb(hidden, position[:, None, :])
        cos, sin = cos[0], sin[0]
        seen = self.meta[1:2]
        # Ring slot s holds the window token `back` positions before the question's first token
        # (none when the window had fewer tokens); row r sees the W - 1 - r newest of them and the
        # question's own rows 0..r.
        back = torch.remainder(seen - 1 - self.ring_slots, w)
        in_ring = (seen - 1 - back >= 0)[None, :] & (back[None, :] <= w - 2 - rows[:, None])
        swa_mask = torch.cat((in_ring, rows[None, :] <= rows[:, None]), dim=1)
        # After the block, ring slot s takes the question token that lands on it, if a real one.
        landing = torch.remainder(self.ring_slots - seen, w)
        take = (landing < n)[None, :, None]
        landing = landing.clamp(max=bucket - 1)
        anchor_rows = self.meta[2:3] + rows
        anchor_masks = {cap: slots[None, :] <= anchor_rows[:, None] for cap, slots in self.anchor_slots.items()}
        for idx, layer in enumerate(dec.layers):
            if idx in self.ttt:
                out = self._ttt_block(layer, self.ttt[idx], hidden, cos, sin, swa_mask, landing, take)
            else:
                st = self.anchors[idx]
                out = self._anchor(layer, st.k, st.v, hidden, cos, sin, anchor_rows, anchor_masks[st.k.shape[1]])
            hidden = hidden + out
            hidden = hidden + layer.mlp(dec.ops.norm(layer.post_attention_layernorm, hidden))
        last = hidden.index_select(0, n - 1)
        logits = dec.model.lm_head(dec.ops.norm(dec.text.norm, last))[0].float()
        if self.logits is None:
            self.logits = torch.empty_like(logits)
        self.logits.copy_(logits)
        self.token.copy_(logits.argmax().view(1))
        self.meta[1:4].add_(n)

    def _ttt_block(self, layer: nn.Module, bufs: tuple, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   mask: torch.Tensor, landing: torch.Tensor, take: torch.Tensor) -> torch.Tensor:
        """A TTT layer over a block of rows: window attention over ring + block, fast weights applied
        (no update falls inside: `fits`), then the block's real tokens written into the ring."""
        ops, attn = self.dec.ops, layer.self_attn
        ring_k, ring_v, fw = bufs
        x = ops.norm(layer.input_layernorm, hidden)
        q_hat, k_hat, v = ops.project(attn.attn_layer, x)
        q_rot, k_rot = attn.rope(q_hat, k_hat, cos, sin)
        v_heads = v.transpose(0, 1)
        swa = self._attend(attn.attn_layer, q_rot, torch.cat((ring_k, k_rot), dim=1),
                           torch.cat((ring_v, v_heads), dim=1), mask)
        ring_k.copy_(torch.where(take, k_rot.index_select(1, landing), ring_k))
        ring_v.copy_(torch.where(take, v_heads.index_select(1, landing), ring_v))
        return self._ttt_output(attn, fw, x, q_hat, k_hat, v, cos, sin, swa)

    def _ttt_output(self, attn: TTTAttention, fw: list[torch.Tensor], x: torch.Tensor, q_hat: torch.Tensor,
                    k_hat: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    swa: torch.Tensor) -> torch.Tensor:
        """A TTT layer's output from its window attention `swa`: the fast weights `fw` applied to the
        rows' fast queries, gated, added, projected."""
        ops = self.dec.ops
        q, _, _ = ops.fast_qkv(attn, attn.raw_fast_inputs(q_hat, k_hat, v), cos, sin)
        _, _, gate_logits = ops.side(attn, x)
        ttt = ops.gate_output(attn, fw_apply(*fw, q, backend=self.dec.backend), gate_logits, x.dtype)
        return attn.attn_layer.o_proj(swa + ttt)

    def _attend(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """q [Hq, r, hd] against k/v [Hkv, m, hd] where mask ([m] for one row, [r, m] for a block)
        -> [r, Hq*hd], the query heads sharing a KV head folded into rows as the eager n == 1 path
        does.

        One row (a decode step): two batched matmuls and a softmax, not SDPA: with a mask only its
        memory-efficient kernel applies, which runs one thread block per (head, query block), i.e.
        8 blocks reading a 100k-key cache: 84% of a replay's GPU time, ~0.8 ms per layer (measured,
        H100). The numerics follow flash attention's: fp32 scores from bf16 inputs, fp32 softmax,
        the probabilities rounded to the value dtype for the second product (fp32 accumulation).
        A block of rows (the question): masked SDPA, whose memory-efficient kernel then has enough
        query blocks to fill the GPU and never holds the scores (as matmuls they are rows x keys
        fp32: 2 GiB per layer for a 256-token question over 131k keys; 37 ms against 83 ms for the
        first token at 1000 frames for a 135-token question on an H100, 46 ms eager:
        `benchmarks/results/question_pass_20261207/`)."""
        hq, r, hd = q.shape
        hkv = k.shape[0]
        rows = q.reshape(hkv, hq // hkv * r, hd)
        if r > 1:
            block_mask = mask.repeat(hq // hkv, 1)  # rows run (head in group, query row)
            out = F.scaled_dot_product_attention(rows[None], k[None], v[None], attn_mask=block_mask[None, None],
                                                 scale=attn.scaling)[0]
        else:
            scores = self._scores(rows, k.transpose(1, 2)) * attn.scaling
            probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            out = torch.bmm(probs.to(v.dtype), v)
        return out.view(hkv, hq // hkv, r, hd).permute(2, 0, 1, 3).reshape(r, hq * hd)

    def _anchor(self, layer: nn.Module, cache_k: torch.Tensor, cache_v: torch.Tensor, hidden: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """An anchor layer for the rows of `hidden` at cache slots `slot` ([rows]; `mask` [cap] for one
        row, [rows, cap] for a block)."""
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
        return self._ttt_output(attn, fw, x, q_hat, k_hat, v, cos, sin, swa)


def _bmm_out_dtype_works(param: torch.Tensor) -> bool:
    """Whether torch.bmm(..., out_dtype=float32) runs for this device and dtype (CUDA, recent torch)."""
    if param.dtype == torch.float32:
        return False
    try:
        a = torch.zeros(1, 1, 8, device=param.device, dtype=param.dtype)
        return torch.bmm(a, a.transpose(1, 2), out_dtype=torch.float32).dtype == torch.float32
    except (RuntimeError, TypeError, NotImplementedError):
        return False
