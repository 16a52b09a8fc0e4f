"""Synthetic recordings: procedural rooms and furniture, a robot's camera path, a rendered bag.

`synthesize` writes what a real recording leaves behind, so downstream tools cannot tell:

    <out>/bag/metadata.yaml, <out>/bag/bag_0.mcap   Image (rgb8) or CompressedImage, CameraInfo,
                                                    PoseStamped (map frame) per frame at 10 Hz
    <out>/scene.yaml                                the object annotations (spatial_ttt_scene/1)

Scenes: 1-3 rectangular rooms in a row, each pair joined by a doorway; furniture of 15
categories (shapes.py) placed without overlaps, on the floor, against walls, on tables, with doors
and windows on the walls. Paths: the robot visits a few open spots per room through the doorways
and back again (revisits), planned on an occupancy grid with A*, smoothed, at walking speed,
with turns on the spot, a camera that pans and tilts a little, at a height of 1.2-1.5 m.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bags import BagWriter
from spatial_ttt_ros.data.render import Renderer
from spatial_ttt_ros.data.shapes import CATEGORIES, DOOR_HEIGHT, WALL_THICKNESS, Category, doorways
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, CameraPose, look_at_pose
from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.scene import Room, Scene, SceneObject, save_scene

FPS = 10
START_NS = 1_700_000_000 * 10**9
ROOM_NAMES = ("living_room", "kitchen", "bedroom", "office", "dining_room")
# What furnishes each kind of room, most important first (weights for the random picks).
ROOM_FURNITURE = {
    "living_room": {"sofa": 3, "table": 2, "tv": 2, "lamp": 2, "plant": 2, "shelf": 2, "chair": 1, "cabinet": 1},
    "kitchen": {"refrigerator": 3, "table": 3, "cabinet": 3, "stool": 2, "trash_can": 2, "plant": 1},
    "bedroom": {"bed": 4, "cabinet": 2, "lamp": 2, "shelf": 1, "plant": 1, "tv": 1, "chair": 1},
    "office": {"table": 3, "shelf": 3, "cabinet": 2, "plant": 2, "trash_can": 2, "lamp": 1, "sofa": 1},
    "dining_room": {"table": 4, "cabinet": 2, "plant": 2, "lamp": 1, "shelf": 1, "tv": 1},
}
ROBOT_RADIUS = 0.3
GRID = 0.1  # metres per planning cell


def _overlap(a: OrientedBox, b: OrientedBox, margin: float) -> bool:
    """Boxes (yaw only) closer than `margin` in plan view and overlapping in height."""
    if a.z_min >= b.z_max or b.z_min >= a.z_max:
        return False
    pa, pb = a.footprint(), b.footprint()
    for poly in (pa, pb):
        for k in range(4):
            e = poly[(k + 1) % 4] - poly[k]
            axis = np.array([-e[1], e[0]]) / np.linalg.norm(e)
            sa, sb = pa @ axis, pb @ axis
            if sa.max() + margin <= sb.min() or sb.max() + margin <= sa.min():
                return False
    return True


@dataclass
class _Room:
    room: Room
    kind: str
    x0: float
    x1: float
    y0: float
    y1: float


class _Placer:
    """Places objects one by one, rejecting overlaps with what is there and with keep-out zones."""

    def __init__(self, rng: np.random.Generator, keep_out: list[OrientedBox]) -> None:
        self.rng, self.keep_out = rng, keep_out
        self.objects: list[SceneObject] = []
        self.counts: dict[str, int] = {}

    def free(self, box: OrientedBox, margin: float = 0.08, ignore: OrientedBox | None = None) -> bool:
        others = [o.box for o in self.objects if o.box is not ignore] + self.keep_out
        return not any(_overlap(box, other, margin) for other in others)

    def size(self, cat: Category) -> np.ndarray:
        return self.rng.uniform(cat.size_min, cat.size_max).round(3)

    def add(self, cat: Category, box: OrientedBox) -> SceneObject:
        k = self.counts.get(cat.name, 0)
        self.counts[cat.name] = k + 1
        color = cat.colors[int(self.rng.integers(len(cat.colors)))]
        obj = SceneObject(f"{cat.name}_{k}", cat.name, box, tuple(int(c) for c in color))
        self.objects.append(obj)
        return obj

    def against_wall(self, r: _Room, cat: Category, size: np.ndarray, z: float | None = None,
                     tries: int = 30) -> OrientedBox | None:
        """A box with its back (local -y) to one of the room's walls, facing into the room."""
        walls = [((r.x0, r.y0), (1, 0)), ((r.x1, r.y0), (0, 1)), ((r.x1, r.y1), (-1, 0)), ((r.x0, r.y1), (0, -1))]
        for _ in range(tries):
            (ax, ay), (dx, dy) = walls[int(self.rng.integers(4))]
            length = abs((r.x1 - r.x0) * dx) + abs((r.y1 - r.y0) * dy)
            lo, hi = size[0] / 2 + 0.15, length - size[0] / 2 - 0.15
            if hi <= lo:
                continue
            s = self.rng.uniform(lo, hi)
            inward = np.array([-dy, dx], dtype=np.float64)
            xy = np.array([ax, ay]) + np.array([dx, dy]) * s + inward * (WALL_THICKNESS + size[1] / 2 + 0.01)
            zc = size[2] / 2 if z is None else z
            box = OrientedBox(np.array([xy[0], xy[1], zc]), size, math.atan2(dy, dx))
            if self.free(box):
                return box
        return None

    def on_floor(self, r: _Room, size: np.ndarray, yaw: float, near_wall: bool = False,
                 tries: int = 30) -> OrientedBox | None:
        m = WALL_THICKNESS + max(size[:2]) / 2 + 0.1
        for _ in range(tries):
            x, y = self.rng.uniform(r.x0 + m, r.x1 - m), self.rng.uniform(r.y0 + m, r.y1 - m)
            if near_wall:  # plants, lamps and bins gather along the walls and in corners
                side = int(self.rng.integers(4))
                x = (r.x0 + m, r.x1 - m)[side] if side < 2 else x
                y = (r.y0 + m, r.y1 - m)[side - 2] if side >= 2 else y
            box = OrientedBox(np.array([x, y, size[2] / 2]), size, yaw)
            if self.free(box):
                return box
        return None


