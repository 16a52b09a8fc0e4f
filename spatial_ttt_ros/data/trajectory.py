"""A robot's camera path through a scene: planned on an occupancy grid, smoothed, at 10 Hz.

The robot (a disc of ROBOT_RADIUS) visits a few open spots per room, well spread and preferring
open floor, going through the doorways to the last room and back again (revisits; tour "return"),
or to the last room only (tour "oneway": it never comes back, and once the tour is walked it
keeps looking around on its last spot, so what it saw in the first rooms stays behind), along A*
paths that keep about a metre from walls and furniture where the room allows. It walks at
`speed`, turns at most 60 deg/s, looks around on the spot at each waypoint, and its camera pans
and tilts a little at a height of 1.2-1.5 m. Poses are of the camera optical frame (camera.py).
"""

from __future__ import annotations

import heapq
import math

import cv2
import numpy as np

from spatial_ttt_ros.data.shapes import doorways, wall_boxes
from spatial_ttt_ros.spatial.camera import CameraPose, look_at_pose
from spatial_ttt_ros.spatial.scene import Scene

FPS = 10
TOURS = ("return", "oneway")
ROBOT_RADIUS = 0.25
GRID = 0.1  # metres per planning cell


def _occupancy(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clearance [H, W] metres to the nearest obstacle, grid origin xy, room index per cell)."""
    pts = np.concatenate([np.asarray(r.polygon) for r in scene.rooms])
    origin = pts.min(axis=0) - 0.5
    shape = tuple(np.ceil((pts.max(axis=0) + 0.5 - origin) / GRID).astype(int))[::-1]  # rows = y

    def cells(poly: np.ndarray) -> np.ndarray:
        return np.round((poly - origin) / GRID * 16).astype(np.int32)

    free = np.zeros(shape, np.uint8)
    room_of = np.full(shape, -1, np.int16)
    for i, room in enumerate(scene.rooms):
        cv2.fillConvexPoly(free, cells(np.asarray(room.polygon)), 1, shift=4)
        room_of[free > 0] = np.where(room_of[free > 0] < 0, i, room_of[free > 0])
    openings = doorways(scene.rooms)
    for room in scene.rooms:
        for wall in wall_boxes(room, openings, room.height or 2.6):
            if wall.z_min < 1.0:  # lintels above doorways are no obstacle
                cv2.fillConvexPoly(free, cells(wall.footprint()), 0, shift=4)
    for obj in scene.objects:
        if obj.box.z_min < 1.6:  # anything the robot's body could hit
            cv2.fillConvexPoly(free, cells(obj.box.footprint()), 0, shift=4)
    clearance = cv2.distanceTransform(free, cv2.DIST_L2, 5) * GRID
    return clearance, origin, room_of


def _astar(cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]] | None:
    """8-connected A* on a cost grid (inf = blocked); returns cells from start to goal."""
    h, w = cost.shape
    steps = [(dy, dx, math.hypot(dy, dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    best = {start: 0.0}
    parent: dict[tuple[int, int], tuple[int, int]] = {}
    todo = [(0.0, start)]
    while todo:
        _, cell = heapq.heappop(todo)
        if cell == goal:
            path = [cell]
            while cell in parent:
                cell = parent[cell]
                path.append(cell)
            return path[::-1]
        g = best[cell]
        for dy, dx, step in steps:
            nxt = (cell[0] + dy, cell[1] + dx)
            if not (0 <= nxt[0] < h and 0 <= nxt[1] < w) or not np.isfinite(cost[nxt]):
                continue
            ng = g + step * cost[nxt]
            if ng < best.get(nxt, math.inf):
                best[nxt], parent[nxt] = ng, cell
                heapq.heappush(todo, (ng + math.hypot(goal[0] - nxt[0], goal[1] - nxt[1]), nxt))
    return None


def _waypoints(clearance: np.ndarray, room_of: np.ndarray, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    """A few well-spread open cells per room (farthest-point sampling), all in the largest
    connected stretch of floor the robot fits in (furniture may cut off a corner or a room)."""
    n, label = cv2.connectedComponents((clearance >= ROBOT_RADIUS).astype(np.uint8))
    if n < 2:
        return [[] for _ in range(int(room_of.max()) + 1)]
    largest = 1 + int(np.argmax(np.bincount(label.ravel())[1:]))
    out = []
    for i in range(int(room_of.max()) + 1):
        # Prefer open floor, so that looking around shows the room rather than a wall.
        for need in (0.9, 0.5, ROBOT_RADIUS):
            cand = np.argwhere((room_of == i) & (label == largest) & (clearance >= need))
            if len(cand):
                break
        else:
            out.append([])
            continue
        chosen = [cand[int(rng.integers(len(cand)))]]
        for _ in range(int(rng.integers(2, 5)) - 1):
            d = np.min([np.hypot(*(cand - c).T) for c in chosen], axis=0)
            if d.max() * GRID < 1.0:
                break
            chosen.append(cand[int(np.argmax(d))])
        out.append([tuple(int(v) for v in c) for c in chosen])
    return out


def generate_trajectory(scene: Scene, seed: int, n_frames: int, speed: float = 0.4,
                        tour: str = "return") -> list[CameraPose]:
    """Camera poses (optical frame in the map) at 10 Hz of a robot touring the rooms and back
    (tour "return") or through them once (tour "oneway"; module doc)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if tour not in TOURS:
        raise ValueError(f"tour must be one of {TOURS}, got {tour!r}")
    rng = np.random.default_rng([seed, 1])
    clearance, origin, room_of = _occupancy(scene)
    # Keep a metre from walls and furniture where the room allows; never closer than the robot's radius.
    cost = np.where(clearance >= ROBOT_RADIUS, 1.0 + 4.0 * np.clip(1.0 - clearance, 0, None), np.inf)
    per_room = _waypoints(clearance, room_of, rng)
    order = list(range(len(per_room)))
    if tour == "return":
        order += list(range(len(per_room) - 2, -1, -1))
    stops = [wp for i, room in enumerate(order) for wp in (per_room[room] if i < len(per_room) else per_room[room][::-1])]
    if not stops:
        raise ValueError(f"scene {scene.name!r} has no free floor for a robot of radius {ROBOT_RADIUS} m")
    # Stitch legs with A*; a waypoint that cannot be reached is skipped.
    cells, spins = [stops[0]], []
    for wp in stops[1:]:
        leg = _astar(cost, cells[-1], wp)
        if leg is None or len(leg) < 2:
            continue
        cells += leg[1:]
        spins.append(len(cells) - 1)
    xy = origin + (np.array(cells, dtype=np.float64)[:, ::-1]) * GRID
    keys = _densify(xy, spins, step=speed / FPS)

    positions, yaws = _walk(keys, n_frames, rng, loop=tour == "return")
    t = np.arange(n_frames) / FPS
    height = rng.uniform(1.2, 1.5)
    pan = np.radians(rng.uniform(10, 25)) * np.sin(2 * np.pi * t / rng.uniform(5, 9))
    tilt = np.radians(rng.uniform(-20, -8)) + np.radians(4) * np.sin(2 * np.pi * t / rng.uniform(7, 12))
    poses = []
    for i in range(n_frames):
        yaw_i, tilt_i = yaws[i] + pan[i], tilt[i]
        eye = np.r_[positions[i], height + 0.01 * np.sin(2 * np.pi * t[i] * 1.7)]
        forward = np.array([math.cos(tilt_i) * math.cos(yaw_i), math.cos(tilt_i) * math.sin(yaw_i), math.sin(tilt_i)])
        poses.append(look_at_pose(eye, eye + forward))
    return poses


