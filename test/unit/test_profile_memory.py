"""benchmarks/profile_memory.py's bookkeeping: which part of a pass makes the allocation peak,
checked against a scripted allocator (the GPU run uses torch.cuda's counters the same way)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("profile_memory", ROOT / "benchmarks" / "profile_memory.py")
pm = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("profile_memory", pm)  # dataclasses look their module up there
_spec.loader.exec_module(pm)

pytestmark = pytest.mark.unit


class Allocator:
    """memory_allocated / max_memory_allocated / reset_peak_memory_stats of a scripted allocator."""

    def __init__(self, start: int) -> None:
        self.now = self.high = start

    def alloc(self, n: int) -> None:
        self.now += n
        self.high = max(self.high, self.now)

    def free(self, n: int) -> None:
        self.now -= n

    def reset(self) -> None:
        self.high = self.now


def test_the_part_that_makes_the_peak_is_found():
    a = Allocator(100)
    t = pm.PeakTracker(lambda: a.now, lambda: a.high, a.reset)

    def vision():  # 50 transient, keeps 10 (its output)
        a.alloc(50)
        a.free(40)

    def ttt():  # 30 transient, keeps nothing
        a.alloc(30)
        a.free(30)

    wrapped_v, wrapped_t = t.wrap("vision", vision), t.wrap("_ttt", ttt)
    a.reset()
    wrapped_v()          # 100 -> 150 -> 110
    a.alloc(70)          # between parts: 180
    a.free(70)
    wrapped_t()          # 110 -> 140
    wrapped_t()
    a.alloc(100)         # after the last part: 210, the run's peak
    t.finish()
    assert (t.parts["vision"].calls, t.parts["vision"].start, t.parts["vision"].transient, t.parts["vision"].high) \
        == (1, 100, 50, 150)
    assert (t.parts["_ttt"].calls, t.parts["_ttt"].start, t.parts["_ttt"].transient, t.parts["_ttt"].high) \
        == (2, 110, 30, 140)
    assert t.parts["between parts"].high == 210 and t.overall == 210
    lines = pm.table("ingest", t)
    assert lines[0] == f"ingest: peak {210 / pm.GIB:.2f} GiB"
    assert lines[4].startswith("| between parts |") and lines[5].startswith("| vision | 1 |")


def test_a_part_that_raises_is_still_counted():
    a = Allocator(0)
    t = pm.PeakTracker(lambda: a.now, lambda: a.high, a.reset)

    def boom():
        a.alloc(7)
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        t.wrap("_anchor", boom)()
    assert t.parts["_anchor"].transient == 7 and t.overall == 7


def test_the_census_names_live_tensors_beyond_weights_and_state():
    import numpy as np
    import torch

    from spatial_ttt_ros.runtime.engine import StreamingEngine

    engine = StreamingEngine.from_preset("tiny", device="cpu")
    frame = np.random.default_rng(0).integers(0, 256, (engine.config.frame_height, engine.config.frame_width, 3),
                                              dtype=np.uint8)
    for i in range(12):
        engine.push_frame(frame, (i + 1) / 2)
    engine._planted = torch.zeros(1 << 22, dtype=torch.uint8)  # 4 MiB nobody accounts for
    engine._planted_list = [torch.zeros(1 << 21, dtype=torch.uint8)]
    found = pm.census(engine, "cpu", top=50)
    assert [t["holder"] for t in found["largest"] if t["bytes"] == 1 << 21] == ["StreamingEngine._planted_list[]"]
    # a device named with an index finds the tensors of that device named without (as "cuda:0" / "cuda")
    assert pm.census(engine, "cpu:0", top=50)["bytes"] == found["bytes"]
    planted = [t for t in found["largest"] if t["holder"] == "StreamingEngine._planted"]
    assert planted == [{"bytes": 1 << 22, "shape": [1 << 22], "dtype": "torch.uint8", "holder": "StreamingEngine._planted"}]
    assert found["bytes"] >= 1 << 22
    lines = pm.census_lines("After ingest", found)
    assert lines[0].startswith("After ingest, live tensors beyond weights and memory state: ")
    assert f"| {(1 << 22) / pm.GIB:.3f} | [4194304] | torch.uint8 | StreamingEngine._planted |" in lines
    held = {id(t) for t in engine.state.tensors()} | {id(p) for p in engine.model.parameters()}
    assert held and not any("LayerState" in t["holder"] for t in found["largest"])  # the state is accounted


def test_at_first_runs_once_when_the_first_part_starts():
    a = Allocator(10)
    seen = []
    t = pm.PeakTracker(lambda: a.now, lambda: a.high, a.reset, at_first=lambda: seen.append(a.now) or a.now)
    a.alloc(5)  # what the run allocates before its first part
    t.wrap("_ttt", lambda: a.alloc(1))()
    t.wrap("_anchor", lambda: a.alloc(1))()
    assert seen == [15] and t.first == 15
