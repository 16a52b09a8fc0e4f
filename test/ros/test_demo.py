"""`spatial-ttt demo` (what `make demo` runs) end to end in its own process."""

from __future__ import annotations

import os
import re
import subprocess


def test_demo_runs_the_pipeline_and_prints_typed_answers_and_status():
    # the timeout only guards against a hang; how fast the demo runs is not a test's business
    # without a domain or discovery range of its own (as `make demo` runs), it takes a private one
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    proc = subprocess.run(["spatial-ttt", "demo", "--frames", "40"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    domain = re.search(r"ROS domain (\d+), discovery localhost", out)
    assert domain and int(domain.group(1)) != 0, out[:500]
    assert "model preset 'demo'" in out and "models/demo/MODEL_CARD.md" in out
    assert "model demo:model.safetensors" in out, out[:800]  # the node runs the shipped weights
    for kind in ("count", "abs_distance", "room_size", "rel_direction", "appearance_order", "free_form"):
        assert f". {kind}" in out
    assert " m^2 " in out and "failed" not in out
    assert "memory_status: received 40, synced 40" in out
    assert "Traceback" not in proc.stderr
