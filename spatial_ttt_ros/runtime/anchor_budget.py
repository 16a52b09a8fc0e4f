"""The anchor-KV budget: a bounded memory for hours-long streams (config `anchor_kv_budget_tokens`).

The TTT layers' memory is constant in size; the anchor layers keep a KV cache of every token, which
grows ~2.4 GiB per 1,024 frames at the 2B shape. With a budget B > 0 (tokens per anchor layer; 0 =
unbounded, the exact behaviour without a budget), after each ingest step of the live memory:

* the attention-sink tokens (the chat prefix: system prompt and the start of the user turn) stay;
* the most recent whole frame groups that fit in B together with the sink stay;
* every older frame group is evicted, whole (its timestamp text, vision start/end and visual
  tokens), from every anchor layer at once, so that all anchor layers hold the same tokens.

Positions stay as assigned: the kept keys carry the rotary positions they were given when they
arrived, and new tokens continue the position count (`MemoryState.next_position`); nothing is
re-indexed. What the anchors forget, the TTT layers' fast weights keep (the paper's claim).

Policy details: the most advanced anchor layer decides the cut (the newest groups fitting B), and
no layer drops a token it has not seen yet (layers lag behind each other by the conv wavefront),
so with a very small budget the leading layer may hold a few groups over B until the others catch
up. Between two ingest steps a layer holds at most B tokens; during one it also holds the step's
own groups (`ingest_batch_groups`), and a query's fork holds, in addition, the groups the conv
layers held back, the question and the answer: the fork is not evicted (it is discarded), so
asking never changes what a later ask sees. Below the budget nothing is evicted and the outputs are
identical to an unbounded memory.
"""

from __future__ import annotations

from .state import AnchorLayerState, MemoryState


def capacity_limit(budget: int) -> int:
    """Tokens an anchor buffer grows to at most under `budget` (0: no limit), unless one step needs
    more: the budget plus headroom for one ingest step and a query's fork."""
    return 0 if budget <= 0 else budget + max(1024, budget // 8)


def check_budget(budget: int, sink: int, group_tokens: int) -> None:
    """ValueError unless `budget` (0 = unbounded) holds the sink and at least two frame groups."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"anchor_kv_budget_tokens must be a non-negative integer, got {budget!r}")
    if 0 < budget < sink + 2 * group_tokens:
        raise ValueError(f"anchor_kv_budget_tokens={budget} is too small: the chat prefix ({sink} tokens) and two "
                         f"frame groups ({group_tokens} tokens each) must fit; use 0 for unbounded")


def anchor_tokens(state: MemoryState) -> int:
    """Tokens held by the fullest anchor layer (the budget in use)."""
    return max((s.length for s in state.layers if isinstance(s, AnchorLayerState)), default=0)


def enforce(state: MemoryState, sink: int, budget: int) -> int:
    """Evict whole frame groups from the middle of every anchor cache until the leading layer fits
    `budget` (see the module docstring); returns the tokens evicted now. Compacts the caches in
    place: a fork sharing them must not outlive this call (the engine drops its prepared fork)."""
    anchors = [s for s in state.layers if isinstance(s, AnchorLayerState)]
    if budget <= 0 or not anchors or max(s.length for s in anchors) <= budget:
        return 0
    lead = max(s.tokens_seen for s in anchors)
    floor = min(s.tokens_seen for s in anchors)
    starts = state.group_starts
    seen = [i for i, g in enumerate(starts) if g <= floor]
    if not seen:
        return 0
    fitting = [i for i in seen if lead - starts[i] <= budget - sink]
    keep_from = fitting[0] if fitting else seen[-1]
    cut = starts[keep_from]
    if len({s.evicted for s in anchors}) != 1:  # checked before any layer changes
        raise RuntimeError("anchor layers evicted different tokens")  # an invariant, not input
    dropped = cut - (sink + anchors[0].evicted)
    if dropped <= 0:
        return 0
    for s in anchors:
        rest = s.length - sink - dropped
        for buf in (s.k, s.v):
            buf[:, sink:sink + rest] = buf[:, sink + dropped:s.length].clone()
        s.length = sink + rest
        s.evicted += dropped
    state.group_starts = starts[keep_from:]
    state.evicted_groups += keep_from
    state.evicted_tokens += dropped
    return dropped
