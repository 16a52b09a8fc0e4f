"""Run the perception node inside a Python process (the demo and the ros-tier tests).

`NodeHost` spins nodes of one rclpy context in a MultiThreadedExecutor on a background thread;
`hosted_perception_node` brings up a PerceptionNode with parameters in its own context and
tears everything down (engine freed) on exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from spatial_ttt_ros.ros.perception_node import PerceptionNode
from spatial_ttt_ros.ros.spinning import spin_resilient


class NodeHost:
    def __init__(self, context: Context, num_threads: int = 4,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.executor = MultiThreadedExecutor(num_threads=num_threads, context=context)
        self.logger = rclpy.logging.get_logger("node_host")
        self._thread = threading.Thread(target=self._spin, name="node_host", daemon=True)
        self.error: BaseException | None = None
        self.on_error = on_error

    def add(self, node: Node) -> None:
        self.executor.add_node(node)

    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        try:
            spin_resilient(self.executor, self.logger, self.on_error)
        except BaseException as exc:  # reported by the owner; a shut-down context ends spin normally
            if rclpy.ok(context=self.executor.context):
                self.error = exc

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=10.0)
        self._thread.join(timeout=10.0)


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; returns the condition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return condition()


@contextmanager
def hosted_perception_node(parameters: dict[str, Any] | None = None, *, ros_args: Sequence[str] = (),
                           wait_active_s: float = 60.0) -> Iterator[PerceptionNode]:
    """A PerceptionNode spinning in its own context. With autostart (the default) waits until it
    is active; raises RuntimeError with the node's last error if it does not get there."""
    context = Context()
    rclpy.init(context=context)
    node = host = None
    try:
        node = PerceptionNode(
            context=context, cli_args=["--ros-args", *ros_args] if ros_args else None,
            parameter_overrides=[Parameter(k, value=v) for k, v in (parameters or {}).items()])
        host = NodeHost(context, num_threads=node.executor_threads(), on_error=node.record_callback_error)
        host.add(node)
        host.start()
        if node.settings.autostart:
            wait_for(lambda: node.state == "active" or bool(node.configure_error), wait_active_s)
            if node.state != "active":
                raise RuntimeError(f"perception node is {node.state}, not active: {node.last_error}")
        yield node
    finally:
        if host is not None:
            host.stop()
        if node is not None:
            node.close()
        rclpy.try_shutdown(context=context)
