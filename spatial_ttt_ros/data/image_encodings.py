"""Camera image encodings of sensor_msgs/image_encodings -> RGB uint8 (numpy + OpenCV, no rclpy).

Every colour and grey encoding a ROS 2 camera driver publishes: rgb8/bgr8/rgba8/bgra8/mono8 and their
16-bit forms, the four Bayer mosaics in 8 and 16 bits, packed 4:2:2 YUV (`yuv422` = `uyvy`, UYVY;
`yuv422_yuy2` = `yuyv`, YUYV), semi-planar 4:2:0 (`nv21`, `nv12`) and 4:4:4 (`nv24`). The colour
maths is cv_bridge's (`cv_bridge::cvtColor` to rgb8): the same OpenCV colour codes (its table,
e.g. bayer_rggb -> COLOR_BayerBG2RGB), colour conversion first and 16 -> 8 bit scaling last with
`convertTo(CV_8U, 255/65535)` (rounded). `nv24` has no OpenCV code: each pixel is expanded to a
YUYV pair carrying its own chroma, so OpenCV's BT.601 integer maths is reused, bit for bit.

Layouts (`step` = bytes per row of the first plane, padding allowed, checked before any copy):
  packed (rgb*, bgr*, mono*, bayer_*)  height rows of `step` >= width * channels * bytes/sample
  yuv422 / uyvy / yuv422_yuy2 / yuyv   height rows of `step` >= width * 2; width even
  nv21 / nv12                          Y: height rows of `step` >= width, then VU (UV) interleaved:
                                       height/2 rows of `step`; width and height even
  nv24                                 Y: height rows of `step` >= width, then UV interleaved:
                                       height rows of 2 * `step` (V4L2 NV24, chroma line = 2 luma lines)
16-bit samples are little-endian unless `is_bigendian`. Depth (16UC1, 32FC1) and generic OpenCV
types (8UC3, ...) carry no colour order and are refused with the reason (`unsupported_reason`).

Everything here is a pure function of the message fields, so training bakes frames with exactly
the conversion the node uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Larger frames are refused before any allocation: a corrupt header must not exhaust memory.
MAX_SIDE = 16384
MAX_PIXELS = 4096 * 4096  # default of the node's max_image_pixels parameter

PACKED, YUV422, NV420, NV444 = "packed", "yuv422", "nv420", "nv444"


@dataclass(frozen=True)
class EncodingSpec:
    name: str
    layout: str  # PACKED, YUV422, NV420 or NV444
    channels: int  # samples per pixel in the first plane (bayer: 1, 4:2:2: 2)
    bytes_per_sample: int  # 1 or 2
    code: int | None  # cv_bridge's OpenCV colour code to RGB; None: already RGB
    bayer: bool = False


def _packed(name: str, channels: int, depth: int, code: int | None, bayer: bool = False) -> EncodingSpec:
    return EncodingSpec(name, PACKED, channels, depth, code, bayer)


def _table() -> dict[str, EncodingSpec]:
    table = {}
    for bits, depth in (("8", 1), ("16", 2)):
        for spec in (_packed("rgb" + bits, 3, depth, None), _packed("bgr" + bits, 3, depth, cv2.COLOR_BGR2RGB),
                     _packed("rgba" + bits, 4, depth, cv2.COLOR_RGBA2RGB),
                     _packed("bgra" + bits, 4, depth, cv2.COLOR_BGRA2RGB),
                     _packed("mono" + bits, 1, depth, cv2.COLOR_GRAY2RGB),
                     # OpenCV names a mosaic by its second row: ROS rggb is OpenCV's BG (cv_bridge's table).
                     _packed("bayer_rggb" + bits, 1, depth, cv2.COLOR_BayerBG2RGB, True),
                     _packed("bayer_bggr" + bits, 1, depth, cv2.COLOR_BayerRG2RGB, True),
                     _packed("bayer_gbrg" + bits, 1, depth, cv2.COLOR_BayerGR2RGB, True),
                     _packed("bayer_grbg" + bits, 1, depth, cv2.COLOR_BayerGB2RGB, True)):
            table[spec.name] = spec
    for name, code in (("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
                       ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2), ("yuyv", cv2.COLOR_YUV2RGB_YUY2)):
        table[name] = EncodingSpec(name, YUV422, 2, 1, code)
    table["nv21"] = EncodingSpec("nv21", NV420, 1, 1, cv2.COLOR_YUV2RGB_NV21)
    table["nv12"] = EncodingSpec("nv12", NV420, 1, 1, cv2.COLOR_YUV2RGB_NV12)
    table["nv24"] = EncodingSpec("nv24", NV444, 1, 1, cv2.COLOR_YUV2RGB_YUY2)  # via YUYV pairs, see nv24_to_rgb
    return table


ENCODINGS: dict[str, EncodingSpec] = _table()
_GENERIC = re.compile(r"(8|16|32|64)([USF])C([0-9]*)", re.IGNORECASE)


def normalize(encoding: str) -> str:
    """The lookup key of an encoding string (whitespace and case forgiven)."""
    return str(encoding).strip().lower()


def unsupported_reason(encoding: str) -> str:
    """Why `encoding` cannot become a colour frame ("" when it can), e.g. "depth, not colour"."""
    if normalize(encoding) in ENCODINGS:
        return ""
    generic = _GENERIC.fullmatch(str(encoding).strip())
    if generic:
        bits, kind, channels = generic.group(1), generic.group(2).upper(), generic.group(3) or "1"
        if channels == "1" and (bits, kind) in (("16", "U"), ("32", "F")):
            return "depth, not colour"
        return "generic OpenCV type, no colour order"
    return "unknown encoding"


def spec_of(encoding: str) -> EncodingSpec:
    """The EncodingSpec of a supported encoding; ValueError naming the reason otherwise."""
    spec = ENCODINGS.get(normalize(encoding))
    if spec is None:
        raise ValueError(f"unsupported image encoding {encoding!r} ({unsupported_reason(encoding)}); expected a "
                         f"colour or grey encoding: {', '.join(ENCODINGS)}")
    return spec


def as_bytes(data: Any) -> np.ndarray:
    """A uint8[] field (array.array from rclpy, ndarray from rosbags, bytes) as a flat uint8 view."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS, what: str = "image") -> None:
    """ValueError unless width x height is a frame we accept (1..MAX_SIDE a side, <= max_pixels)."""
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"{what} size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
    if width * height > max_pixels:
        raise ValueError(f"{what} size {width}x{height} = {width * height} pixels exceeds max_image_pixels "
                         f"({max_pixels})")


