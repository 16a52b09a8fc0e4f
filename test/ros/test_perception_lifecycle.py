"""Lifecycle of the perception node through its real lifecycle services, configure failures with
their reason, autosave + load-on-start, and the `spatial-ttt node` bring-up."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

from spatial_ttt_ros.msg import MemoryStatus

NAME = "/spatial_ttt_perception"


GOAL = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
        Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
        Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
        Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED,
        Transition.TRANSITION_ACTIVE_SHUTDOWN: State.PRIMARY_STATE_FINALIZED}


def change(helpers, client, transition: int, node: str = NAME) -> bool:
    """Request a transition (not idempotent, so not blindly re-sent). If no response comes, the state
    tells: the goal reached means the response was lost; otherwise the request was lost (or the
    transition failed) and it is sent once more."""
    request = ChangeState.Request()
    request.transition.id = transition
    cli = helpers.wait_for_server(client, ChangeState, f"{node}/change_state")
    for _ in range(2):
        future = cli.call_async(request)
        if helpers.spin(client, future.done, 15.0):
            return future.result().success
        if state_of(helpers, client, node) == GOAL[transition]:
            return True
    return False


def state_of(helpers, client, node: str = NAME) -> int:
    return helpers.call(client, GetState, f"{node}/get_state", GetState.Request()).current_state.id


def services(client) -> set[str]:
    return {name for name, _ in client.get_service_names_and_types()}


def test_lifecycle_transitions_start_and_stop_ingest_and_services(ros_node, perception, helpers):
    node = perception({"autostart": False})
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_UNCONFIGURED
    assert node._engine is None

    assert change(helpers, ros_node, Transition.TRANSITION_CONFIGURE)
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_INACTIVE
    assert type(node._engine).__name__ == "StreamingEngine"
    assert "/spatial_query" not in services(ros_node) and ros_node.count_publishers("/image") == 0
    assert ros_node.get_subscriptions_info_by_topic("/image") == []

    assert change(helpers, ros_node, Transition.TRANSITION_ACTIVATE)
    assert helpers.spin(ros_node, lambda: {"/spatial_query", "/save_memory", "/load_memory", "/reset_memory"}
                        <= services(ros_node), 20)
    rig = helpers.Rig(ros_node, node)  # waits for the node's image and pose subscriptions
    rig.publish(1.0)
    assert rig.wait_idle().worker.frames_in_memory == 1

    assert change(helpers, ros_node, Transition.TRANSITION_DEACTIVATE)
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_INACTIVE
    assert helpers.spin(ros_node, lambda: "/spatial_query" not in services(ros_node)
                        and not ros_node.get_subscriptions_info_by_topic("/image"), 20)
    assert node.status_view().worker.frames_in_memory == 1  # deactivate keeps the memory

    assert change(helpers, ros_node, Transition.TRANSITION_CLEANUP)
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_UNCONFIGURED
    assert node._engine is None and node._worker is None

    assert change(helpers, ros_node, Transition.TRANSITION_CONFIGURE)
    assert change(helpers, ros_node, Transition.TRANSITION_ACTIVATE)
    assert node.status_view().worker.frames_in_memory == 0  # a fresh engine
    assert change(helpers, ros_node, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_FINALIZED
    assert node._engine is None


@pytest.mark.parametrize("bad", ["missing", "garbage", "param"])
def test_configure_fails_with_the_reason(ros_node, perception, helpers, tmp_path, bad):
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(b"\0" * 64)
    params = {"missing": {"checkpoint": str(tmp_path / "nowhere" / "model.safetensors")},
              "garbage": {"checkpoint": str(garbage)},
              "param": {"pose_type": "lidar"}}[bad]
    reason = {"missing": "nowhere", "garbage": str(garbage), "param": "pose_type must be one of"}[bad]
    node = perception({"autostart": False, "status_rate_hz": 10.0, **params})
    statuses: list[MemoryStatus] = []
    diags: list[DiagnosticStatus] = []
    ros_node.create_subscription(MemoryStatus, "/memory_status", statuses.append, 10)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), 10)

    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_UNCONFIGURED
    assert not change(helpers, ros_node, Transition.TRANSITION_CONFIGURE)
    assert state_of(helpers, ros_node) == State.PRIMARY_STATE_UNCONFIGURED
    assert reason in node.configure_error
    assert helpers.spin(ros_node, lambda: any(reason in s.last_error for s in statuses), 20)
    assert helpers.spin(ros_node, lambda: any(d.level == DiagnosticStatus.ERROR and reason in d.message
                                              for d in diags), 20)


def test_a_closed_node_leaves_the_graph_while_its_object_lives(ros_node, helpers):
    """A closed PerceptionNode must leave the ROS graph at once, not when the garbage collector frees
    the object: rclpy's LifecycleNode kept its state machine (the lifecycle services and the node
    handle) alive, and a later node of the same name in the process then had services that new
    clients never matched (the ros tier's former flake)."""
    from spatial_ttt_ros.ros.hosting import hosted_perception_node

    def present() -> bool:
        return ("spatial_ttt_perception", "/ghost") in ros_node.get_node_names_and_namespaces()

    with hosted_perception_node({"model_preset": "tiny", "autostart": False},
                                ros_args=("-r", "__ns:=/ghost")) as node:
        assert helpers.spin(ros_node, present, 20)
    # `node` still refers to the object here: leaving must not wait for the garbage collector
    assert helpers.spin(ros_node, lambda: not present(), 10), f"{node.get_fully_qualified_name} still in the graph"


def test_autostart_with_a_bad_checkpoint_reports_why(perception, tmp_path):
    with pytest.raises(RuntimeError, match="nowhere"):
        perception({"checkpoint": str(tmp_path / "nowhere.safetensors")})


def test_autosave_then_load_on_start(ros_node, perception, helpers, tmp_path):
    files = {"memory_dir": str(tmp_path), "memory_path": "autosave.safetensors"}
    path = str(tmp_path / "autosave.safetensors")
    writer = perception({**files, "autosave_period_s": 0.2, "keyframe_max_rate_hz": 0.0})
    rig = helpers.Rig(ros_node, writer)
    for i in range(3):
        rig.publish(1.0 + i, position=(float(i), 0.0, 0.0))
    rig.wait_idle()
    assert helpers.wait_for(lambda: writer._autosave.saves >= 1 and writer._autosave._saved[1] == 3, 20)
    assert os.path.isfile(path)
    # A second node (own namespace) starts from the saved memory.
    reader = perception({**files, "load_on_start": True}, ros_args=("-r", "__ns:=/reader"))
    assert reader.status_view().worker.frames_in_memory == 3


def test_cli_node_brings_up_the_node_from_the_yaml_and_exits_cleanly_on_sigint(ros_node, helpers, processes):
    proc = subprocess.Popen(["spatial-ttt", "node", "--ros-args", "-r", "__ns:=/cli"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(proc)
    assert helpers.spin(ros_node, lambda: "/cli/spatial_query" in services(ros_node) or proc.poll() is not None, 60)
    assert proc.poll() is None, proc.stdout.read()
    assert helpers.wait_for(lambda: state_of(helpers, ros_node, "/cli/spatial_ttt_perception")
                            == State.PRIMARY_STATE_ACTIVE, 30)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "engine ready" in out, out
