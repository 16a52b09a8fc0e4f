"""Lens rectification from a sensor_msgs/CameraInfo (numpy + OpenCV, no rclpy).

The model was trained on undistorted video; robot cameras (wide-angle, fisheye) publish distorted
frames with their calibration in CameraInfo. This undistorts a frame the way ROS's image_geometry /
image_proc do: K and D of the camera, the rectification rotation R and the new camera matrix
P[:3, :3] (K when P is unset), with `plumb_bob` / `rational_polynomial` through
cv2.initUndistortRectifyMap and `equidistant` through cv2.fisheye.initUndistortRectifyMap.

Pieces, all pure (training bakes frames with the same functions):
  Calibration / calibration_from_camera_info   a checked, hashable calibration (duck-typed message)
  rectify_maps, rectify_image                  the remap tables and one undistorted frame
  RectifyCache                                 maps computed once per calibration (LRU, thread-safe)
  Rectifier                                    the node's state: mode, latest CameraInfo, cache

Modes: none; pinhole or fisheye (forced, whatever distortion_model says); auto (from
distortion_model: plumb_bob / rational_polynomial -> pinhole, equidistant -> fisheye; a camera
without calibration, K all zero, passes unrectified). Binning and a partial ROI are not supported
(ValueError): the image must have CameraInfo's full width x height.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from spatial_ttt_ros.data.image_encodings import MAX_SIDE

MODES = ("none", "pinhole", "fisheye", "auto")
MODEL_OF = {"plumb_bob": "pinhole", "rational_polynomial": "pinhole", "equidistant": "fisheye"}
PINHOLE_D_LENGTHS = (0, 4, 5, 8, 12, 14)  # what cv2.initUndistortRectifyMap accepts
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Calibration:
    """One camera calibration; hashable, so it keys the map cache."""

    width: int
    height: int
    model: str  # "pinhole" or "fisheye"
    k: tuple[float, ...]  # 3x3 row-major
    d: tuple[float, ...]
    r: tuple[float, ...] = IDENTITY  # 3x3 row-major rectification rotation
    new_k: tuple[float, ...] = ()  # 3x3 intrinsics of the rectified image; () = k

    def __post_init__(self) -> None:
        if self.model not in ("pinhole", "fisheye"):
            raise ValueError(f"camera model must be pinhole or fisheye, got {self.model!r}")
        if not (0 < self.width <= MAX_SIDE and 0 < self.height <= MAX_SIDE):
            raise ValueError(f"calibration size {self.width}x{self.height} is outside 1..{MAX_SIDE} pixels per side")
        _check_intrinsics("K", self.k)
        if self.new_k:
            _check_intrinsics("P", self.new_k)
        if len(self.r) != 9 or not all(math.isfinite(v) for v in self.r):
            raise ValueError(f"R must be 9 finite numbers, got {list(self.r)}")
        if not all(math.isfinite(v) for v in self.d):
            raise ValueError(f"D has non-finite coefficients: {list(self.d)}")
        if self.model == "fisheye" and len(self.d) != 4:
            raise ValueError(f"equidistant (fisheye) distortion needs 4 coefficients k1..k4, got {len(self.d)}")
        if self.model == "pinhole" and len(self.d) not in PINHOLE_D_LENGTHS:
            raise ValueError(f"pinhole distortion needs {PINHOLE_D_LENGTHS[1:]} coefficients, got {len(self.d)}")

    @property
    def rectified_k(self) -> tuple[float, ...]:
        return self.new_k or self.k

    @property
    def is_identity(self) -> bool:
        """No distortion, no rotation, same intrinsics: rectifying would copy the frame."""
        return (not any(self.d) and np.allclose(self.r, IDENTITY) and np.allclose(self.rectified_k, self.k))

    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of the rectified image."""
        k = self.rectified_k
        return k[0], k[4], k[2], k[5]


def _check_intrinsics(name: str, k: Sequence[float]) -> None:
    if len(k) != 9 or not all(math.isfinite(v) for v in k):
        raise ValueError(f"{name} must be 9 finite numbers, got {list(k)}")
    if not (k[0] > 0 and k[4] > 0):
        raise ValueError(f"{name} has no focal length (fx {k[0]}, fy {k[4]}): camera not calibrated")


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def model_for(mode: str, distortion_model: str) -> str | None:
    """"pinhole" / "fisheye" for a rectify mode and CameraInfo.distortion_model; None for mode none."""
    if mode not in MODES:
        raise ValueError(f"rectify must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return None
    if mode != "auto":
        return mode
    model = MODEL_OF.get(str(distortion_model).strip().lower())
    if model is None:
        raise ValueError(f"distortion_model {distortion_model!r} is not one of {sorted(MODEL_OF)}")
    return model


def calibration_from_camera_info(msg: Any, mode: str = "auto") -> Calibration | None:
    """A checked Calibration from a CameraInfo (rclpy or rosbags message); None when nothing is to be
    done (mode none, or mode auto on an uncalibrated camera: K all zero). ValueError names the problem."""
    k = _floats(msg.k)
    if mode == "auto" and not any(k):
        return None
    model = model_for(mode, msg.distortion_model)
    if model is None:
        return None
    binning = (int(getattr(msg, "binning_x", 0)), int(getattr(msg, "binning_y", 0)))
    if max(binning) > 1:
        raise ValueError(f"camera_info binning {binning[0]}x{binning[1]} is not supported for rectification")
    roi = getattr(msg, "roi", None)
    if roi is not None and (int(roi.width), int(roi.height)) != (0, 0) and (
            int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)) != (0, 0, int(msg.width),
                                                                                       int(msg.height)):
        raise ValueError(f"camera_info ROI {roi.width}x{roi.height}+{roi.x_offset}+{roi.y_offset} is not supported "
                         "for rectification (full frames only)")
    r = _floats(msg.r)
    r = IDENTITY if not any(r) else r  # monocular drivers often leave R unset
    p = _floats(msg.p)
    new_k = () if len(p) != 12 or not any(p) else (p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10])
    return Calibration(width=int(msg.width), height=int(msg.height), model=model, k=k, d=_floats(msg.d), r=r,
                       new_k=new_k)


