"""MemoryStatus and /diagnostics show the anchor-KV budget; evictions are information (OK), not a warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time

from spatial_ttt_ros.ros.ingest import IngestCounts
from spatial_ttt_ros.ros.status import OK, Health, StatusView, diagnostics, memory_status
from spatial_ttt_ros.ros.worker import WorkerSnapshot
from spatial_ttt_ros.runtime.engine import StreamingEngine

pytestmark = pytest.mark.unit


def _view(counters) -> StatusView:
    worker = WorkerSnapshot(alive=True, frames_ingested=60, frames_rejected=0, frames_dropped=0, queue_depth=0,
                            jobs_waiting=0, frames_in_memory=60, counters=counters, last_error="", restarts=0,
                            death="", busy_s=0.0)
    return StatusView(state="active", ingest=IngestCounts(received=60, synced=60, keyframes=60), worker=worker,
                      device="cpu", model_id="tiny", last_error="", ingest_fps=2.0)


def test_budget_counters_reach_memory_status_and_diagnostics():
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu", overrides={"anchor_kv_budget_tokens": 240})
    rng = np.random.default_rng(0)
    health = Health()
    level, message = health.update(_view(engine.counters), now=0.0)
    assert (level, message) == (OK, "ok")
    for i in range(60):
        engine.push_frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.5 * i)
    c = engine.counters
    assert c.evicted_groups > 0
    msg = memory_status(_view(c), Time(sec=30))
    assert (msg.anchor_budget_tokens, msg.anchor_tokens) == (240, c.anchor_tokens)
    assert (msg.anchor_evicted_tokens, msg.anchor_evicted_groups) == (c.evicted_tokens, c.evicted_groups)
    level, message = health.update(_view(c), now=1.0)
    assert level == OK and "evicted" in message
    array = diagnostics(_view(c), level, message, "spatial_ttt_perception", msg.header.stamp)
    values = {kv.key: kv.value for kv in array.status[0].values}
    assert values["anchor_budget_tokens"] == "240"
    assert values["anchor_evicted_groups"] == str(c.evicted_groups)
