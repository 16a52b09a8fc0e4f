"""ROS messages <-> numpy arrays and float seconds.

Duck-typed on the message fields, so rclpy messages and rosbags-decoded ones both work and this
module imports no rclpy. Every rejection is a ValueError naming the field and what was expected;
the node counts it as a rejected frame and puts the reason in its status.

Images come out as HxWx3 uint8 RGB, C-contiguous (what the engine's `push_frame` takes).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from spatial_ttt_ros.ros.keyframe_gate import Pose

# encoding -> (channels, cv2 conversion to RGB or None when already RGB)
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
}
# Larger frames are refused before any allocation: a corrupt header must not exhaust memory.
MAX_SIDE = 16384
MAX_PIXELS = 4096 * 4096  # default of the max_image_pixels parameter

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_MAGIC, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _as_bytes(data: Any) -> np.ndarray:
    """A uint8[] field (array.array from rclpy, ndarray from rosbags, bytes) as a flat uint8 view."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def check_size(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """ValueError unless width x height is a frame we accept (1..MAX_SIDE a side, <= max_pixels)."""
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"{what} size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
    if width * height > max_pixels:
        raise ValueError(f"{what} size {width}x{height} = {width * height} pixels exceeds max_image_pixels "
                         f"({max_pixels})")


def image_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, 3] uint8 RGB. Honours `step` (row padding)."""
    encoding = str(msg.encoding).strip().lower()
    if encoding not in RAW_ENCODINGS:
        raise ValueError(f"unsupported image encoding {str(msg.encoding)[:40]!r}; expected one of "
                         f"{', '.join(RAW_ENCODINGS)}")
    channels, conversion = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(width, height, max_pixels)
    row_bytes = width * channels
    if step < row_bytes:
        raise ValueError(f"image step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    data = _as_bytes(msg.data)
    if data.size != step * height:
        raise ValueError(f"image data is {data.size} bytes; step {step} x height {height} needs {step * height}")
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def _compressed_kind(fmt: str, data: bytes) -> str:
    """'jpeg' or 'png' from the format string (image_transport writes e.g. "rgb8; jpeg compressed
    bgr8"), falling back to the magic bytes when the format names neither."""
    fmt = fmt.lower()
    if "jpeg" in fmt or "jpg" in fmt:
        return "jpeg"
    if "png" in fmt:
        return "png"
    if data.startswith(_JPEG_SOI):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    raise ValueError(f"unsupported compressed image format {fmt[:40]!r}; expected jpeg or png")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which must come first."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("PNG data has no IHDR chunk after its signature")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# JPEG markers that carry no length field (TEM, RSTn, SOI, EOI)
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}
# start-of-frame markers: baseline, extended, progressive, lossless (not DHT C4, JPG C8, DAC CC)
_JPEG_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment, walking the marker segments before it."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG data is malformed at byte {i}: expected a marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if length < 7 or i + 9 > len(data):
                raise ValueError("JPEG start-of-frame segment is truncated")
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        i += 2 + length
    raise ValueError("JPEG data has no start-of-frame segment: not a decodable JPEG")


def compressed_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> [H, W, 3] uint8 RGB. The size in the header is
    checked before anything is decoded (a small file can declare a huge picture)."""
    data = _as_bytes(msg.data).tobytes()
    kind = _compressed_kind(str(msg.format), data)
    # libjpeg decodes a truncated JPEG into a half-grey picture with only a warning, so the end
    # markers are checked first: a cut-off frame is bad input, not a frame.
    if kind == "jpeg":
        if not data.startswith(_JPEG_SOI) or not data.rstrip(b"\x00").endswith(_JPEG_EOI):
            raise ValueError(f"JPEG data ({len(data)} bytes) lacks its start/end markers: truncated or not a JPEG")
    elif not data.startswith(_PNG_MAGIC) or not data.endswith(_PNG_IEND):
        raise ValueError(f"PNG data ({len(data)} bytes) lacks its signature/IEND chunk: truncated or not a PNG")
    width, height = jpeg_size(data) if kind == "jpeg" else png_size(data)
    check_size(width, height, max_pixels, f"{kind} image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{kind} data ({len(data)} bytes) could not be decoded")
    if (image.shape[1], image.shape[0]) != (width, height):
        raise ValueError(f"decoded {kind} image is {image.shape[1]}x{image.shape[0]}, its header said {width}x{height}")
    # image_transport's compressed plugin encodes colour images as BGR; imdecode returns BGR.
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pose_of(msg: Any) -> Any:
    """The geometry_msgs/Pose inside a PoseStamped (msg.pose) or an Odometry (msg.pose.pose)."""
    pose = msg.pose
    return pose.pose if hasattr(pose, "pose") else pose


def pose_from_msg(msg: Any) -> Pose:
    """PoseStamped or Odometry -> Pose(position [3], quaternion [4] xyzw, normalised)."""
    pose = _pose_of(msg)
    p, q = pose.position, pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=np.float64)
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion))):
        raise ValueError(f"pose has non-finite values: position {position.tolist()}, orientation {quaternion.tolist()}")
    norm = float(np.linalg.norm(quaternion))
    if not 0.5 < norm < 1.5:
        raise ValueError(f"pose orientation is not a unit quaternion (norm {norm:.3g}): {quaternion.tolist()}")
    return Pose(position=position, quaternion=quaternion / norm)


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """Pose -> [4, 4] float64 homogeneous transform (camera in the world frame)."""
    x, y, z, w = pose.quaternion
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = pose.position
    return matrix


def stamp_to_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time (sec, nanosec) -> float seconds."""
    return int(stamp.sec) + int(stamp.nanosec) / 1e9


def stamp_problem(stamp: Any) -> str:
    """Why a builtin_interfaces/Time cannot stamp a frame ("" when it can)."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0:
        return f"header stamp is negative ({sec} s): the driver's clock or the message is broken"
    if not 0 <= nanosec < 1_000_000_000:
        return f"header stamp nanosec {nanosec} is outside 0..999999999"
    if sec == 0 and nanosec == 0:
        return "header stamp is zero: the camera driver did not stamp it"
    return ""


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact; the synchroniser's key)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def seconds_to_sec_nanosec(seconds: float) -> tuple[int, int]:
    """Float seconds -> (sec, nanosec) with 0 <= nanosec < 1e9; NaN or None-like -> (0, 0)."""
    if not math.isfinite(seconds):
        return 0, 0
    total = int(round(seconds * 1e9))
    return total // 1_000_000_000, total % 1_000_000_000


def seconds_to_time_msg(seconds: float | None) -> Any:
    """Float seconds -> builtin_interfaces/Time (zero for None)."""
    from builtin_interfaces.msg import Time

    sec, nanosec = seconds_to_sec_nanosec(0.0 if seconds is None else seconds)
    return Time(sec=sec, nanosec=nanosec)