def _furnish(placer: _Placer, r: _Room, rng: np.random.Generator) -> None:
    area = (r.x1 - r.x0) * (r.y1 - r.y0)
    menu = ROOM_FURNITURE[r.kind]
    names, weights = list(menu), np.array(list(menu.values()), dtype=np.float64)
    # The room's signature piece first, then weighted picks until the floor is about a third full.
    picks = [names[0]] + list(rng.choice(names, size=int(area / 2.2), p=weights / weights.sum()))
    used = 0.0
    for name in picks:
        if used > 0.33 * area:
            break
        cat = CATEGORIES[name]
        size = placer.size(cat)
        if cat.placement == "mount":
            box = placer.against_wall(r, cat, size, z=rng.uniform(*cat.mount_z))
        elif cat.placement == "wall":
            box = placer.against_wall(r, cat, size)
        elif name == "table":
            box = _table_group(placer, r, cat, size, rng)
        else:
            yaw = rng.uniform(-np.pi, np.pi)
            box = placer.on_floor(r, size, yaw, near_wall=name in ("plant", "lamp", "trash_can"))
        if box is not None:
            if name != "table":
                placer.add(cat, box)
            used += size[0] * size[1]


def _table_group(placer: _Placer, r: _Room, cat: Category, size: np.ndarray,
                 rng: np.random.Generator) -> OrientedBox | None:
    """A dining table with chairs around it, or a desk against a wall with a monitor and a chair."""
    chair = CATEGORIES["stool" if r.kind == "kitchen" else "chair"]
    if r.kind == "office" or (r.kind == "living_room" and rng.random() < 0.3):
        desk = placer.against_wall(r, cat, np.array([min(size[0], 1.4), 0.7, 0.75]))
        if desk is None:
            return None
        placer.add(cat, desk)
        mon_cat = CATEGORIES["monitor"]
        mon = placer.size(mon_cat)
        top = desk.z_max + mon[2] / 2
        placer.add(mon_cat, OrientedBox(np.array([desk.center[0], desk.center[1], top]), mon, desk.yaw))
        spots = [(0.0, 1.0)]
    else:
        yaw = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05))
        desk = placer.on_floor(r, size, yaw)
        if desk is None:
            return None
        placer.add(cat, desk)
        spots = [(-0.5, 1.0), (0.5, 1.0), (-0.5, -1.0), (0.5, -1.0), (1.0, 0.0), (-1.0, 0.0)]
        spots = [spots[i] for i in rng.permutation(len(spots))[: int(rng.integers(2, 5))]]
    rot = desk.rotation[:2, :2]
    for fx, fy in spots:
        csize = placer.size(chair)
        gap = csize[1] / 2 + 0.05  # the chair stands just clear of the table, facing it
        local = (fx * desk.half[0] * 0.5, fy * (desk.half[1] + gap)) if fy else (fx * (desk.half[0] + gap), 0.0)
        xy = desk.center[:2] + rot @ np.asarray(local)
        to_table = desk.center[:2] - xy
        yaw = math.atan2(-to_table[0], to_table[1])  # local +y (the chair's front) towards the table
        box = OrientedBox(np.array([xy[0], xy[1], csize[2] / 2]), csize, yaw)
        if placer.free(box, margin=0.02):
            placer.add(chair, box)
    return desk


