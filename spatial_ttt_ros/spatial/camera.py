"""Pinhole camera model: poses, quaternions and projection, vectorised with numpy.

Conventions (used by every module of this layer):

* World frame: metres, z up (ROS REP 103: x forward/east, y left/north, z up). Floors lie in z = 0
  unless the scene says otherwise.
* A camera pose is the pose of the camera OPTICAL frame in the world frame (REP 103 "_optical"
  suffix: x right, y down, z forward along the viewing direction), given as a position (3,) and an
  orientation quaternion (x, y, z, w), exactly like geometry_msgs/Pose. The rotation R maps
  optical-frame vectors to world vectors: p_world = R @ p_cam + position.
* Intrinsics come from sensor_msgs/CameraInfo K = [fx 0 cx; 0 fy cy; 0 0 1] plus the image size.
  Pixel (u, v) = (fx * x / z + cx, fy * y / z + cy) for a point (x, y, z) in the optical frame;
  u grows to the right, v downwards; a pixel is "in the image" when 0 <= u < width and
  0 <= v < height (half-pixel conventions are below the accuracy that matters here). Distortion
  is not modelled: use rectified images (CameraInfo P / K of image_rect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _vec(x: ArrayLike, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be {n} finite numbers, got {np.asarray(x).tolist()!r}")
    return a


def quaternion_to_matrix(q: ArrayLike) -> np.ndarray:
    """Rotation matrix [..., 3, 3] from quaternion(s) [..., 4] ordered (x, y, z, w); normalises them."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternion must have 4 components (x, y, z, w), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(~np.isfinite(norm)) or np.any(norm < 1e-9):
        raise ValueError(f"quaternion must be finite and non-zero, got {q.tolist()!r}")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    r = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return r.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(r: ArrayLike) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 from a rotation matrix [3, 3] (Shepperd's method)."""
    m = np.asarray(r, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ValueError(f"rotation matrix must be a finite 3x3 array, got shape {m.shape}")
    if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
        raise ValueError("rotation matrix must be orthonormal with determinant +1")
    tr = np.trace(m)
    # Pick the largest of w, x, y, z to divide by, for numerical stability.
    if tr > max(m[0, 0], m[1, 1], m[2, 2]):
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (CameraInfo K) and the image size."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number of pixels, got {v!r}")
        for name in ("cx", "cy"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number of pixels, got {v!r}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"{name} must be a positive whole number of pixels, got {v!r}")

    @classmethod
    def from_k(cls, k: ArrayLike, width: int, height: int) -> CameraIntrinsics:
        """From CameraInfo.k: 9 numbers row-major, or a 3x3 array."""
        m = np.asarray(k, dtype=np.float64).reshape(-1)
        if m.shape != (9,):
            raise ValueError(f"K must have 9 entries (row-major 3x3), got {m.size}")
        return cls(float(m[0]), float(m[4]), float(m[2]), float(m[5]), int(width), int(height))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> CameraIntrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view in degrees."""
        if not 0 < hfov_deg < 180:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg!r}")
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, width / 2, height / 2, int(width), int(height))

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


@dataclass(frozen=True)
class CameraPose:
    """Pose of the camera optical frame in the world frame (geometry_msgs/Pose layout)."""

    position: np.ndarray  # [3] metres
    orientation: np.ndarray  # [4] quaternion (x, y, z, w)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _vec(self.position, 3, "position"))
        q = _vec(self.orientation, 4, "orientation")
        n = np.linalg.norm(q)
        if n < 1e-9:
            raise ValueError(f"orientation quaternion must be non-zero, got {q.tolist()!r}")
        object.__setattr__(self, "orientation", q / n)

    @property
    def rotation(self) -> np.ndarray:
        """[3, 3] optical-frame -> world rotation."""
        return quaternion_to_matrix(self.orientation)

    @property
    def forward(self) -> np.ndarray:
        """[3] the viewing direction (optical +z) in the world frame."""
        return self.rotation[:, 2]

    @classmethod
    def from_matrix(cls, rotation: ArrayLike, position: ArrayLike) -> CameraPose:
        return cls(np.asarray(position, dtype=np.float64), matrix_to_quaternion(rotation))


def as_points(points: ArrayLike, name: str = "points") -> np.ndarray:
    """A point or points as a float64 [N, 3] array; ValueError for any other shape."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {np.asarray(points).shape}")
    return p


def world_to_camera(points: ArrayLike, pose: CameraPose) -> np.ndarray:
    """World points [N, 3] -> optical-frame points [N, 3]: R^T (p - t)."""
    p = as_points(points)
    return (p - pose.position) @ pose.rotation


def camera_to_world(points_cam: ArrayLike, pose: CameraPose) -> np.ndarray:
    """Optical-frame points [N, 3] -> world points [N, 3]: R p + t."""
    p = as_points(points_cam, "points_cam")
    return p @ pose.rotation.T + pose.position


def project(points_cam: ArrayLike, intr: CameraIntrinsics, min_depth: float = 1e-6
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project optical-frame points.

    Returns (uv [N, 2] pixels, NaN where not in front; depth [N] = optical z in metres;
    in_front [N] bool, depth > min_depth).
    """
    p = as_points(points_cam, "points_cam")
    depth = p[:, 2]
    in_front = depth > min_depth
    uv = np.full((len(p), 2), np.nan)
    z = depth[in_front]
    uv[in_front, 0] = intr.fx * p[in_front, 0] / z + intr.cx
    uv[in_front, 1] = intr.fy * p[in_front, 1] / z + intr.cy
    return uv, depth, in_front


def in_image(uv: np.ndarray, intr: CameraIntrinsics) -> np.ndarray:
    """[N] bool: pixel inside [0, width) x [0, height) (False for NaN)."""
    uv = np.asarray(uv, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)


def pixel_rays(uv: ArrayLike, intr: CameraIntrinsics) -> np.ndarray:
    """Unit viewing rays [N, 3] in the optical frame through pixels uv [N, 2]."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    d = np.stack([(uv[:, 0] - intr.cx) / intr.fx, (uv[:, 1] - intr.cy) / intr.fy, np.ones(len(uv))], axis=1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def look_at_pose(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> CameraPose:
    """Camera at `eye` looking at `target`, image "up" as close to world `up` as possible."""
    eye = _vec(eye, 3, "eye")
    z = _vec(target, 3, "target") - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError(f"target must differ from eye, both are {eye.tolist()!r}")
    z /= np.linalg.norm(z)
    # Optical x (right) = forward x up; optical y (down) = forward x right.
    x = np.cross(z, _vec(up, 3, "up"))
    if np.linalg.norm(x) < 1e-6:
        raise ValueError(f"viewing direction {z.tolist()!r} is parallel to up; choose another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return CameraPose.from_matrix(np.stack([x, y, z], axis=1), eye)
