"""The node's camera / pose / camera_info subscriptions, wired to a FrameIngest.

Pairing uses message_filters.ApproximateTimeSynchronizer where it is importable (every ROS 2
install) and the package's own synchroniser with the same semantics elsewhere (the PyPI-only
stack, ROS_TOOLCHAIN.md §5). All inputs use sensor-data QoS (best effort; a reliable publisher
matches too).
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

from spatial_ttt_ros.ros.conversions import stamp_to_ns
from spatial_ttt_ros.ros.ingest import FrameIngest
from spatial_ttt_ros.ros.params import NodeSettings
from spatial_ttt_ros.ros.sync import ApproximateTimeSynchronizer

try:
    import message_filters
except ImportError:
    message_filters = None

POSE_TYPES = {"pose_stamped": PoseStamped, "odometry": Odometry, "none": None}


def image_input(node: Node, settings: NodeSettings) -> tuple[type, str]:
    """(message type, topic) of the camera input. image_transport's convention: the compressed stream
    of `image` is `<resolved image>/compressed`, so a remap of `image` carries over."""
    if settings.image_transport == "raw":
        return Image, "image"
    return CompressedImage, node.resolve_topic_name("image") + "/compressed"


def subscribe_inputs(node: Node, settings: NodeSettings, ingest: FrameIngest, group: CallbackGroup,
                     on_camera_info: Callable[[CameraInfo], None]) -> tuple[list[Any], Any]:
    """Create the input subscriptions; returns (subscriptions to destroy later, the synchroniser)."""
    qos = qos_profile_sensor_data
    image_type, image_topic = image_input(node, settings)
    pose_type = POSE_TYPES[settings.pose_type]
    subs: list[Any] = []
    sync: Any = None
    if pose_type is None:
        def on_image_alone(msg: Any) -> None:
            ingest.on_image(msg)
            ingest.on_pair(msg, None)
        subs.append(node.create_subscription(image_type, image_topic, on_image_alone, qos, callback_group=group))
    elif message_filters is not None:
        image_sub = message_filters.Subscriber(node, image_type, image_topic, qos_profile=qos, callback_group=group)
        pose_sub = message_filters.Subscriber(node, pose_type, "pose", qos_profile=qos, callback_group=group)
        image_sub.registerCallback(ingest.on_image)  # before the synchroniser's: counts every image
        sync = message_filters.ApproximateTimeSynchronizer([image_sub, pose_sub], settings.sync_queue_size,
                                                           settings.sync_slop_s)
        sync.registerCallback(ingest.on_pair)
        subs += [image_sub.sub, pose_sub.sub]
    else:
        own = sync = ApproximateTimeSynchronizer(2, settings.sync_queue_size, settings.sync_slop_s)
        own.register_callback(ingest.on_pair)

        def on_image(msg: Any) -> None:
            ingest.on_image(msg)
            own.add(0, stamp_to_ns(msg.header.stamp), msg)

        def on_pose(msg: Any) -> None:
            own.add(1, stamp_to_ns(msg.header.stamp), msg)

        subs.append(node.create_subscription(image_type, image_topic, on_image, qos, callback_group=group))
        subs.append(node.create_subscription(pose_type, "pose", on_pose, qos, callback_group=group))
    if settings.use_camera_info or settings.rectify != "none":
        subs.append(node.create_subscription(CameraInfo, "camera_info", on_camera_info, qos, callback_group=group))
    return subs, sync