def generate_scene(seed: int, n_rooms: int | None = None) -> Scene:
    """A furnished home of 1-3 rooms, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    n_rooms = int(rng.integers(1, 4)) if n_rooms is None else n_rooms
    if not 1 <= n_rooms <= len(ROOM_NAMES):
        raise ValueError(f"n_rooms must be in 1..{len(ROOM_NAMES)}, got {n_rooms}")
    kinds = [ROOM_NAMES[i] for i in rng.permutation(len(ROOM_NAMES))[:n_rooms]]
    height = round(float(rng.uniform(2.5, 2.9)), 2)
    rooms: list[_Room] = []
    x = 0.0
    for kind in kinds:
        w, d = round(float(rng.uniform(3.6, 6.0)), 2), round(float(rng.uniform(3.4, 5.0)), 2)
        poly = ((x, 0.0), (x + w, 0.0), (x + w, d), (x, d))
        rooms.append(_Room(Room(kind, poly, height), kind, x, x + w, 0.0, d))
        x += w
    scene_rooms = tuple(r.room for r in rooms)
    keep_out = []
    for door in doorways(scene_rooms):  # a clear passage through each doorway
        keep_out.append(OrientedBox(np.array([door.center[0], door.center[1], 1.0]),
                                    np.array([door.width + 0.3, 2.4, 2.0]), math.atan2(door.direction[1], door.direction[0])))
    placer = _Placer(rng, keep_out)
    door_cat, window_cat = CATEGORIES["door"], CATEGORIES["window"]
    for i, r in enumerate(rooms):
        if i in (0, n_rooms - 1) or rng.random() < 0.3:
            size = placer.size(door_cat)
            box = placer.against_wall(r, door_cat, size, z=size[2] / 2)
            if box is not None:
                placer.add(door_cat, box)
                swing = OrientedBox(box.center + np.r_[box.rotation[:2, 1] * 0.55, 0], np.array([size[0] + 0.2, 1.0, 2.0]), box.yaw)
                placer.keep_out.append(swing)
        for _ in range(int(rng.integers(1, 3))):
            size = placer.size(window_cat)
            box = placer.against_wall(r, window_cat, size, z=rng.uniform(*window_cat.mount_z))
            if box is not None:
                placer.add(window_cat, box)
        _furnish(placer, r, rng)
    return Scene(frame_id="map", rooms=scene_rooms, objects=tuple(placer.objects), name=f"synthetic_{seed}")


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
        poly = np.asarray(room.polygon)
        c = poly.mean(axis=0)
        inner = c + (poly - c) * (1 - 2 * WALL_THICKNESS / np.ptp(poly, axis=0).clip(min=1e-3))
        cv2.fillConvexPoly(free, cells(inner), 1, shift=4)
        mask = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(mask, cells(poly), 1, shift=4)
        room_of[mask > 0] = i
    for door in doorways(scene.rooms):
        box = OrientedBox(np.r_[door.center, 1.0], np.array([door.width, 4 * WALL_THICKNESS, 2.0]),
                          math.atan2(door.direction[1], door.direction[0]))
        cv2.fillConvexPoly(free, cells(box.footprint()), 1, shift=4)
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
    """A few well-spread open cells per room (farthest-point sampling)."""
    out = []
    for i in range(int(room_of.max()) + 1):
        cand = np.argwhere((room_of == i) & (clearance >= max(0.5, ROBOT_RADIUS + 0.1)))
        if len(cand) == 0:
            cand = np.argwhere((room_of == i) & (clearance >= ROBOT_RADIUS))
        if len(cand) == 0:
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


def generate_trajectory(scene: Scene, seed: int, n_frames: int, speed: float = 0.4) -> list[CameraPose]:
    """Camera poses (optical frame in the map) at 10 Hz of a robot touring the rooms and back."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng([seed, 1])
    clearance, origin, room_of = _occupancy(scene)
    cost = np.where(clearance >= ROBOT_RADIUS, 1.0 + 2.0 * np.clip(1.0 - clearance, 0, None), np.inf)
    per_room = _waypoints(clearance, room_of, rng)
    order = list(range(len(per_room))) + list(range(len(per_room) - 2, -1, -1))
    tour = [wp for i, room in enumerate(order) for wp in (per_room[room] if i < len(per_room) else per_room[room][::-1])]
    if not tour:
        raise ValueError(f"scene {scene.name!r} has no free floor for a robot of radius {ROBOT_RADIUS} m")
    # Stitch legs with A*; a waypoint that cannot be reached is skipped.
    cells, spins = [tour[0]], []
    for wp in tour[1:]:
        leg = _astar(cost, cells[-1], wp)
        if leg is None or len(leg) < 2:
            continue
        cells += leg[1:]
        spins.append(len(cells) - 1)
    xy = origin + (np.array(cells, dtype=np.float64)[:, ::-1]) * GRID
    keys = _densify(xy, spins, step=speed / FPS)

    positions, yaws = _walk(keys, n_frames, rng)
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


