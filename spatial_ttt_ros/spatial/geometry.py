"""3-D geometry of annotated objects: yaw-rotated boxes, distances, directions, visibility.

Frames and units follow camera.py: world z up, metres, radians. An `OrientedBox` is a cuboid whose
local x and y axes are the world x and y rotated by `yaw` about +z (counter-clockwise seen from
above) and whose local z is world z; `size` holds the full extents along local x, y, z.

Distances follow VSI-Bench, "measuring from the closest point of each object": the distance
between two boxes is the length of the shortest segment joining them, 0 when they touch or
overlap. Directions follow VSI-Bench's relative-direction questions: standing at one object and
facing another, a third is "left" or "right" by the sign of the turn towards it, "back" when one
would have to turn at least 135 degrees to face it, and the "hard" variant names the four
quadrants (front-left, front-right, back-left, back-right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatial_ttt_ros.spatial.camera import (
    ArrayLike,
    CameraIntrinsics,
    CameraPose,
    as_points,
    in_image,
    project,
    world_to_camera,
)


@dataclass(frozen=True, eq=False)
class OrientedBox:
    center: np.ndarray  # [3] metres, world frame
    size: np.ndarray  # [3] full extents along local x, y, z, metres, > 0
    yaw: float = 0.0  # radians about +z

    def __post_init__(self) -> None:
        c = np.asarray(self.center, dtype=np.float64)
        s = np.asarray(self.size, dtype=np.float64)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ValueError(f"box center must be 3 finite numbers, got {np.asarray(self.center).tolist()!r}")
        if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"box size must be 3 positive numbers, got {np.asarray(self.size).tolist()!r}")
        if not math.isfinite(float(self.yaw)):
            raise ValueError(f"box yaw must be a finite number of radians, got {self.yaw!r}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "size", s)
        object.__setattr__(self, "yaw", float(self.yaw))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrientedBox):
            return NotImplemented
        return bool(np.array_equal(self.center, other.center) and np.array_equal(self.size, other.size)
                    and self.yaw == other.yaw)

    def __hash__(self) -> int:
        return hash((tuple(self.center), tuple(self.size), self.yaw))

    @property
    def half(self) -> np.ndarray:
        return self.size / 2

    @property
    def rotation(self) -> np.ndarray:
        """[3, 3] local -> world rotation (yaw about +z)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @property
    def z_min(self) -> float:
        return float(self.center[2] - self.half[2])

    @property
    def z_max(self) -> float:
        return float(self.center[2] + self.half[2])

    @property
    def longest_dimension(self) -> float:
        return float(self.size.max())

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def corners(self) -> np.ndarray:
        """[8, 3] world corners; bit k of the index picks the + side of local axis k."""
        signs = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=np.float64) * 2 - 1
        return (signs * self.half) @ self.rotation.T + self.center

    def footprint(self) -> np.ndarray:
        """[4, 2] the floor rectangle's corners, counter-clockwise."""
        hx, hy = self.half[:2]
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        return local @ self.rotation[:2, :2].T + self.center[:2]

    def to_local(self, points: ArrayLike) -> np.ndarray:
        """World points [N, 3] -> box-local coordinates [N, 3]."""
        return (as_points(points) - self.center) @ self.rotation

    def contains(self, points: ArrayLike, tol: float = 1e-9) -> np.ndarray:
        """[N] bool: inside or on the surface (within tol metres)."""
        return np.all(np.abs(self.to_local(points)) <= self.half + tol, axis=1)

    def closest_point(self, points: ArrayLike) -> np.ndarray:
        """[N, 3] the box's points nearest to each query point (the point itself when inside)."""
        local = np.clip(self.to_local(points), -self.half, self.half)
        return local @ self.rotation.T + self.center

    def distance_to_points(self, points: ArrayLike) -> np.ndarray:
        """[N] Euclidean distance from each point to the box (0 inside)."""
        p = as_points(points)
        return np.linalg.norm(p - self.closest_point(p), axis=1)

    def surface_samples(self, per_edge: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Points on the 6 faces (per_edge x per_edge cell centres each) and their area weights.

        Returns (points [6 * per_edge**2, 3] world, weights [same] m^2, summing to the surface area).
        """
        if per_edge < 1:
            raise ValueError(f"per_edge must be >= 1, got {per_edge}")
        g = (np.arange(per_edge) + 0.5) / per_edge * 2 - 1  # cell centres in (-1, 1)
        a, b = np.meshgrid(g, g, indexing="ij")
        a, b = a.ravel(), b.ravel()
        pts, wts = [], []
        for axis in range(3):
            u, v = [k for k in range(3) if k != axis]
            area = self.size[u] * self.size[v] / per_edge**2
            for sign in (-1.0, 1.0):
                local = np.zeros((len(a), 3))
                local[:, axis] = sign
                local[:, u], local[:, v] = a, b
                pts.append(local * self.half)
                wts.append(np.full(len(a), area))
        return np.concatenate(pts) @ self.rotation.T + self.center, np.concatenate(wts)


def _polygon(polygon: ArrayLike, name: str = "polygon") -> np.ndarray:
    p = np.asarray(polygon, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3 or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be at least 3 finite (x, y) vertices, got shape {p.shape}")
    return p


def signed_polygon_area(polygon: ArrayLike) -> float:
    """Shoelace area, positive for counter-clockwise vertices (m^2)."""
    p = _polygon(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_area(polygon: ArrayLike) -> float:
    """Area of a simple polygon (m^2), either orientation."""
    return abs(signed_polygon_area(polygon))


def point_in_polygon(polygon: ArrayLike, points: ArrayLike) -> np.ndarray:
    """[N] bool: xy points (or the xy of 3-D points) inside a simple polygon (even-odd rule)."""
    poly = _polygon(polygon)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, np.asarray(points).shape[-1])[:, :2]
    x, y = pts[:, 0:1], pts[:, 1:2]  # [N, 1] against edges [1, M]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.sum(crosses & (x < x_at), axis=1) % 2 == 1


def _separated_on_axes(p: np.ndarray, q: np.ndarray, poly: np.ndarray) -> bool:
    edges = np.roll(poly, -1, axis=0) - poly
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)  # [M, 2]
    pp, qq = p @ normals.T, q @ normals.T  # [Np, M], [Nq, M]
    return bool(np.any((pp.max(0) < qq.min(0)) | (qq.max(0) < pp.min(0))))


def _points_to_segments(pts: np.ndarray, poly: np.ndarray) -> float:
    """Smallest distance from any point [N, 2] to any edge of a closed polygon [M, 2]."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a  # [M, 2]
    ap = pts[:, None, :] - a[None]  # [N, M, 2]
    t = np.clip(np.einsum("nmk,mk->nm", ap, ab) / np.einsum("mk,mk->m", ab, ab), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return float(np.min(np.linalg.norm(pts[:, None, :] - closest, axis=2)))


def convex_polygon_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Distance between two convex polygons [N, 2], [M, 2] (0 if they touch or overlap).

    Exact: the separating-axis test (the edge normals of both) decides intersection; two disjoint
    convex polygons are closest at a vertex of one and an edge of the other, so the minimum over
    vertex-to-edge distances in both directions is the distance.
    """
    p, q = _polygon(p, "p"), _polygon(q, "q")
    if not (_separated_on_axes(p, q, p) or _separated_on_axes(p, q, q)):
        return 0.0
    return min(_points_to_segments(p, q), _points_to_segments(q, p))


def box_distance(a: OrientedBox, b: OrientedBox) -> float:
    """Distance between the closest points of two boxes (0 if they intersect or touch).

    Exact for yaw-rotated boxes: each box is its floor rectangle R times its height interval I, so
    the set of differences A - B is (Ra - Rb) x (Ia - Ib), a product set, and the shortest
    difference vector has squared length d_xy^2 + d_z^2 with d_xy the distance between the two
    rectangles and d_z the gap between the height intervals.
    """
    d_xy = convex_polygon_distance(a.footprint(), b.footprint())
    d_z = max(0.0, a.z_min - b.z_max, b.z_min - a.z_max)
    return math.hypot(d_xy, d_z)


def relative_angle(standing_at: ArrayLike, facing: ArrayLike, query: ArrayLike) -> float:
    """Signed turn (degrees, in (-180, 180]) from the facing direction to the query, on the floor.

    Uses the xy components only. Positive = counter-clockwise seen from above = to the left.
    """
    s, f, q = (np.asarray(v, dtype=np.float64)[:2] for v in (standing_at, facing, query))
    heading, target = f - s, q - s
    if np.linalg.norm(heading) < 1e-9:
        raise ValueError(f"facing point {f.tolist()} coincides with the standing point {s.tolist()} on the floor")
    if np.linalg.norm(target) < 1e-9:
        raise ValueError(f"query point {q.tolist()} coincides with the standing point {s.tolist()} on the floor")
    cross = heading[0] * target[1] - heading[1] * target[0]
    angle = math.degrees(math.atan2(cross, float(np.dot(heading, target))))
    return 180.0 if angle == -180.0 else angle


def direction_from_angle(angle_deg: float, difficulty: str = "medium") -> str:
    """VSI-Bench direction word for a signed turn angle (positive = left).

    easy: "left" | "right"; medium: "left" | "right" | "back" (back if |angle| >= 135);
    hard: "front-left" | "front-right" | "back-left" | "back-right" (back if |angle| > 90).
    An angle of exactly 0 or 180 has no side; it is reported as "right" (callers asking questions
    should skip such cases, see qa.py's margins).
    """
    side = "left" if 0 < angle_deg < 180 else "right"
    if difficulty == "easy":
        return side
    if difficulty == "medium":
        return "back" if abs(angle_deg) >= 135 else side
    if difficulty == "hard":
        return ("back-" if abs(angle_deg) > 90 else "front-") + side
    raise ValueError(f"difficulty must be 'easy', 'medium' or 'hard', got {difficulty!r}")


def relative_direction(standing_at: ArrayLike, facing: ArrayLike, query: ArrayLike,
                       difficulty: str = "medium") -> str:
    """Where `query` is for someone standing at `standing_at` and facing `facing` (VSI-Bench words)."""
    return direction_from_angle(relative_angle(standing_at, facing, query), difficulty)


def turn_action(angle_deg: float) -> str:
    """Route-planning turn for a heading change: "Turn Back" (>= 135 deg), "Turn Left" or "Turn Right"."""
    if abs(angle_deg) >= 135:
        return "Turn Back"
    return "Turn Left" if angle_deg > 0 else "Turn Right"


def _segments_blocked(origin: np.ndarray, targets: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
                      halves: np.ndarray) -> np.ndarray:
    """[M] bool: does the open segment origin -> target (t in (0, 1 - eps)) pass through any box?

    origin [3]; targets [M, 3]; boxes as centers [B, 3], rotations [B, 3, 3] (local -> world),
    halves [B, 3]. Slab test in each box's frame, all boxes at once.
    """
    o = np.einsum("bij,bi->bj", rotations, origin[None] - centers)  # [B, 3] origin in each box frame
    d = np.einsum("bij,mi->bmj", rotations, targets - origin[None])  # [B, M, 3] directions, t = 1 at target
    lo, hi = (-halves)[:, None, :], halves[:, None, :]  # [B, 1, 3]
    oo = o[:, None, :]
    zero = d == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_a, t_b = (lo - oo) / d, (hi - oo) / d
    t_near, t_far = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
    # A segment parallel to a slab is inside it everywhere or nowhere.
    inside = (oo >= lo) & (oo <= hi)
    t_near = np.where(zero, np.where(inside, -np.inf, np.inf), t_near)
    t_far = np.where(zero, np.where(inside, np.inf, -np.inf), t_far)
    t0, t1 = t_near.max(axis=2), t_far.min(axis=2)  # [B, M]
    return np.any(np.maximum(t0, 0.0) < np.minimum(t1, 1.0 - 1e-6), axis=0)


def visibility(
    boxes: Sequence[OrientedBox],
    pose: CameraPose,
    intr: CameraIntrinsics,
    depth_samples: int = 4,
    near: float = 0.05,
    max_range: float = math.inf,
    occluders: Sequence[OrientedBox] = (),
) -> np.ndarray:
    """[K] visible fraction of each box's surface area from one camera pose.

    Each face is sampled on a depth_samples x depth_samples grid. A sample counts when it projects
    inside the image, lies between `near` and `max_range` metres in front of the camera, and the
    segment from the camera centre to it meets no box (the others, `occluders` such as walls, and
    the box itself, so faces turned away count as hidden) before reaching it. A box facing the
    camera squarely therefore shows at most about half of its surface.
    """
    if not boxes:
        return np.zeros(0)
    blockers = list(boxes) + list(occluders)
    centers = np.stack([b.center for b in blockers])
    rotations = np.stack([b.rotation for b in blockers])
    halves = np.stack([b.half for b in blockers])
    samples = [b.surface_samples(depth_samples) for b in boxes]
    pts = np.concatenate([p for p, _ in samples])  # [K * S, 3]
    wts = np.concatenate([w for _, w in samples])
    owner = np.repeat(np.arange(len(boxes)), [len(p) for p, _ in samples])
    uv, depth, front = project(world_to_camera(pts, pose), intr, near)
    idx = np.flatnonzero(front & in_image(uv, intr) & (depth <= max_range))
    if len(idx):
        idx = idx[~_segments_blocked(pose.position, pts[idx], centers, rotations, halves)]
    visible_area = np.bincount(owner[idx], weights=wts[idx], minlength=len(boxes))
    total_area = np.bincount(owner, weights=wts, minlength=len(boxes))
    return visible_area / total_area
