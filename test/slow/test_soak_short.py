"""The soak (benchmarks/soak.py) in short: 600 keyframes through the real perception node with a
small anchor budget; memory flat once evicting, every query answered. Slow tier (test/slow; the
full run's results are committed in benchmarks/results/soak.*)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("rclpy")


def test_short_soak_through_the_node_stays_flat(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    assert soak.main(["--frames", "600", "--budget", "300", "--query-every-s", "60", "--sample-every", "50",
                      "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["complete"] and result["samples"][-1]["frames_in_memory"] == 600
    assert len(result["queries"]) == 5 and all(q["success"] for q in result["queries"])
    late = [s for s in result["samples"] if s["frame"] > 300]
    assert all(s["evicted_groups"] > 0 for s in late)
    assert len({s["anchor_capacity_bytes"] for s in late}) == 1
    assert all(s["anchor_tokens"] <= 300 for s in late)
    # parts cycle (pending chunk, the anchors between budget - 1 group and budget) but do not grow:
    # unbounded, the anchor KV alone would more than double over these 300 frames
    assert max(s["memory_bytes"] for s in late) <= 1.25 * min(s["memory_bytes"] for s in late)
    assert max(s["rss_bytes"] for s in late) - min(s["rss_bytes"] for s in late) < 64 * 2**20
    assert (tmp_path / "soak.md").read_text().startswith("# Soak: 600 keyframes")
    assert "<polyline" in (tmp_path / "soak.svg").read_text()
