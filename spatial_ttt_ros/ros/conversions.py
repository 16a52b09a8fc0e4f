"""ROS messages <-> numpy arrays and float seconds.

Duck-typed on the message fields, so rclpy messages and rosbags-decoded ones both work and this
module imports no rclpy. Every rejection is a ValueError naming the field and what was expected;
the node counts it as a rejected frame and puts the reason in its status.

Images come out as HxWx3 uint8 RGB, C-contiguous (what the engine's `push_frame` takes). The pixel
conversions themselves live in data/image_encodings.py (no rclpy; training bakes with the same);
this module adapts messages to them and uses cv_bridge where it is installed (`ImageDecoder`).
"""

from __future__ import annotations

import math
import sys
import threading
from types import SimpleNamespace
from typing import Any, NamedTuple

import cv2
import numpy as np

from spatial_ttt_ros.data import image_encodings
from spatial_ttt_ros.data.image_encodings import MAX_PIXELS, as_bytes
from spatial_ttt_ros.ros.keyframe_gate import Pose

try:  # every ROS 2 install has it; the PyPI-only stack does not (ROS_TOOLCHAIN.md §1)
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:
    CvBridge = CvBridgeError = None

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_MAGIC, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
MAX_ENCODING_CHARS = 40  # an encoding string is a status key: bounded


class EncodingInfo(NamedTuple):
    key: str  # the encoding as the status names it ("yuv422_yuy2", "jpeg", ...)
    problem: str  # why it can never decode ("depth, not colour"), "" when it can
    backend: str  # what converts it: "cv_bridge" or "own"


