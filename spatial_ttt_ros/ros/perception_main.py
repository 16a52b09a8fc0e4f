"""Entry points of the perception node: the ROS 2 executable (`main`, scripts/perception_node) and
`spatial-ttt node` (`cli_node`: the launch file's node without launch, from a params YAML)."""

from __future__ import annotations

import faulthandler
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from spatial_ttt_ros.ros.launch_inspect import node_cli
from spatial_ttt_ros.ros.perception_node import PerceptionNode
from spatial_ttt_ros.ros.spinning import end_signal_handling, spin_resilient


def main(args: list[str] | None = None) -> int:
    # A crash in native code (rcl, DDS, torch) prints every thread's Python stack to stderr.
    faulthandler.enable()
    rclpy.init(args=args)
    node = executor = None
    try:
        node = PerceptionNode()
        executor = MultiThreadedExecutor(num_threads=node.executor_threads())
        executor.add_node(node)
        spin_resilient(executor, node.get_logger(), node.record_callback_error)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        end_signal_handling()  # rclpy's signal thread is done before executor.shutdown() (see there)
        if executor is not None:
            # joins the executor's threads: a callback in flight (autostart's configure loading the
            # engine, a transition, a query) ends before the node and its state machine are freed
            executor.shutdown()
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return 0


def cli_node(argv: list[str]) -> int:
    """`spatial-ttt node [--params-file FILE] [--ros-args ...]`: the launch file's node without launch."""
    parsed = node_cli(argv, "spatial-ttt node", "bring up the perception node", "perception.yaml")
    if parsed is None:
        return 2
    return main(["spatial-ttt-node", "--ros-args", *parsed[1]])


if __name__ == "__main__":
    sys.exit(main())
