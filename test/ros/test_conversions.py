"""Message <-> array conversions on real rclpy messages."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image

from spatial_ttt_ros.data import image_encodings
from spatial_ttt_ros.ros.conversions import (
    CompressedDecoder,
    ImageDecoder,
    compressed_to_rgb,
    image_to_rgb,
    pose_from_msg,
    pose_to_matrix,
    seconds_to_time_msg,
    stamp_to_ns,
    stamp_to_seconds,
)

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
CV = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA, "bgra8": cv2.COLOR_RGB2BGRA}


def raw(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=rows.shape[1], data=rows.tobytes())


@pytest.mark.parametrize("encoding", list(CV))
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_with_and_without_row_padding(encoding, pad):
    pixels = RGB if CV[encoding] is None else cv2.cvtColor(RGB, CV[encoding])
    out = image_to_rgb(raw(pixels, encoding, pad))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[..., 0]
    out = image_to_rgb(raw(grey, "mono8", pad=1))
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out[..., 1], grey)


@pytest.mark.parametrize("change, message", [
    (dict(encoding="16UC1"), r"unsupported image encoding '16UC1' \(depth, not colour\)"),
    (dict(step=7 * 3 - 1), "step 20 is shorter"),
    (dict(step=7 * 3 + 1), "needs"),
    (dict(height=0), "outside"),
    (dict(width=100_000), "outside"),
])
def test_bad_raw_images_name_the_problem(change, message):
    msg = raw(RGB, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=message):
        image_to_rgb(msg)


def test_truncated_raw_data_is_rejected():
    msg = raw(RGB, "rgb8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ValueError, match="image data is 104 bytes"):
        image_to_rgb(msg)


@pytest.mark.parametrize("ext, fmt", [(".png", "png"), (".png", "rgb8; png compressed bgr8"), (".jpg", "jpeg"),
                                      (".jpg", "")])
def test_compressed_images_decode_to_rgb(ext, fmt):
    # Smooth and strongly coloured, so JPEG loss stays small and a red/blue swap would not.
    yy, xx = np.mgrid[0:16, 0:24]
    rgb = np.stack([10 * xx, np.full_like(xx, 40), 15 * yy], axis=-1).astype(np.uint8)
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = compressed_to_rgb(CompressedImage(format=fmt, data=data.tobytes()))
    assert out.shape == rgb.shape
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)  # lossless
    else:
        assert np.abs(out.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_compressed_images_are_rejected(ext):
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    data = cv2.imencode(ext, big)[1].tobytes()
    with pytest.raises(ValueError, match="truncated"):
        compressed_to_rgb(CompressedImage(format=ext[1:].replace("jpg", "jpeg"), data=data[: len(data) // 2]))


def test_unknown_compressed_format_is_rejected():
    with pytest.raises(ValueError, match="unsupported compressed image format"):
        compressed_to_rgb(CompressedImage(format="theora", data=b"\x00" * 32))


def test_pose_stamped_and_odometry_give_the_same_pose():
    stamped, odom = PoseStamped(), Odometry()
    for pose in (stamped.pose, odom.pose.pose):
        pose.position.x, pose.position.y, pose.position.z = 1.0, 2.0, 3.0
        pose.orientation.z, pose.orientation.w = math.sin(math.pi / 4), math.cos(math.pi / 4)  # 90 deg yaw
    a, b = pose_from_msg(stamped), pose_from_msg(odom)
    np.testing.assert_allclose(a.position, b.position)
    matrix = pose_to_matrix(a)
    np.testing.assert_allclose(matrix[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(matrix[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    bad = PoseStamped()
    bad.pose.orientation.w = 0.0
    with pytest.raises(ValueError, match="unit quaternion"):
        pose_from_msg(bad)
    bad.pose.orientation.w, bad.pose.position.x = 1.0, math.nan
    with pytest.raises(ValueError, match="non-finite"):
        pose_from_msg(bad)


def test_time_round_trip():
    t = Time(sec=1_700_000_000, nanosec=123_456_789)
    assert stamp_to_ns(t) == 1_700_000_000_123_456_789
    back = seconds_to_time_msg(stamp_to_seconds(t))
    assert back.sec == t.sec and abs(back.nanosec - t.nanosec) < 1000
    assert seconds_to_time_msg(None) == Time() and seconds_to_time_msg(2.5) == Time(sec=2, nanosec=500_000_000)


# ------------------------------------------------------------------ camera encodings on rclpy messages

_y, _x = np.mgrid[0:6, 0:8]
SMOOTH = np.stack([40 + 12 * _x, 60 + 15 * _y, 200 - 10 * _x - 5 * _y], axis=-1).astype(np.uint8)


def _camera_frames() -> dict[str, Image]:
    """One real rclpy Image per encoding family, from the same picture, with padded rows."""
    rgb = SMOOTH
    wide = rgb.astype(">u2") * 257
    bayer = np.zeros((6, 8), np.uint8)
    for (dy, dx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (0, 1, 1, 2)):
        bayer[dy::2, dx::2] = rgb[dy::2, dx::2, c]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    u, v = i420[6:].reshape(2, 3, 4)  # I420: U plane then V plane, a quarter of the pixels each
    nv21 = np.concatenate([i420[:6], np.stack([v, u], axis=-1).reshape(3, 8)])
    frames = {
        "bgr16": (cv2.cvtColor(wide.astype(np.uint16), cv2.COLOR_RGB2BGR).astype(">u2"), True),
        "bayer_rggb8": (bayer, False),
        "yuv422_yuy2": (cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2), False),
        "yuv422": (cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), False),
        "nv21": (nv21, False),
    }
    msgs = {}
    for encoding, (plane, big) in frames.items():
        flat = plane.reshape(plane.shape[0], -1).view(np.uint8)
        height = 6
        msg = raw(flat, encoding, pad=4) if encoding != "nv21" else None
        if msg is None:  # planar: Y rows then chroma rows, each `step` bytes
            padded = np.concatenate([flat, np.zeros((flat.shape[0], 4), np.uint8)], axis=1)
            msg = Image(height=height, width=8, encoding=encoding, step=12, data=padded.tobytes())
        msg.height, msg.width, msg.is_bigendian = height, 8, big
        msgs[encoding] = msg
    return msgs


def test_the_decoder_takes_rclpy_messages_of_every_family():
    decoder = ImageDecoder()
    reference = SMOOTH.astype(int)
    # A 6x8 frame is mostly border for the demosaic and has 12 chroma samples in nv21; the maths is
    # pinned in test/unit/test_image_encodings.py, this checks the message adapter.
    tolerance = {"bgr16": 0, "bayer_rggb8": 16, "yuv422_yuy2": 8, "yuv422": 8, "nv21": 30}
    for encoding, msg in _camera_frames().items():
        out = decoder(msg)
        np.testing.assert_array_equal(out, image_to_rgb(msg))  # cv_bridge or not: the same pixels
        assert out.shape == (6, 8, 3) and np.abs(out.astype(int) - reference).max() <= tolerance[encoding], encoding
        info = decoder.describe(msg)
        assert info.key == encoding and info.problem == ""
    assert decoder.describe(Image(encoding="16UC1")).problem == "depth, not colour"
    assert len(decoder.describe(Image(encoding="x" * 500)).key) == 40  # a status key stays short
    assert CompressedDecoder().describe(CompressedImage(format="rgb8; jpeg compressed bgr8")).key == "jpeg"


def test_decoding_with_cv_bridge_itself_gives_the_same_pixels():
    """Where ROS is installed: cv_bridge's own imgmsg_to_cv2(msg, "rgb8") agrees with ours exactly,
    for every encoding it converts (not on the PyPI-only CI, where the parity test stands in)."""
    cv_bridge = pytest.importorskip("cv_bridge")
    bridge = cv_bridge.CvBridge()
    rng = np.random.default_rng(3)
    compared = []
    for encoding, spec in image_encodings.ENCODINGS.items():
        if spec.layout not in (image_encodings.PACKED, image_encodings.YUV422):
            continue
        depth = np.uint16 if spec.bytes_per_sample == 2 else np.uint8
        shape = (6, 8) if spec.channels == 1 else (6, 8, spec.channels)
        pixels = rng.integers(0, np.iinfo(depth).max + 1, shape, dtype=np.uint64).astype(depth)
        msg = raw(pixels.reshape(6, -1).view(np.uint8), encoding)
        msg.height, msg.width = 6, 8
        try:
            theirs = bridge.imgmsg_to_cv2(msg, "rgb8")
        except cv_bridge.CvBridgeError:
            continue  # an encoding this cv_bridge version does not know (our decoder then uses its own)
        np.testing.assert_array_equal(image_to_rgb(msg), theirs, err_msg=encoding)
        compared.append(encoding)
    assert {"rgb8", "bgr16", "mono16", "bayer_rggb8", "yuv422"} <= set(compared)
    assert ImageDecoder().backend("yuv422") == "cv_bridge"


def test_without_cv_bridge_the_decoder_says_so_and_uses_its_own():
    decoder = ImageDecoder(use_cv_bridge=False)
    assert decoder.bridge_problem and decoder.backend("bgr8") == "own"
    msg = _camera_frames()["yuv422_yuy2"]
    np.testing.assert_array_equal(decoder(msg), image_to_rgb(msg))