def rectify_maps(cal: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap tables (fixed-point CV_16SC2 + interpolation table) undistorting `cal`'s camera."""
    k = np.array(cal.k).reshape(3, 3)
    r = np.array(cal.r).reshape(3, 3)
    new_k = np.array(cal.rectified_k).reshape(3, 3)
    size = (cal.width, cal.height)
    if cal.model == "fisheye":
        d = np.array(cal.d).reshape(4, 1)
        return cv2.fisheye.initUndistortRectifyMap(k, d, r, new_k, size, cv2.CV_16SC2)
    d = np.array(cal.d) if cal.d else np.zeros(5)
    return cv2.initUndistortRectifyMap(k, d, r, new_k, size, cv2.CV_16SC2)


def rectify_image(image: np.ndarray, cal: Calibration,
                  maps: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The undistorted frame (same size and dtype; pixels seen by no source pixel are black)."""
    if image.shape[:2] != (cal.height, cal.width):
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} does not match the calibration's "
                         f"{cal.width}x{cal.height}")
    map1, map2 = rectify_maps(cal) if maps is None else maps
    try:
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    except cv2.error as exc:  # e.g. an image OpenCV cannot remap: bad input, not a crash
        raise ValueError(f"rectification failed for an image of shape {image.shape}: {exc}") from None


class RectifyCache:
    """Maps computed once per calibration (the newest `size` calibrations kept); thread-safe."""

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"cache size must be >= 1, got {size}")
        self.size = size
        self.computed = 0  # how many times maps were built
        self._maps: OrderedDict[Calibration, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def maps(self, cal: Calibration) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if cal in self._maps:
                self._maps.move_to_end(cal)
                return self._maps[cal]
        maps = rectify_maps(cal)  # outside the lock: tens of ms at 1280x720
        with self._lock:
            self.computed += 1
            self._maps[cal] = maps
            while len(self._maps) > self.size:
                self._maps.popitem(last=False)
        return maps

    def rectify(self, cal: Calibration, image: np.ndarray) -> np.ndarray:
        return rectify_image(image, cal, self.maps(cal))


class Rectifier:
    """The node's rectification: its mode, the latest CameraInfo (from the camera_info callback)
    and the map cache. `for_image` runs on the ingest callback and only picks the calibration; the
    returned function builds the maps (first time) and remaps on the engine worker's thread."""

    def __init__(self, mode: str, cache_size: int = 4) -> None:
        if mode not in MODES:
            raise ValueError(f"rectify must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.cache = RectifyCache(cache_size)
        self._lock = threading.Lock()
        self._calibration: Calibration | None = None
        self._received = False
        self._problem = ""

    def on_camera_info(self, msg: Any) -> None:
        """Take a CameraInfo; a bad one is remembered (frames are then rejected with its reason)."""
        try:
            cal, problem = calibration_from_camera_info(msg, self.mode), ""
        except ValueError as exc:
            cal, problem = None, f"camera_info unusable for rectify={self.mode}: {exc}"
        with self._lock:
            self._received, self._calibration, self._problem = True, cal, problem

    def state(self) -> str:
        """One line for status: what happens to frames now."""
        with self._lock:
            cal, received, problem = self._calibration, self._received, self._problem
        if self.mode == "none":
            return "off"
        if problem:
            return problem
        if not received:
            return f"{self.mode}: waiting for camera_info (frames rejected until it comes)"
        if cal is None or cal.is_identity:
            return f"{self.mode}: camera_info has no distortion to remove (frames pass unchanged)"
        return f"{cal.model} {cal.width}x{cal.height}, D={list(cal.d)}"

    def for_image(self, height: int, width: int) -> Callable[[np.ndarray], np.ndarray] | None:
        """The rectification of a frame of this size, to run later on the worker (None: nothing to do).
        ValueError when the frame cannot be rectified (no or bad CameraInfo, size mismatch)."""
        if self.mode == "none":
            return None
        with self._lock:
            cal, received, problem = self._calibration, self._received, self._problem
        if problem:
            raise ValueError(problem)
        if not received:
            raise ValueError(f"rectify={self.mode}: no CameraInfo received yet on camera_info")
        if cal is None or cal.is_identity:
            return None
        if (height, width) != (cal.height, cal.width):
            raise ValueError(f"image {width}x{height} does not match camera_info {cal.width}x{cal.height}")
        cache = self.cache
        return lambda image: cache.rectify(cal, image)