def image_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, 3] uint8 RGB with the package's own conversions (every encoding
    of data/image_encodings.py; honours `step` and `is_bigendian`)."""
    return image_encodings.image_to_rgb(msg.data, msg.encoding, msg.height, msg.width, msg.step,
                                        bool(getattr(msg, "is_bigendian", False)), max_pixels)


class ImageDecoder:
    """sensor_msgs/Image -> [H, W, 3] uint8 RGB, through cv_bridge where it is importable.

    The message is always checked and unpacked by data/image_encodings.py first (sizes before any
    copy, `step` padding removed, 16-bit samples in native order), then cv_bridge's
    `imgmsg_to_cv2(..., "rgb8")` converts it; the PyPI-only stack (no cv_bridge) and encodings the
    installed cv_bridge does not know (its Python side reshapes by height x step, so the planar nv21 /
    nv12 / nv24 never go to it) use the package's own conversion, which is cv_bridge's recipe (same
    OpenCV codes, same scaling). A cv_bridge that fails a 2x2 probe at start-up is not used
    (`bridge_problem` says why). Thread-safe."""

    def __init__(self, use_cv_bridge: bool = True, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._refused: dict[str, str] = {}  # encoding -> why the installed cv_bridge refused it
        self.bridge_problem = "" if CvBridge is not None else "cv_bridge is not installed"
        self._bridge: Any = None
        if use_cv_bridge and CvBridge is not None:
            self._bridge = self._probe()
        elif not use_cv_bridge:
            self.bridge_problem = "cv_bridge disabled"

    def _probe(self) -> Any:
        bgr = np.array([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [250, 251, 252]]], np.uint8)
        try:
            bridge = CvBridge()
            out = np.asarray(bridge.imgmsg_to_cv2(self._packed(bgr, "bgr8"), "rgb8"))
            if out.shape != bgr.shape or not np.array_equal(out, bgr[..., ::-1]):
                raise ValueError(f"bgr8 -> rgb8 probe gave {out.tolist()}")
        except Exception as exc:  # a cv_bridge built for another numpy/OpenCV fails here, not per frame
            self.bridge_problem = f"cv_bridge unusable ({type(exc).__name__}: {exc})"
            return None
        return bridge

    @staticmethod
    def _packed(pixels: np.ndarray, encoding: str) -> SimpleNamespace:
        """A message-shaped view of unpacked pixels (no padding, native byte order) for cv_bridge."""
        pixels = np.ascontiguousarray(pixels)
        return SimpleNamespace(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                               is_bigendian=sys.byteorder == "big", step=pixels.strides[0], data=pixels)

    def backend(self, encoding: str) -> str:
        key = image_encodings.normalize(encoding)
        spec = image_encodings.ENCODINGS.get(key)
        with self._lock:
            refused = key in self._refused
        if self._bridge is None or spec is None or refused or spec.layout in (image_encodings.NV420,
                                                                               image_encodings.NV444):
            return "own"
        return "cv_bridge"

    def describe(self, msg: Any) -> EncodingInfo:
        encoding = str(msg.encoding)[:MAX_ENCODING_CHARS]
        return EncodingInfo(encoding, image_encodings.unsupported_reason(encoding), self.backend(encoding))

    def __call__(self, msg: Any) -> np.ndarray:
        pixels = image_encodings.raw_pixels(msg.data, msg.encoding, msg.height, msg.width, msg.step,
                                            bool(getattr(msg, "is_bigendian", False)), self.max_pixels)
        key = image_encodings.normalize(msg.encoding)
        if self.backend(key) == "cv_bridge":
            try:
                rgb = self._bridge.imgmsg_to_cv2(self._packed(pixels, key), "rgb8")
                return np.ascontiguousarray(rgb, dtype=np.uint8)
            except CvBridgeError as exc:  # this cv_bridge does not know the encoding: ours from now on
                with self._lock:
                    self._refused[key] = str(exc)
        return image_encodings.pixels_to_rgb(pixels, key)


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
    data = as_bytes(msg.data).tobytes()
    kind = _compressed_kind(str(msg.format), data)
    # libjpeg decodes a truncated JPEG into a half-grey picture with only a warning, so the end
    # markers are checked first: a cut-off frame is bad input, not a frame.
    if kind == "jpeg":
        if not data.startswith(_JPEG_SOI) or not data.rstrip(b"\x00").endswith(_JPEG_EOI):
            raise ValueError(f"JPEG data ({len(data)} bytes) lacks its start/end markers: truncated or not a JPEG")
    elif not data.startswith(_PNG_MAGIC) or not data.endswith(_PNG_IEND):
        raise ValueError(f"PNG data ({len(data)} bytes) lacks its signature/IEND chunk: truncated or not a PNG")
    width, height = jpeg_size(data) if kind == "jpeg" else png_size(data)
    image_encodings.check_size(width, height, max_pixels, f"{kind} image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{kind} data ({len(data)} bytes) could not be decoded")
    if (image.shape[1], image.shape[0]) != (width, height):
        raise ValueError(f"decoded {kind} image is {image.shape[1]}x{image.shape[0]}, its header said {width}x{height}")
    # image_transport's compressed plugin encodes colour images as BGR; imdecode returns BGR.
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CompressedDecoder:
    """sensor_msgs/CompressedImage -> RGB (`compressed_to_rgb`), with the status key of its format."""

    bridge_problem = ""

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels

    def __call__(self, msg: Any) -> np.ndarray:
        return compressed_to_rgb(msg, self.max_pixels)

    def describe(self, msg: Any) -> EncodingInfo:
        fmt = str(msg.format).lower()
        kind = "jpeg" if ("jpeg" in fmt or "jpg" in fmt) else "png" if "png" in fmt else "compressed"
        return EncodingInfo(kind, "", "own")


def make_decoder(image_transport: str, use_cv_bridge: bool = True,
                 max_pixels: int = MAX_PIXELS) -> ImageDecoder | CompressedDecoder:
    """The decoder of a camera input: "raw" (sensor_msgs/Image) or "compressed"."""
    return ImageDecoder(use_cv_bridge, max_pixels) if image_transport == "raw" else CompressedDecoder(max_pixels)


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
