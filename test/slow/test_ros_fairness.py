"""Queries cannot starve ingest (slow tier): the perception node keeps at least 80% of its unloaded
ingest rate while a client keeps 50 /spatial_query requests in flight. Real node, real topics and
services, tiny preset; benchmarks/ros_soak.py is the measurement (results committed under
benchmarks/results/ros_fairness.*)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_query_flood_keeps_ingest_at_80_percent(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.ros_soak", "fairness", "--policy", "fair",
                           "--seconds", "15", "--offer-hz", "5", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = json.loads((tmp_path / "ros_fairness.json").read_text())["runs"]
    flood = run["phases"]["50-query flood"]
    assert flood["queries_answered"] > 0  # the flood was real and answered
    assert run["flood_over_unloaded"] >= 0.8, run
