"""The anchor-KV budget over 20,000 frames (tiny): every part's bytes and the anchor buffer stay flat.
Slow tier (test/slow: `make test-slow`)."""

from __future__ import annotations

import numpy as np
import torch

from spatial_ttt_ros.runtime.engine import StreamingEngine

BUDGET = 240


def _engine(**overrides: object) -> StreamingEngine:
    torch.set_num_threads(1)
    return StreamingEngine.from_preset("tiny", device="cpu", overrides=overrides)


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_memory_is_flat_over_20000_frames():
    engine = _engine(anchor_kv_budget_tokens=BUDGET)
    frames = _frames(16)
    totals, capacity = [], set()
    for i in range(20_000):
        engine.push_frame(frames[i % 16], 0.5 * i)
        if i >= 1000 and i % 1000 == 999:
            c = engine.counters
            totals.append(sum(c.bytes_by_part.values()))
            capacity.add(c.anchor_capacity_bytes)
    assert len(capacity) == 1
    assert max(totals) <= min(totals) * 1.1
    assert len(engine.state.group_starts) < 20
    assert engine.ask("How many chairs?", max_new_tokens=4).frames_seen == 20_000
