"""Perception node (foundation version): brings the node up and publishes its status.

The full node (synced ingest, /spatial_query, memory services, lifecycle) replaces this file.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from spatial_ttt_ros.msg import MemoryStatus


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("spatial_ttt_perception")
        self.declare_parameter("status_rate_hz", 1.0)
        for name, default in (("model_preset", "tiny"), ("checkpoint", ""), ("base_model", ""), ("device", "auto")):
            self.declare_parameter(name, default)
        rate = float(self.get_parameter("status_rate_hz").value)
        self._status_pub = self.create_publisher(MemoryStatus, "memory_status", 10)
        self.create_timer(1.0 / rate, self._publish_status)

    def _publish_status(self) -> None:
        msg = MemoryStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.device = "cpu"
        msg.last_error = "engine not loaded (foundation node)"
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = PerceptionNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def cli_node(argv: list[str]) -> int:
    return main(["spatial-ttt-node", *argv])


if __name__ == "__main__":
    sys.exit(main())
