"""End to end: the built package imports from the install prefix, a node executable runs in its
own process, shows up in the ROS graph, publishes, and shuts down cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import spatial_ttt_ros
from spatial_ttt_ros.ros.launch_inspect import find_executable


def test_generated_interfaces_come_from_the_install_prefix():
    import spatial_ttt_ros.msg as msg_pkg
    from spatial_ttt_ros.msg import MemoryStatus
    from spatial_ttt_ros.srv import MemoryFile, SpatialQuery

    prefix = Path(os.environ["AMENT_PREFIX_PATH"].split(os.pathsep)[0])
    assert Path(msg_pkg.__file__).resolve().is_relative_to(prefix.resolve())
    request = SpatialQuery.Request(kind="count", objects=["chair"])
    assert list(request.objects) == ["chair"]
    assert hasattr(SpatialQuery.Response(), "frames_in_memory")
    assert MemoryFile.Request(path="/tmp/m").path == "/tmp/m"
    assert MemoryStatus().memory_bytes_total == 0
    assert (prefix / "share" / "spatial_ttt_ros" / "config" / "perception.yaml").is_file()
    assert (prefix / "share" / "spatial_ttt_ros" / "launch" / "perception.launch.py").is_file()
    # kernels/ is installed inside the package, never as a top-level name
    import spatial_ttt_ros.kernels as kernels

    assert Path(kernels.__file__).parent.parent.name == "spatial_ttt_ros"
    assert not (Path(spatial_ttt_ros.__path__[-1]).parent / "kernels").exists()


def test_node_process_joins_graph_publishes_and_exits_cleanly(ros_node, spin, processes, tmp_path):
    from spatial_ttt_ros.msg import MemoryStatus

    exe = find_executable("spatial_ttt_ros", "perception_node")
    proc = subprocess.Popen([str(exe), "--ros-args", "-r", "__node:=smoke_perception", "-p", "status_rate_hz:=10.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(proc)
    statuses: list[MemoryStatus] = []
    ros_node.create_subscription(MemoryStatus, "/memory_status", statuses.append, 10)

    def in_graph() -> bool:
        return ("smoke_perception", "/") in ros_node.get_node_names_and_namespaces()

    assert spin(ros_node, lambda: in_graph() and len(statuses) > 0, timeout_s=60), (
        f"node not seen or no status; output: {proc.stdout.read() if proc.poll() is not None else '(running)'}")
    assert statuses[0].device != ""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


def test_sigint_while_the_node_is_still_configuring_exits_cleanly(processes):
    """SIGINT during autostart's configure (the engine still loading on an executor thread): the
    node waits for the transition in flight before it destroys itself, so the process neither
    crashes in rcl (the state machine freed under a running transition) nor prints a traceback."""
    import select
    import time

    exe = find_executable("spatial_ttt_ros", "perception_node")
    proc = subprocess.Popen([str(exe), "--ros-args", "-r", "__node:=sigint_configure", "-p", "model_preset:=demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(proc)
    seen, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and not any("loading engine" in line for line in seen):
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
    assert any("loading engine" in line for line in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    out = "".join(seen) + out
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "Fatal Python error" not in out, out
