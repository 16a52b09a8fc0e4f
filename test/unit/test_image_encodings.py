"""data/image_encodings.py: every camera encoding round-trips from a known RGB image, matches
cv_bridge's documented recipe (its OpenCV colour codes + 16->8 bit scaling) exactly, and bad
headers are refused before anything is copied."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest

from spatial_ttt_ros.data import image_encodings as ie

pytestmark = pytest.mark.unit

H, W = 48, 64
_yy, _xx = np.mgrid[0:H, 0:W].astype(np.float64)
# Smooth and strongly coloured (red and blue differ everywhere), like a real scene at camera resolution.
RGB = np.stack([128 + 90 * np.sin(_xx / 9 + _yy / 15), 128 + 80 * np.cos(_yy / 8 - _xx / 20),
                128 + 100 * np.sin((_xx + _yy) / 13 + 1)], axis=-1).round().astype(np.uint8)


def rows(plane: np.ndarray, pad: int) -> bytes:
    """A plane as message rows with `pad` junk bytes after each (step = row bytes + pad)."""
    flat = plane.reshape(plane.shape[0], -1).view(np.uint8)
    return np.concatenate([flat, np.full((flat.shape[0], pad), 0xAB, np.uint8)], axis=1).tobytes()


def decode(data: bytes, encoding: str, step: int, big: bool = False, h: int = H, w: int = W) -> np.ndarray:
    out = ie.image_to_rgb(data, encoding, h, w, step, big)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    return out


def err(out: np.ndarray, border: int = 0) -> tuple[float, int]:
    e = np.abs(out.astype(int) - RGB)
    inner = e[border:H - border, border:W - border] if border else e
    return float(e.mean()), int(inner.max())


def mosaic(image: np.ndarray, pattern: str) -> np.ndarray:
    """What a Bayer sensor records: one channel per pixel in the 2x2 `pattern` (e.g. "rggb")."""
    out = np.zeros(image.shape[:2], image.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        out[dy::2, dx::2] = image[dy::2, dx::2, "rgb".index(colour)]
    return out


def bt601(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution Y, U, V (BT.601, limited range), the studio-swing video encoding."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return tuple(np.clip(np.round(c), 0, 255).astype(np.uint8) for c in (y, u, v))


def nv420(rgb: np.ndarray, order: str) -> np.ndarray:
    """Y plane then interleaved chroma at half resolution ("vu": nv21, "uv": nv12), from OpenCV's I420."""
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    h, w = rgb.shape[:2]
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    pairs = np.stack([v, u] if order == "vu" else [u, v], axis=-1).reshape(h // 2, w)
    return np.concatenate([i420[:h], pairs])


# ------------------------------------------------------------------ round trips from a known RGB image

@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding, make", [
    ("rgb8", lambda x: x), ("bgr8", lambda x: x[..., ::-1]), ("rgba8", lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA)),
    ("bgra8", lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA))])
def test_8bit_colour_is_exact(encoding, make, pad):
    pixels = np.ascontiguousarray(make(RGB))
    out = decode(rows(pixels, pad), encoding, W * pixels.shape[2] + pad)
    assert err(out) == (0.0, 0)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("encoding, make", [
    ("rgb16", lambda x: x), ("bgr16", lambda x: x[..., ::-1]), ("rgba16", lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA)),
    ("bgra16", lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA))])
def test_16bit_colour_scales_like_cv_bridge_in_either_byte_order(encoding, make, big):
    # 8-bit value v stored as 257 v + d, |d| <= 128: round(x * 255 / 65535) gives v back exactly.
    noise = np.random.default_rng(1).integers(-128, 129, (H, W, 4))
    wide = np.ascontiguousarray(make(RGB)).astype(np.int64) * 257
    wide = np.clip(wide + noise[..., :wide.shape[2]], 0, 65535).astype(">u2" if big else "<u2")
    out = decode(rows(wide, 6), encoding, W * wide.shape[2] * 2 + 6, big=big)
    assert err(out) == (0.0, 0)
    # the flag matters: read in the wrong byte order the picture is garbage
    assert err(decode(rows(wide, 6), encoding, W * wide.shape[2] * 2 + 6, big=not big))[0] > 20


