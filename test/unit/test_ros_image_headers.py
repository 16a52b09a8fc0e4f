"""Compressed images are sized from their header before anything is decoded: a small file that
declares a huge picture is refused without the allocation (PNG IHDR, JPEG start-of-frame)."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest

from spatial_ttt_ros.ros.conversions import compressed_to_rgb, image_to_rgb, jpeg_size, png_size


def encoded(ext: str, width: int, height: int) -> bytes:
    ok, data = cv2.imencode(ext, np.full((height, width, 3), 90, np.uint8))
    assert ok
    return data.tobytes()


def png_declaring(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose IHDR declares width x height of one grey row repeated (the
    zlib stream of a huge picture of zeros is small: 16384x16384 grey is ~260 kB)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\0" * 16, 9)  # not the full picture: never decoded anyway
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_sizes_come_from_the_headers():
    assert png_size(encoded(".png", 37, 21)) == (37, 21)
    assert jpeg_size(encoded(".jpg", 37, 21)) == (37, 21)
    ok, progressive = cv2.imencode(".jpg", np.zeros((19, 45, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert jpeg_size(progressive.tobytes()) == (45, 19)
    assert png_size(png_declaring(16384, 16384)) == (16384, 16384)
    with pytest.raises(ValueError, match="no start-of-frame"):
        jpeg_size(b"\xff\xd8\xff\xd9")


def test_a_picture_declared_too_large_is_refused_before_decoding(monkeypatch):
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    huge = NS(format="png", data=png_declaring(16384, 16384))
    with pytest.raises(ValueError, match="exceeds max_image_pixels"):
        compressed_to_rgb(huge, max_pixels=4096 * 4096)
    small = NS(format="png", data=png_declaring(20000, 20000))
    with pytest.raises(ValueError, match="outside 1..16384 pixels per side"):
        compressed_to_rgb(small, max_pixels=10**12)
    jpeg = NS(format="jpeg", data=encoded(".jpg", 64, 48))
    with pytest.raises(ValueError, match="3072 pixels exceeds max_image_pixels"):
        compressed_to_rgb(jpeg, max_pixels=3000)
    assert decoded == []  # nothing was decoded
    assert compressed_to_rgb(jpeg, max_pixels=3072).shape == (48, 64, 3)
    assert decoded == [1]


def test_raw_images_obey_the_same_limit():
    msg = NS(encoding="rgb8", height=48, width=64, step=64 * 3, data=bytes(48 * 64 * 3))
    assert image_to_rgb(msg, max_pixels=3072).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="exceeds max_image_pixels"):
        image_to_rgb(msg, max_pixels=3071)
