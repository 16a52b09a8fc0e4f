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


# Every wait in this tier is for something that must happen (none waits to show that something does
# not), so a timeout only decides how long a failing test takes. Waits are stretched by SLACK: DDS
# discovery and delivery on a loaded 2-core CI machine have taken over 20 s where 1 s is usual.
SLACK = 3.0


def spin_until(node: object, condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Spin `node` until `condition()` holds or SLACK x the timeout passes; returns the condition."""
    return _spin(node, condition, timeout_s * SLACK)


def _spin(node: object, condition: Callable[[], bool], timeout_s: float) -> bool:
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


# ---------------------------------------------------------------- the perception node, in process

PUBLISH_RETRY_S = 10.0
LOST_CHECK_S = 2.0  # how often a waiting call looks at the servers' lost-response counts


@pytest.fixture
def perception() -> Iterator[Callable[..., object]]:
    """Factory: `perception(params, ros_args=())` starts a PerceptionNode with the REAL engine
    (tiny preset unless params say otherwise) in its own context; everything is torn down after
    the test."""
    from contextlib import ExitStack

    from spatial_ttt_ros.ros.hosting import hosted_perception_node

    with ExitStack() as stack:
        def start(params: dict | None = None, ros_args: tuple[str, ...] = ()) -> object:
            params = {"model_preset": "tiny", **(params or {})}
            node = stack.enter_context(hosted_perception_node(params, ros_args=ros_args))
            if node.state == "active":
                from spatial_ttt_ros.runtime.engine import StreamingEngine

                assert isinstance(node._engine, StreamingEngine), "ros tests must run the real engine"
            return node

        yield start


def make_image(stamp_s: float, height: int = 48, width: int = 64) -> object:
    """A small rgb8 sensor_msgs/Image whose content changes with the stamp."""
    import numpy as np
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(int(stamp_s * 1000) % 2**32)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())
    set_stamp(msg, stamp_s)
    return msg


def set_stamp(msg: object, stamp_s: float) -> None:
    from spatial_ttt_ros.ros.conversions import seconds_to_sec_nanosec

    msg.header.stamp.sec, msg.header.stamp.nanosec = seconds_to_sec_nanosec(stamp_s)
    msg.header.frame_id = "camera"


def pose_msg(stamp_s: float, position: tuple[float, float, float] = (0.0, 0.0, 0.0), yaw_deg: float = 0.0,
             kind: str = "pose_stamped") -> object:
    import math

    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry

    msg = PoseStamped() if kind == "pose_stamped" else Odometry()
    pose = msg.pose if kind == "pose_stamped" else msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = map(float, position)
    pose.orientation.z, pose.orientation.w = math.sin(math.radians(yaw_deg) / 2), math.cos(math.radians(yaw_deg) / 2)
    set_stamp(msg, stamp_s)
    msg.header.frame_id = "map"
    return msg


class Rig:
    """A camera (+ pose) publisher on the test client node, feeding one perception node.

    `publish` sends a pose and an image with the same stamp and waits until the node synced the
    pair (not a fixed sleep); a pair lost on the best-effort link is sent again, which is safe
    because an unsynced pair with the same stamp only replaces itself in the sync queue.
    """

    def __init__(self, client: object, node: object, *, image_topic: str = "/image", pose_topic: str = "/pose",
                 image_type: type | None = None, pose_kind: str = "pose_stamped") -> None:
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        self.client, self.node, self.pose_kind = client, node, pose_kind
        self.image_pub = client.create_publisher(image_type or Image, image_topic, 10)
        self.pose_pub = None
        if pose_kind != "none":
            self.pose_pub = client.create_publisher(PoseStamped if pose_kind == "pose_stamped" else Odometry,
                                                    pose_topic, 10)
        from spatial_ttt_ros.ros.hosting import wait_for

        pubs = [p for p in (self.image_pub, self.pose_pub) if p is not None]

        def matched() -> bool:  # both ends: the node's reader drops samples of writers it has not matched yet
            subs = node.input_publishers()
            return all(p.get_subscription_count() > 0 for p in pubs) and all(
                subs.get(p.topic_name, 0) > 0 for p in pubs)

        assert wait_for(matched, 20.0 * SLACK), f"node did not subscribe: {node.input_publishers()}"

    def synced(self) -> int:
        return self.node.status_view().ingest.synced

    def handled(self) -> bool:
        """Every synced pair has an outcome (keyframe, gated or rejected)."""
        c = self.node.status_view().ingest
        return c.keyframes + c.gated + c.rejected == c.synced

    def publish(self, stamp_s: float, position: tuple[float, float, float] = (0.0, 0.0, 0.0), yaw_deg: float = 0.0,
                image: object | None = None) -> None:
        from spatial_ttt_ros.ros.hosting import wait_for

        image = make_image(stamp_s) if image is None else image
        pose = None if self.pose_pub is None else pose_msg(stamp_s, position, yaw_deg, self.pose_kind)
        before = self.synced()
        for _ in range(3):
            if pose is not None:
                self.pose_pub.publish(pose)
            self.image_pub.publish(image)
            if wait_for(lambda: self.synced() > before and self.handled(), PUBLISH_RETRY_S):
                return
        raise AssertionError(f"frame at {stamp_s} s never synced: {self.node.status_view()}")

    def wait_idle(self, timeout_s: float = 60.0) -> object:
        """Wait until the worker has taken every queued frame; returns the status view."""
        from spatial_ttt_ros.ros.hosting import wait_for

        def idle() -> bool:
            w = self.node.status_view().worker
            return w is not None and w.queue_depth == 0 and w.jobs_waiting == 0 and w.busy_s == 0.0

        assert wait_for(idle, timeout_s * SLACK), f"worker still busy: {self.node.status_view()}"
        return self.node.status_view()


def client_for(node: object, srv_type: type, name: str, depth: int = 10) -> object:
    """A service client of `node`, kept per (type, name, depth) for the node's lifetime."""
    from rclpy.qos import QoSProfile

    cache = node.__dict__.setdefault("_test_clients", {})
    key = (srv_type, name, depth)
    if key not in cache:
        cache[key] = node.create_client(srv_type, name, qos_profile=QoSProfile(depth=depth))
    return cache[key]


def wait_for_server(node: object, srv_type: type, name: str, timeout_s: float = 20.0) -> object:
    """The cached client for `name`, once it has matched the server; on failure the assertion says
    what the client's graph holds of the service. (A server that never matched was once a ghost: a
    closed lifecycle node of the same name still in the graph, fixed in PerceptionNode.destroy_node
    and guarded by test_a_closed_node_leaves_the_graph_while_its_object_lives.)"""
    cli = client_for(node, srv_type, name)
    if not cli.wait_for_service(timeout_sec=timeout_s * SLACK):
        raise AssertionError(f"service {name} not available after {timeout_s * SLACK} s; "
                             f"{_graph_of_service(node, name)}")
    return cli


def _graph_of_service(node: object, name: str) -> str:
    """What the client's graph cache knows of the service `name` (for a failed wait)."""
    readers = node.get_subscriptions_info_by_topic(f"rq{name}Request", no_mangle=True)
    writers = node.get_publishers_info_by_topic(f"rr{name}Reply", no_mangle=True)
    return (f"nodes={node.get_node_names_and_namespaces()} "
            f"services={sorted(n for n, _ in node.get_service_names_and_types())} "
            f"request_readers={[(i.node_name, i.node_namespace) for i in readers]} "
            f"reply_writers={[(i.node_name, i.node_namespace) for i in writers]}")


class LostResponseWatch:
    """What the servers say on /diagnostics about their services (ros/lost_responses.py; both nodes
    report it): `responses_lost` (answers rmw could not deliver) and `requests_taken`, per status."""

    def __init__(self, node: object) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.by_status: dict[str, dict[str, int]] = {}
        self.reports = 0  # diagnostics messages carrying these counts
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_diagnostics(self, msg: object) -> None:
        for status in msg.status:
            values = {kv.key: int(kv.value) for kv in status.values
                      if kv.key in ("responses_lost", "requests_taken") and kv.value.isdigit()}
            if values:
                self.by_status[status.name] = values
                self.reports += 1

    def total(self, key: str = "responses_lost") -> int:
        return sum(v.get(key, 0) for v in self.by_status.values())


def lost_watch(node: object) -> LostResponseWatch:
    """The client node's LostResponseWatch (one per node)."""
    watch = node.__dict__.get("_test_lost_watch")
    if watch is None:
        watch = node.__dict__["_test_lost_watch"] = LostResponseWatch(node)
    return watch


def call_service(node: object, srv_type: type, name: str, request: object, timeout_s: float = 60.0,
                 client: object | None = None) -> object:
    """One service call from the test client node, spun until the response arrives.

    A request or its response can be lost on a loaded 2-core machine: a new client's endpoints may
    not be matched both ways yet, and rmw gives up on the response ("failed to send response
    (timeout)"). The servers report what happened on /diagnostics (ros/lost_responses.py): the
    request is sent again only when a server reports a lost response, or when two fresh reports
    show that no server took any request since ours was sent (the request never arrived); silence
    alone never makes it resend. Resends are counted in the client node's `_test_resends`. Use it
    only for requests that may safely run twice.
    """
    cli = client or wait_for_server(node, srv_type, name)
    watch = lost_watch(node)
    deadline = time.monotonic() + timeout_s * SLACK
    futures: list = []

    def send() -> tuple[int, int, int]:
        futures.append(cli.call_async(request))
        return watch.total("responses_lost"), watch.total("requests_taken"), watch.reports

    lost_before, taken_before, reports_before = send()
    while time.monotonic() < deadline:
        step = min(LOST_CHECK_S, deadline - time.monotonic())
        if _spin(node, lambda: any(f.done() for f in futures), step):
            return next(f for f in futures if f.done()).result()
        response_lost = watch.total("responses_lost") > lost_before
        request_lost = (watch.reports >= reports_before + 2 and watch.total("requests_taken") == taken_before
                        and watch.by_status)
        if response_lost or request_lost:
            node.__dict__["_test_resends"] = node.__dict__.get("_test_resends", 0) + 1
            lost_before, taken_before, reports_before = send()
    raise AssertionError(f"no response from {name} within {timeout_s * SLACK} s "
                         f"(servers' lost responses: {watch.by_status})")


@pytest.fixture(scope="session")
def helpers() -> object:
    """The message builders and waiting helpers above, for test modules (importlib import mode
    does not let them import conftest)."""
    from types import SimpleNamespace

    from spatial_ttt_ros.ros.hosting import wait_for

    def wait_for_slack(condition: Callable[[], bool], timeout_s: float) -> bool:
        return wait_for(condition, timeout_s * SLACK)

    return SimpleNamespace(make_image=make_image, pose_msg=pose_msg, set_stamp=set_stamp, Rig=Rig,
                           call=call_service, client_for=client_for, wait_for_server=wait_for_server,
                           wait_for=wait_for_slack, spin=spin_until)