@pytest.mark.parametrize("encoding, depth", [("mono8", np.uint8), ("mono16", np.uint16)])
def test_grey_becomes_equal_rgb_channels(encoding, depth):
    grey = RGB[..., 1]
    plane = grey.astype(depth) * (257 if depth == np.uint16 else 1)
    out = decode(rows(plane, 3), encoding, W * plane.itemsize + 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaics_within_tolerance(pattern, bits):
    # Lossy: a Bayer sensor keeps one channel of three per pixel and bilinear demosaicing interpolates
    # the other two from the 3x3 neighbourhood: exact on locally linear colour, off by the local
    # curvature elsewhere (<= 2 levels on this smooth image); OpenCV replicates the outermost rows
    # and columns, so the 2-pixel border is only in the mean. A wrong pattern swaps red and blue
    # (mean error > 20 here).
    image = RGB if bits == 8 else RGB.astype(np.uint16) * 257
    plane = mosaic(image, pattern)
    mean, inner_max = err(decode(rows(plane, 4), f"bayer_{pattern}{bits}", W * plane.itemsize + 4), border=2)
    assert mean < 1.0 and inner_max <= 2, (mean, inner_max)


@pytest.mark.parametrize("encoding, code", [("yuv422", cv2.COLOR_RGB2YUV_UYVY), ("uyvy", cv2.COLOR_RGB2YUV_UYVY),
                                            ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2), ("yuyv", cv2.COLOR_RGB2YUV_YUY2)])
def test_yuv422_within_tolerance(encoding, code):
    # Lossy: two neighbouring pixels share one U, V pair (half horizontal chroma resolution) and Y/U/V
    # are 8-bit studio swing (219 / 224 levels): mean < 2.5, max <= 8 levels on this image. Swapping
    # UYVY for YUYV reads luma as chroma (mean error > 50).
    packed = cv2.cvtColor(RGB, code)
    mean, worst = err(decode(rows(packed, 2), encoding, 2 * W + 2))
    assert mean < 2.5 and worst <= 8, (mean, worst)


@pytest.mark.parametrize("encoding, order", [("nv21", "vu"), ("nv12", "uv")])
def test_nv420_within_tolerance(encoding, order):
    # Lossy: one chroma pair per 2x2 pixels (half resolution both ways) plus 8-bit quantisation:
    # mean < 4, max <= 20 levels where colour changes fastest. V/U swapped: mean > 20.
    out = decode(rows(nv420(RGB, order), 8), encoding, W + 8)
    mean, worst = err(out)
    assert mean < 4 and worst <= 20, (mean, worst)


def test_nv24_within_tolerance():
    # 4:4:4: only the 8-bit studio-swing quantisation is lost: mean < 1, max <= 3 levels.
    y, u, v = bt601(RGB)
    step = W + 6  # Y rows padded by 6 bytes, chroma rows by 12 (two luma lines per chroma line)
    data = rows(y, 6) + rows(np.stack([u, v], axis=-1), 12)
    mean, worst = err(decode(data, "nv24", step))
    assert mean < 1 and worst <= 3, (mean, worst)


# ------------------------------------------------------------------ parity with cv_bridge's recipe