def _walk(keys: list[tuple[np.ndarray, bool]], n_frames: int, rng: np.random.Generator
          ) -> tuple[list[np.ndarray], list[float]]:
    """Positions and headings along the keys, turning smoothly, spinning on the spot where
    flagged; when the tour ends early it is walked back (another revisit)."""
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
                turn = rng.choice([-1, 1]) * rng.uniform(np.radians(60), np.radians(200))
                for a in np.linspace(0, turn, int(abs(turn) / np.radians(5)) + 1)[1:]:
                    positions.append(p)
                    yaws.append(yaw + a)
                yaw += turn
            if len(positions) >= n_frames:
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


@dataclass(frozen=True)
class SynthResult:
    bag: Path
    scene_file: Path
    frames: int
    render_fps: float


def synthesize(out_dir: str | Path, seed: int, n_frames: int, width: int = 480, height: int = 352, *,
               n_rooms: int | None = None, hfov_deg: float = 70.0, compressed: bool = False,
               noise: float = 2.0) -> SynthResult:
    """Render a synthetic recording into `out_dir` (layout in the module doc); deterministic in seed."""
    out = Path(out_dir)
    scene = generate_scene(seed, n_rooms)
    poses = generate_trajectory(scene, seed, n_frames)
    intr = CameraIntrinsics.from_fov(width, height, hfov_deg)
    renderer = Renderer(scene, intr, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    scene_file = out / "scene.yaml"
    image_topic = msgs.TOPIC_IMAGE_COMPRESSED if compressed else msgs.TOPIC_IMAGE
    render_s = 0.0
    with BagWriter(out / "bag") as bag:
        for topic in (image_topic, msgs.TOPIC_CAMERA_INFO, msgs.TOPIC_POSE):
            bag.add_topic(topic, msgs.TOPIC_TYPES[topic])
        for i, pose in enumerate(poses):
            stamp = START_NS + i * (10**9 // FPS)
            t0 = time.perf_counter()
            rgb = renderer.render(pose).rgb
            render_s += time.perf_counter() - t0
            if noise > 0:  # sensor noise, seeded per frame
                grain = np.random.default_rng([seed, 2, i]).normal(0, noise, rgb.shape)
                rgb = np.clip(rgb + grain, 0, 255).astype(np.uint8)
            image = msgs.compressed_image_msg(rgb, stamp) if compressed else msgs.image_msg(rgb, stamp)
            bag.write(image_topic, stamp, image)
            bag.write(msgs.TOPIC_CAMERA_INFO, stamp, msgs.camera_info_msg(intr.matrix, width, height, stamp))
            bag.write(msgs.TOPIC_POSE, stamp, msgs.pose_msg(pose.position, pose.orientation, stamp, scene.frame_id))
    save_scene(scene, scene_file)
    return SynthResult(out / "bag", scene_file, n_frames, n_frames / max(render_s, 1e-9))


def cli_synth(argv: list[str]) -> int:
    """`spatial-ttt synth --out DIR --seed N --frames N`: write a synthetic recording."""
    parser = argparse.ArgumentParser(prog="spatial-ttt synth", description="Render a synthetic recording (bag + scene file).")
    parser.add_argument("--out", type=Path, required=True, help="output directory (gets bag/ and scene.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=300, help="frames at 10 Hz")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--rooms", type=int, default=None, help="1-5 rooms (default: 1-3 at random)")
    parser.add_argument("--compressed", action="store_true", help="JPEG images on /camera/image_raw/compressed")
    args = parser.parse_args(argv)
    try:
        res = synthesize(args.out, args.seed, args.frames, args.width, args.height,
                         n_rooms=args.rooms, compressed=args.compressed)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {res.frames} frames to {res.bag} and {res.scene_file} (rendering {res.render_fps:.0f} frames/s)")
    return 0
