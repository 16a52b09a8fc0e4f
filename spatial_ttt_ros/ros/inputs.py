"""Input subscriptions of the perception and recorder nodes: a camera plus synced inputs, wired
to a FrameIngest (or any set callback).

Pairing uses message_filters.ApproximateTimeSynchronizer where it is importable (every ROS 2
install) and the package's own synchroniser with the same semantics elsewhere (the PyPI-only
stack, ROS_TOOLCHAIN.md §5). Either way the node owns the subscriptions and feeds the
synchroniser itself, so a message whose header stamp is negative is rejected with that reason
before it reaches message_filters (whose rclpy Time raises on it, inside the callback). All inputs
use sensor-data QoS (best effort; a reliable publisher matches too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from spatial_ttt_ros.ros.conversions import stamp_problem, stamp_to_ns
from spatial_ttt_ros.ros.ingest import FrameIngest
from spatial_ttt_ros.ros.sync import ApproximateTimeSynchronizer

try:
    import message_filters
except ImportError:
    message_filters = None

POSE_TYPES = {"pose_stamped": PoseStamped, "odometry": Odometry, "none": None}


def image_input(node: Node, image_transport: str) -> tuple[type, str]:
    """(message type, topic) of the camera input. image_transport's convention: the compressed stream
    of `image` is `<resolved image>/compressed`, so a remap of `image` carries over."""
    if image_transport == "raw":
        return Image, "image"
    return CompressedImage, node.resolve_topic_name("image") + "/compressed"


def synced_inputs(node: Node, inputs: list[tuple[type, str]], queue_size: int, slop_s: float,
                  on_set: Callable[..., Any], on_first: Callable[[Any], Any], on_reject: Callable[[str], Any],
                  group: CallbackGroup) -> tuple[list[Any], Any]:
    """Subscribe `inputs` [(type, topic)] and pass each synced set to `on_set(*messages)`; every
    message of the first input goes to `on_first` before pairing, a negatively stamped one to
    `on_reject(reason)` instead of the synchroniser. Returns (subscriptions, synchroniser)."""
    qos = qos_profile_sensor_data
    sync: Any = None
    if len(inputs) == 1:
        def feed(index: int, msg: Any) -> None:
            on_set(msg)
    elif message_filters is not None:
        filters = [message_filters.SimpleFilter() for _ in inputs]
        sync = message_filters.ApproximateTimeSynchronizer(filters, queue_size, slop_s)
        sync.registerCallback(on_set)

        def feed(index: int, msg: Any) -> None:
            filters[index].signalMessage(msg)
    else:
        own = sync = ApproximateTimeSynchronizer(len(inputs), queue_size, slop_s)
        own.register_callback(on_set)

        def feed(index: int, msg: Any) -> None:
            own.add(index, stamp_to_ns(msg.header.stamp), msg)

    def subscriber(index: int, topic: str) -> Callable[[Any], None]:
        def on_msg(msg: Any) -> None:
            if index == 0:
                on_first(msg)
            problem = stamp_problem(msg.header.stamp)
            if problem:
                on_reject(f"{topic}: {problem}")
                return
            feed(index, msg)
        return on_msg

    subs = [node.create_subscription(msg_type, topic, subscriber(i, topic), qos, callback_group=group)
            for i, (msg_type, topic) in enumerate(inputs)]
    return subs, sync


def subscribe_inputs(node: Node, settings: Any, ingest: FrameIngest, group: CallbackGroup,
                     on_camera_info: Callable[[CameraInfo], None]) -> tuple[list[Any], Any]:
    """The perception node's inputs; returns (subscriptions to destroy later, the synchroniser)."""
    inputs = [image_input(node, settings.image_transport)]
    pose_type = POSE_TYPES[settings.pose_type]
    if pose_type is not None:
        inputs.append((pose_type, "pose"))
    subs, sync = synced_inputs(node, inputs, settings.sync_queue_size, settings.sync_slop_s,
                               on_set=lambda image, pose=None: ingest.on_pair(image, pose),
                               on_first=ingest.on_image, on_reject=ingest.reject, group=group)
    if settings.use_camera_info or settings.rectify != "none":
        subs.append(node.create_subscription(CameraInfo, "camera_info", on_camera_info, qos_profile_sensor_data,
                                             callback_group=group))
    return subs, sync