def _rows(data: np.ndarray, offset: int, count: int, step: int, used: int) -> np.ndarray:
    """`count` rows of `step` bytes from `offset`, the first `used` bytes of each (a view)."""
    return data[offset:offset + count * step].reshape(count, step)[:, :used]


def raw_pixels(data: Any, encoding: str, height: int, width: int, step: int,
               is_bigendian: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The pixels of an Image message in native byte order, padding removed (what cv_bridge's
    matFromImage gives OpenCV): packed [H, W] or [H, W, C] uint8/uint16; 4:2:2 [H, W, 2];
    nv21/nv12 [H * 3 / 2, W] (Y rows, then chroma rows); nv24 [H, W, 3] (Y, U, V per pixel).
    Every size is checked against the header before anything is copied."""
    spec = spec_of(encoding)
    height, width, step = int(height), int(width), int(step)
    check_size(width, height, max_pixels)
    name = spec.name
    if spec.layout == YUV422 and width % 2:
        raise ValueError(f"{name} image width {width} is odd: 4:2:2 packs pixels in pairs (4 bytes per 2 pixels)")
    if spec.layout == NV420 and (width % 2 or height % 2):
        raise ValueError(f"{name} image size {width}x{height} must be even in both sides (4:2:0 chroma)")
    row_bytes = width * spec.channels * spec.bytes_per_sample
    if step < row_bytes:
        raise ValueError(f"image step {step} is shorter than a row of {width} {name} pixels ({row_bytes} bytes)")
    planes = {PACKED: 1.0, YUV422: 1.0, NV420: 1.5, NV444: 3.0}[spec.layout]
    expected = int(step * height * planes)
    data = as_bytes(data)
    if data.size != expected:
        what = f"step {step} x height {height}" + ("" if planes == 1.0 else f" x {planes:g} (Y + chroma planes)")
        raise ValueError(f"image data is {data.size} bytes; {what} needs {expected}")
    if spec.layout == NV420:
        y = _rows(data, 0, height, step, width)
        chroma = _rows(data, step * height, height // 2, step, width)
        return np.concatenate([y, chroma], axis=0)
    if spec.layout == NV444:
        y = _rows(data, 0, height, step, width)
        uv = _rows(data, step * height, height, 2 * step, 2 * width).reshape(height, width, 2)
        return cv2.merge([np.ascontiguousarray(y), *cv2.split(np.ascontiguousarray(uv))])
    pixels = _rows(data, 0, height, step, row_bytes)
    if spec.bytes_per_sample == 2:
        wire = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = np.ascontiguousarray(pixels).view(wire).astype(np.uint16, copy=False)  # native order
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    return np.ascontiguousarray(pixels).reshape(shape)


def to_8bit(image: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit as cv_bridge does (convertTo with scale 255/65535, rounded); 8-bit unchanged."""
    if image.dtype == np.uint8:
        return image
    return cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)  # saturate_cast rounding, like convertTo


