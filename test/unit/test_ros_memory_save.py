"""save_memory takes a snapshot on the worker and writes it off the worker: ingest goes on meanwhile,
and the file holds the memory as it was when the snapshot was taken."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.ros import memory_jobs
from spatial_ttt_ros.runtime.engine import StreamingEngine

pytestmark = pytest.mark.unit


def test_the_save_job_only_snapshots_and_the_file_is_written_afterwards(tmp_path):
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu", overrides={"anchor_kv_budget_tokens": 240})
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(60)]
    for i, frame in enumerate(frames[:40]):
        engine.push_frame(frame, 0.5 * i)
    digest = engine.state.digest()
    path = tmp_path / "m.safetensors"
    pending = memory_jobs.save(engine, path)  # what runs on the worker
    assert isinstance(pending, memory_jobs.PendingWrite) and not path.exists()
    for i, frame in enumerate(frames[40:]):  # ingest goes on (with evictions, in place)
        engine.push_frame(frame, 100.0 + 0.5 * i)
    assert pending.write() == 40  # what `run` does on the waiting thread
    loaded = StreamingEngine.from_preset("tiny", device="cpu", overrides={"anchor_kv_budget_tokens": 240})
    loaded.load(path)
    assert loaded.state.digest() == digest and loaded.frames_in_memory == 40
    (tmp_path / "notes.safetensors").write_text("someone's document")
    with pytest.raises(ValueError, match="not a spatial_ttt memory file"):
        memory_jobs.save(engine, tmp_path / "notes.safetensors")
