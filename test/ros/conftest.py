"""Fixtures for the ros tier: a real rclpy context and node, and node processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

rclpy = pytest.importorskip("rclpy")


@pytest.fixture
def ros_node() -> Iterator[object]:
    """An rclpy node in its own context, destroyed after the test."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"test_client_{os.getpid()}", context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def spin_until(node: object, condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Spin `node` until `condition()` holds or the timeout passes; returns the condition."""
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if condition():
                return True
            executor.spin_once(timeout_sec=0.05)
        return condition()
    finally:
        executor.remove_node(node)


@pytest.fixture
def spin() -> Callable[..., bool]:
    return spin_until


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Node processes started by a test; SIGINT then SIGKILL at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