# cv_bridge (vision_opencv, cv_bridge.cpp getConversionCodes, to rgb8): the OpenCV code per source
# colour format, then, when the bit depth differs, convertTo(CV_8U, 255/65535) (SAME_FORMAT).
CV_BRIDGE_TO_RGB = {
    "mono": cv2.COLOR_GRAY2RGB, "rgb": None, "bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB,
    "bgra": cv2.COLOR_BGRA2RGB, "bayer_rggb": cv2.COLOR_BayerBG2RGB, "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB, "bayer_grbg": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
CHANNELS = {"mono": 1, "rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}


def cv_bridge_recipe(pixels: np.ndarray, base: str) -> np.ndarray:
    code = CV_BRIDGE_TO_RGB[base]
    out = pixels if code is None else cv2.cvtColor(pixels, code)
    if out.dtype == np.uint16:  # convertTo(CV_8U, 255/65535): saturate_cast rounding
        out = np.clip(np.rint(out.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize("encoding", [f"{b}{bits}" for b in ("mono", "rgb", "bgr", "rgba", "bgra", "bayer_rggb",
                                                             "bayer_bggr", "bayer_gbrg", "bayer_grbg")
                                      for bits in ("8", "16")] + ["yuv422", "yuv422_yuy2"])
def test_parity_with_cv_bridges_documented_conversion(encoding):
    rng = np.random.default_rng(zlib.crc32(encoding.encode()))  # random: every code path and rounding case
    base = encoding.rstrip("0123456789") if not encoding.startswith("yuv") else encoding
    if base.startswith("yuv"):
        pixels = rng.integers(0, 256, (H, W, 2), dtype=np.uint8)
    else:
        depth = np.uint16 if encoding.endswith("16") else np.uint8
        channels = 1 if base.startswith("bayer") else CHANNELS[base]
        shape = (H, W) if channels == 1 else (H, W, channels)
        pixels = rng.integers(0, np.iinfo(depth).max + 1, shape, dtype=np.uint64).astype(depth)
    out = decode(rows(pixels, 2), encoding, W * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1) + 2)
    np.testing.assert_array_equal(out, cv_bridge_recipe(pixels, base))


def test_nv21_nv12_are_opencvs_and_nv24_is_opencvs_yuv_maths():
    rng = np.random.default_rng(7)
    planar = rng.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)
    for encoding, code in (("nv21", cv2.COLOR_YUV2RGB_NV21), ("nv12", cv2.COLOR_YUV2RGB_NV12)):
        np.testing.assert_array_equal(decode(planar.tobytes(), encoding, W), cv2.cvtColor(planar, code))
    # nv24 with chroma equal within each pixel pair is a YUYV image: OpenCV's decoder must agree bit for bit.
    y = rng.integers(0, 256, (H, W), dtype=np.uint8)
    u = np.repeat(rng.integers(0, 256, (H, W // 2), dtype=np.uint8), 2, axis=1)
    v = np.repeat(rng.integers(0, 256, (H, W // 2), dtype=np.uint8), 2, axis=1)
    yuyv = np.stack([y, np.where(np.arange(W) % 2 == 0, u, v)], axis=-1)
    nv24 = decode(y.tobytes() + np.stack([u, v], axis=-1).tobytes(), "nv24", W)
    np.testing.assert_array_equal(nv24, cv2.cvtColor(yuyv, cv2.COLOR_YUV2RGB_YUY2))


# ------------------------------------------------------------------ bad headers and unsupported encodings

@pytest.mark.parametrize("encoding, h, w, step, size, message", [
    ("rgb8", H, W, 3 * W - 1, 3 * W * H, "step 191 is shorter than a row of 64 rgb8 pixels"),
    ("rgb8", H, W, 3 * W, 3 * W * H - 1, "image data is 9215 bytes; step 192 x height 48 needs 9216"),
    ("rgb8", H, W, 3 * W, 3 * W * H + 1, "needs 9216"),
    ("mono16", H, W, 2 * W - 1, 2 * W * H, "step 127 is shorter"),
    ("bayer_rggb16", H, W, W, W * H, "step 64 is shorter than a row of 64 bayer_rggb16 pixels (128 bytes)"),
    ("yuv422", H, W + 1, 2 * (W + 1), 2 * (W + 1) * H, "width 65 is odd"),
    ("yuv422_yuy2", H, 7, 14, 14 * H, "width 7 is odd"),
    ("yuv422_yuy2", H, W, 2 * W - 2, (2 * W - 2) * H, "step 126 is shorter"),
    ("nv21", H + 1, W, W, W * (H + 1) * 3 // 2, "must be even"),
    ("nv21", H, W, W, W * H, "image data is 3072 bytes; step 64 x height 48 x 1.5 (Y + chroma planes) needs 4608"),
    ("nv24", H, W, W, 2 * W * H, "x 3 (Y + chroma planes) needs 9216"),
    ("rgb8", 0, W, 3 * W, 0, "outside 1..16384"),
    ("rgb8", 100_000, W, 3 * W, 3 * W, "outside 1..16384"),
])
def test_bad_headers_are_refused_with_the_reason(encoding, h, w, step, size, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        ie.image_to_rgb(bytes(size), encoding, h, w, step)


def test_a_huge_header_is_refused_before_anything_is_allocated():
    # 16384 x 16384 bgra16 would be 2 GiB: the size checks run on the header (the node's pixel limit,
    # then the bytes actually present) before any buffer is made.
    with pytest.raises(ValueError, match="16384x16384 = 268435456 pixels exceeds max_image_pixels"):
        ie.image_to_rgb(bytes(16), "bgra16", 16384, 16384, 16384 * 8)
    with pytest.raises(ValueError, match="image data is 16 bytes"):
        ie.image_to_rgb(bytes(16), "bgra16", 16384, 16384, 16384 * 8, max_pixels=16384 * 16384)


@pytest.mark.parametrize("encoding, reason", [
    ("32FC1", "depth, not colour"), ("16UC1", "depth, not colour"), ("8UC3", "generic OpenCV type, no colour order"),
    ("64FC4", "generic OpenCV type"), ("hsv8", "unknown encoding"), ("", "unknown encoding")])
def test_unsupported_encodings_say_why(encoding, reason):
    assert reason in ie.unsupported_reason(encoding)
    with pytest.raises(ValueError, match=f"unsupported image encoding {encoding!r} \\({reason}"):
        ie.image_to_rgb(bytes(12), encoding, 2, 2, 3)


def test_every_documented_camera_encoding_is_supported():
    documented = ["rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16",
                  *(f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)),
                  "uyvy", "yuv422", "yuyv", "yuv422_yuy2", "nv12", "nv21", "nv24"]
    assert sorted(documented) == sorted(ie.ENCODINGS)
    assert all(ie.unsupported_reason(e) == "" for e in documented)