def _walk(keys: list[tuple[np.ndarray, bool]], n_frames: int, rng: np.random.Generator, loop: bool = True
          ) -> tuple[list[np.ndarray], list[float]]:
    """Positions and headings along the keys, turning smoothly, spinning on the spot where
    flagged; when the tour ends early it is walked back (another revisit), or with `loop` False
    the robot stays on its last spot and keeps turning slowly (30 deg/s)."""
    positions: list[np.ndarray] = []
    yaws: list[float] = []
    yaw = _heading(keys, 0)
    seq = keys
    while len(positions) < n_frames:
        for k, (p, spin) in enumerate(seq):
            yaw += float(np.clip(_wrap(_heading(seq, k) - yaw), -np.radians(6), np.radians(6)))  # <= 60 deg/s
            positions.append(p)
            yaws.append(yaw)
            if spin:
                turn = rng.choice([-1, 1]) * rng.uniform(np.radians(45), np.radians(160))
                for a in np.linspace(0, turn, int(abs(turn) / np.radians(5)) + 1)[1:]:
                    positions.append(p)
                    yaws.append(yaw + a)
                yaw += turn
            if len(positions) >= n_frames:
                break
        if not loop:
            while len(positions) < n_frames:
                yaw += np.radians(3)
                positions.append(seq[-1][0])
                yaws.append(yaw)
            break
        seq = seq[::-1]
    return positions[:n_frames], yaws[:n_frames]


def _densify(xy: np.ndarray, spins: list[int], step: float) -> list[tuple[np.ndarray, bool]]:
    """Smooth a grid path and resample it every `step` metres; flags the points to spin at."""
    k = 5
    padded = np.concatenate([np.repeat(xy[:1], k, 0), xy, np.repeat(xy[-1:], k, 0)])
    kernel = np.ones(2 * k + 1) / (2 * k + 1)
    smooth = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], axis=1)
    seg = np.linalg.norm(np.diff(smooth, axis=0), axis=1)
    dist = np.r_[0.0, np.cumsum(seg)]
    samples = np.arange(0.0, dist[-1] + 1e-9, step) if dist[-1] > 0 else np.zeros(1)
    pts = np.stack([np.interp(samples, dist, smooth[:, i]) for i in range(2)], axis=1)
    spin_at = {int(np.searchsorted(samples, dist[s])) for s in spins}
    return [(p, i in spin_at) for i, p in enumerate(pts)]


def _heading(keys: list[tuple[np.ndarray, bool]], k: int) -> float:
    a, b = keys[max(k - 2, 0)][0], keys[min(k + 2, len(keys) - 1)][0]
    d = b - a
    return math.atan2(d[1], d[0]) if np.linalg.norm(d) > 1e-6 else 0.0


def _wrap(angle: float) -> float:
    return (angle + np.pi) % (2 * np.pi) - np.pi
