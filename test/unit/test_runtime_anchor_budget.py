"""The anchor-KV budget: identical to unbounded below it, sink + recent whole groups above it, flat
memory, and every feature (ask, prepare, static decode, flush, save/load, snapshot) on a bounded memory."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.state import CAPACITY_ALIGN, GROWTH_STEP_TOKENS, AnchorLayerState, grown_capacity

pytestmark = pytest.mark.unit

BUDGET = 240  # tiny: a 64-token chat prefix + ~8 frame groups of ~22 tokens


def _engine(**overrides: object) -> StreamingEngine:
    torch.set_num_threads(1)
    return StreamingEngine.from_preset("tiny", device="cpu", overrides=overrides)


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def _push(engine: StreamingEngine, frames: list[np.ndarray], t0: float = 0.0) -> None:
    for i, frame in enumerate(frames):
        engine.push_frame(frame, t0 + 0.5 * i)


def _anchor(engine: StreamingEngine) -> AnchorLayerState:
    return next(s for s in engine.state.layers if isinstance(s, AnchorLayerState))


def test_below_the_budget_everything_is_identical_to_unbounded():
    frames = _frames(21)
    free, bounded = _engine(), _engine(anchor_kv_budget_tokens=100_000)
    _push(free, frames)
    _push(bounded, frames)
    assert bounded.state.digest() == free.state.digest()
    a = free.ask("How many chairs?", max_new_tokens=6, return_logits=True)
    b = bounded.ask("How many chairs?", max_new_tokens=6, return_logits=True)
    assert a.token_ids == b.token_ids and torch.equal(a.logits, b.logits)
    c = bounded.counters
    assert (c.evicted_tokens, c.evicted_groups, c.anchor_budget_tokens) == (0, 0, 100_000)


def test_over_the_budget_the_sink_and_the_newest_whole_groups_stay():
    frames = _frames(80)
    free, bounded = _engine(), _engine(anchor_kv_budget_tokens=BUDGET)
    sink = len(bounded.layout.prefix)
    evictions = 0
    for i, frame in enumerate(frames):
        free.push_frame(frame, 0.5 * i)
        before = bounded.counters.evicted_tokens
        bounded.push_frame(frame, 0.5 * i)
        mine = _anchor(bounded)
        assert mine.length <= BUDGET
        if bounded.counters.evicted_tokens > before:  # as many groups as fit stay: one older would not
            evictions += 1
            starts = free.state.group_starts
            older = starts[starts.index(sink + mine.evicted) - 1]
            assert sink + mine.tokens_seen - older > BUDGET
    assert evictions > 10
    c = bounded.counters
    assert c.evicted_groups > 0 and c.evicted_tokens == _anchor(bounded).evicted > 0
    assert c.anchor_tokens == _anchor(bounded).length <= BUDGET
    # The anchor layer is the top one in tiny, so its keys do not depend on what it evicted: the
    # kept keys are exactly the unbounded memory's sink and its newest tokens.
    mine, full = _anchor(bounded), _anchor(free)
    assert torch.equal(mine.k[:, :sink], full.k[:, :sink])
    recent = mine.length - sink
    assert torch.equal(mine.k[:, sink:mine.length], full.k[:, full.length - recent:full.length])
    # whole groups: the first kept token is a frame group's first token
    assert bounded.state.group_starts[0] == sink + mine.evicted
    assert sink + mine.evicted in free.state.group_starts
    # positions stay as assigned
    assert bounded.state.next_position == free.state.next_position
    assert bounded.ask("How many chairs?", max_new_tokens=4).frames_seen == 80


def test_memory_is_flat_once_the_budget_is_reached():
    """600 frames (test/slow runs 20,000): every part's bytes, the anchor buffer's allocation and
    the group index stop growing."""
    engine = _engine(anchor_kv_budget_tokens=BUDGET)
    frames = _frames(16)
    halves: list[list[tuple[dict, int, int]]] = [[], []]
    for i in range(600):
        engine.push_frame(frames[i % 16], 0.5 * i)
        if i >= 100:
            c = engine.counters
            halves[i >= 350].append((c.bytes_by_part, c.anchor_capacity_bytes, len(engine.state.group_starts)))
    early, late = halves
    for k in (1, 2):  # the anchor buffer's allocation and the group index
        assert max(s[k] for s in late) <= max(s[k] for s in early)
    for name in early[0][0]:  # every part (pending and the conv carry cycle with the chunk phase)
        assert max(s[0][name] for s in late) <= max(s[0][name] for s in early), name
    assert engine.counters.evicted_groups > 200


def test_ask_prepare_static_decode_flush_save_load_on_a_bounded_memory(tmp_path):
    frames = _frames(60)
    static, eager = _engine(anchor_kv_budget_tokens=BUDGET, decode_graph="static"), _engine(anchor_kv_budget_tokens=BUDGET)
    for engine in (static, eager):
        _push(engine, frames[:41])
        engine.flush()
        _push(engine, frames[41:], t0=30.0)
    assert static.state.digest() == eager.state.digest() and static.counters.evicted_groups > 0
    expected = eager.ask("Where is the door?", max_new_tokens=8, return_logits=True)
    before = static.state.digest()
    got = static.ask("Where is the door?", max_new_tokens=8, return_logits=True)
    assert got.decode_path == "static" and got.token_ids == expected.token_ids
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-4)
    assert static.prepare()
    assert static.ask("Where is the door?", max_new_tokens=8).token_ids == expected.token_ids
    assert static.state.digest() == before
    path = tmp_path / "bounded.safetensors"
    static.save(path)
    fresh = _engine(anchor_kv_budget_tokens=BUDGET)
    fresh.load(path)
    assert fresh.state.digest() == before
    assert fresh.ask("Where is the door?", max_new_tokens=8).token_ids == expected.token_ids
    unbounded = _engine()
    unbounded.load(path)  # a bounded memory continues unbounded
    _push(unbounded, frames[:4], t0=100.0)
    assert unbounded.counters.evicted_groups == fresh.counters.evicted_groups


def test_an_unbounded_memory_loaded_into_a_bounded_engine_is_evicted_to_the_budget(tmp_path):
    free = _engine()
    _push(free, _frames(50))
    path = tmp_path / "free.safetensors"
    free.save(path)
    bounded = _engine(anchor_kv_budget_tokens=BUDGET)
    bounded.load(path)
    assert _anchor(free).length > BUDGET >= bounded.counters.anchor_tokens
    assert bounded.counters.evicted_groups > 0


@pytest.mark.parametrize("batch", [1, 3])
def test_several_anchor_layers_evict_the_same_groups(batch):
    """Two anchor layers (layers 1 and 3 here; the demo preset has two, the 2B model seven) lagging
    each other by the conv wavefront: every eviction drops the same tokens from each, and each keeps
    the sink and whole groups within the budget. (Before the fix the second layer's check compared
    against the first layer's already-updated count: the first eviction raised RuntimeError.)"""
    engine = _engine(anchor_kv_budget_tokens=BUDGET, ttt_layers=[0, 2], ingest_batch_groups=batch)
    free = _engine(ttt_layers=[0, 2], ingest_batch_groups=batch)
    frames = _frames(90)
    _push(engine, frames)
    _push(free, frames)
    anchors = [s for s in engine.state.layers if isinstance(s, AnchorLayerState)]
    assert len(anchors) == 2 and engine.counters.evicted_groups > 0
    assert {s.evicted for s in anchors} == {engine.counters.evicted_tokens}
    assert all(s.length <= BUDGET for s in anchors)
    sink = len(engine.layout.prefix)
    for mine, full in zip(anchors, [s for s in free.state.layers if isinstance(s, AnchorLayerState)]):
        assert torch.equal(mine.k[:, :sink], full.k[:, :sink])  # the sink stays, computed before any eviction
        assert sink + mine.evicted in engine.state.group_starts[:1]  # whole groups from the first kept one
    assert engine.ask("How many chairs?", max_new_tokens=3).frames_seen == 90


def test_batched_ingest_respects_the_budget():
    engine = _engine(anchor_kv_budget_tokens=BUDGET, ingest_batch_groups=3)
    _push(engine, _frames(90))
    assert engine.counters.anchor_tokens <= BUDGET and engine.counters.evicted_groups > 0


@pytest.mark.parametrize("budget, match", [(-1, "non-negative"), (70, "too small"), (True, "non-negative")])
def test_a_bad_budget_is_refused_by_name(budget, match):
    with pytest.raises(ValueError, match=f"anchor_kv_budget_tokens.*{match}|{match}.*anchor_kv_budget_tokens"):
        _engine(anchor_kv_budget_tokens=budget)


def test_a_snapshot_is_written_on_another_thread_while_ingest_goes_on(tmp_path):
    engine = _engine(anchor_kv_budget_tokens=BUDGET)
    frames = _frames(40)
    _push(engine, frames)
    snap = engine.snapshot()
    digest = snap.state.digest()
    assert all(t.device.type == "cpu" for t in (_anchor(engine).k,))
    path = tmp_path / "snap.safetensors"
    writer = threading.Thread(target=snap.write, args=(path,))
    writer.start()
    _push(engine, frames, t0=100.0)  # ingest (with evictions, in place) while the file is written
    writer.join()
    assert snap.state.digest() == digest, "the snapshot shares a buffer with the live memory"
    loaded = _engine(anchor_kv_budget_tokens=BUDGET)
    loaded.load(path)
    assert loaded.state.digest() == digest and loaded.frames_in_memory == 40


def test_anchor_buffers_double_while_small_then_grow_by_a_quarter():
    assert grown_capacity(0) == 256 and grown_capacity(1024) == 2048
    assert grown_capacity(GROWTH_STEP_TOKENS) == GROWTH_STEP_TOKENS * 5 // 4
    st = AnchorLayerState(k=torch.ones(2, 100_000, 4), v=torch.ones(2, 100_000, 4), length=100_000)
    st.reserve(100_001)  # 125,000 rounded up to the alignment
    assert st.k.shape[1] == 125_184 and float(st.k[:, :100_000].min()) == 1.0 and float(st.k[:, 100_000:].abs().max()) == 0.0
    st.reserve(200_000)  # a larger request than the step: what is asked, rounded up
    assert st.k.shape[1] == 200_192
    st.reserve(200_193, limit=210_000)  # a bounded memory caps the growth at its limit (rounded up)
    assert st.k.shape[1] == 210_176
    assert all(c % CAPACITY_ALIGN == 0 for c in (125_184, 200_192, 210_176))