def nv24_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """[H, W, 3] Y, U, V (4:4:4) -> RGB through OpenCV's YUYV decoder: pixel i becomes the pair
    (Y_i, U_i, Y_i, V_i), whose two decoded pixels are equal; one of each pair is kept (a nearest
    2:1 resize). Same BT.601 maths as the 4:2:2 and 4:2:0 encodings, bit for bit."""
    h, w = yuv.shape[:2]
    y, u, v = cv2.split(np.ascontiguousarray(yuv))
    pairs = cv2.merge([y, u, y, v]).reshape(h, 2 * w, 2)
    rgb = cv2.cvtColor(pairs, cv2.COLOR_YUV2RGB_YUY2)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)


def pixels_to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """raw_pixels(...) of `encoding` -> [H, W, 3] uint8 RGB, C-contiguous."""
    spec = spec_of(encoding)
    try:
        return _convert(pixels, spec)
    except cv2.error as exc:  # e.g. a mosaic too small to demosaic: bad input, named
        raise ValueError(f"{spec.name} image of shape {pixels.shape} cannot be converted: "
                         f"{str(exc).strip().splitlines()[-1]}") from None


def _convert(pixels: np.ndarray, spec: EncodingSpec) -> np.ndarray:
    if spec.layout == NV444:
        return nv24_to_rgb(pixels)
    if spec.bayer or spec.layout != PACKED:
        rgb = cv2.cvtColor(pixels, spec.code)  # demosaic / YUV first, at the source depth (cv_bridge's order)
        return np.ascontiguousarray(to_8bit(rgb))
    # Channel moves and scaling commute exactly: scale first, on fewer bytes.
    pixels = to_8bit(pixels)
    rgb = pixels if spec.code is None else cv2.cvtColor(pixels, spec.code)
    return np.ascontiguousarray(rgb)


def image_to_rgb(data: Any, encoding: str, height: int, width: int, step: int,
                 is_bigendian: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An Image message's fields -> [H, W, 3] uint8 RGB (ValueError naming the problem)."""
    return pixels_to_rgb(raw_pixels(data, encoding, height, width, step, is_bigendian, max_pixels), encoding)
