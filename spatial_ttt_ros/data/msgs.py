"""ROS 2 messages as CDR bytes, built and read with the rosbags typestore (no rclpy).

The bytes are identical to what rclpy's `serialize_message` produces (checked in
ROS_TOOLCHAIN.md §6), so a bag written here plays back on a real ROS 2 graph.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from spatial_ttt_ros.data import image_encodings

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_POSE = "/camera/pose"
TOPIC_ANNOTATIONS = "/spatial_ttt/annotations"
TOPIC_DESCRIPTIONS = "/spatial_ttt/descriptions"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
STRING = "std_msgs/msg/String"

# The message type each well-known topic carries.
TOPIC_TYPES: dict[str, str] = {
    TOPIC_IMAGE: IMAGE,
    TOPIC_IMAGE_COMPRESSED: COMPRESSED_IMAGE,
    TOPIC_CAMERA_INFO: CAMERA_INFO,
    TOPIC_POSE: POSE_STAMPED,
    TOPIC_ANNOTATIONS: STRING,
    TOPIC_DESCRIPTIONS: STRING,
}

CAMERA_FRAME = "camera_optical_frame"
MAP_FRAME = "map"


def new_typestore() -> Typestore:
    """A fresh ROS 2 Kilted typestore, safe to register custom types into."""
    return get_typestore(Stores.ROS2_KILTED)


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The shared ROS 2 Kilted typestore for the standard types; never register into it."""
    return new_typestore()


def _header(stamp_ns: int, frame_id: str) -> Any:
    t = typestore().types
    if stamp_ns < 0:
        raise ValueError(f"stamp_ns must be >= 0, got {stamp_ns}")
    stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def stamp_ns_of(msg: Any) -> int:
    """Header stamp of a decoded message in nanoseconds."""
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def _serialize(msg: Any, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = CAMERA_FRAME) -> bytes:
    """sensor_msgs/Image, encoding rgb8, from an RGB array `rgb` [H, W, 3] uint8."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    msg = typestore().types[IMAGE](
        header=_header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
        is_bigendian=0, step=w * 3, data=np.ascontiguousarray(rgb).reshape(-1),
    )
    return _serialize(msg, IMAGE)


def compressed_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = CAMERA_FRAME,
                         quality: int = 90) -> bytes:
    """sensor_msgs/CompressedImage (JPEG) from an RGB array `rgb` [H, W, 3] uint8."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    # The format string image_transport's compressed publisher writes for rgb8 input.
    msg = typestore().types[COMPRESSED_IMAGE](
        header=_header(stamp_ns, frame_id), format="rgb8; jpeg compressed bgr8",
        data=buf.reshape(-1),
    )
    return _serialize(msg, COMPRESSED_IMAGE)


def camera_info_msg(k: np.ndarray | Sequence[Sequence[float]], width: int, height: int,
                    stamp_ns: int, frame_id: str = CAMERA_FRAME) -> bytes:
    """sensor_msgs/CameraInfo of an undistorted pinhole camera with intrinsics `k` [3, 3]."""
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"K must be a 3x3 matrix, got shape {k.shape}")
    t = typestore().types
    p = np.zeros((3, 4))
    p[:, :3] = k
    msg = t[CAMERA_INFO](
        header=_header(stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=p.reshape(-1), binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False),
    )
    return _serialize(msg, CAMERA_INFO)


def pose_msg(position: Sequence[float], quat_xyzw: Sequence[float], stamp_ns: int,
             frame_id: str = MAP_FRAME) -> bytes:
    """geometry_msgs/PoseStamped; `quat_xyzw` is normalised here."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    n = float(np.linalg.norm(q))
    if q.shape != (4,) or not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"orientation must be a non-zero quaternion (x, y, z, w), got {quat_xyzw}")
    q = q / n
    x, y, z = (float(v) for v in position)
    t = typestore().types
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=x, y=y, z=z),
        orientation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
    )
    return _serialize(t[POSE_STAMPED](header=_header(stamp_ns, frame_id), pose=pose), POSE_STAMPED)


def string_msg(text: str) -> bytes:
    """std_msgs/String; the annotation and description topics carry JSON in it."""
    return _serialize(typestore().types[STRING](data=text), STRING)


def decode(data: bytes | memoryview, msgtype: str, store: Typestore | None = None) -> Any:
    """Decode CDR bytes of a standard (or, with `store`, a registered custom) type."""
    return (store or typestore()).deserialize_cdr(data, msgtype)


def image_from_msg(msg: Any) -> np.ndarray:
    """RGB array [H, W, 3] uint8 from a decoded Image (any camera encoding of image_encodings.py,
    the node's own conversion) or CompressedImage."""
    if msg.__msgtype__ == COMPRESSED_IMAGE:
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode CompressedImage with format {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return image_encodings.image_to_rgb(msg.data, msg.encoding, msg.height, msg.width, msg.step,
                                        bool(msg.is_bigendian))


def k_from_camera_info(msg: Any) -> np.ndarray:
    """Intrinsics K [3, 3] float64 from a decoded CameraInfo."""
    return np.asarray(msg.k, dtype=np.float64).reshape(3, 3)


def pose_from_msg(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(position [3], quaternion x, y, z, w [4]) from a decoded PoseStamped."""
    p, q = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])
