"""Synthetic recordings: procedural rooms and furniture, a robot's camera path, a rendered bag.

`synthesize` writes what a real recording leaves behind, so downstream tools cannot tell:

    <out>/bag/metadata.yaml, <out>/bag/bag_0.mcap   Image (rgb8) or CompressedImage, CameraInfo,
                                                    PoseStamped (map frame) per frame at 10 Hz
    <out>/scene.yaml                                the object annotations (spatial_ttt_scene/1)

Scenes: 1-3 rectangular rooms in a row, each pair joined by a doorway; furniture of 15
categories (shapes.py) placed without overlaps, on the floor, against walls, on tables, with doors
and windows on the walls, and clear lanes through the doorways. Camera paths: trajectory.py.
Images: render.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bags import BagWriter
from spatial_ttt_ros.data.render import Renderer
from spatial_ttt_ros.data.shapes import CATEGORIES, WALL_THICKNESS, Category, doorways
from spatial_ttt_ros.data.trajectory import FPS, TOURS, generate_trajectory
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, CameraPose
from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.scene import Room, Scene, SceneObject, save_scene

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

    @staticmethod
    def inside(r: _Room, box: OrientedBox) -> bool:
        """The box's footprint lies within the room, clear of its walls."""
        fp = box.footprint()
        t = WALL_THICKNESS
        return bool(np.all((fp[:, 0] >= r.x0 + t) & (fp[:, 0] <= r.x1 - t) & (fp[:, 1] >= r.y0 + t) & (fp[:, 1] <= r.y1 - t)))

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
            if self.inside(r, box) and self.free(box):
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
            if self.inside(r, box) and self.free(box):
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
        if placer.inside(r, box) and placer.free(box, margin=0.02):
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
    for r in rooms:  # and a clear lane from each of the room's doorways to its centre
        centre = np.array([(r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2])
        for door in doorways(scene_rooms):
            if r.room.contains(door.center[None] + 0.01 * (centre - door.center)[None])[0]:
                lane = centre - door.center
                mid = (centre + door.center) / 2
                keep_out.append(OrientedBox(np.array([mid[0], mid[1], 0.8]), np.array([np.linalg.norm(lane) + 0.45, 0.9, 1.6]),
                                            math.atan2(lane[1], lane[0])))
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


@dataclass(frozen=True)
class SynthResult:
    bag: Path
    scene_file: Path
    frames: int
    render_fps: float


@dataclass(frozen=True)
class SynthFrame:
    index: int            # index in the 10 Hz trajectory (the grain noise is seeded by it)
    stamp_ns: int
    pose: CameraPose
    rgb: np.ndarray       # [H, W, 3] uint8, sensor noise included


def stream_frames(scene: Scene, seed: int, n_frames: int, intrinsics: CameraIntrinsics, *, stride: int = 1,
                  tour: str = "return", noise: float = 2.0) -> Iterator[SynthFrame]:
    """The frames a synthetic recording holds: every `stride`-th pose of the 10 Hz trajectory
    (`n_frames` poses long), rendered with seeded sensor noise. `synthesize` writes exactly these;
    bulk data tools (train/demo_data.py) render them without the bag."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    poses = generate_trajectory(scene, seed, n_frames, tour=tour)
    renderer = Renderer(scene, intrinsics, seed=seed)
    for i in range(0, n_frames, stride):
        rgb = renderer.render(poses[i]).rgb
        if noise > 0:  # sensor noise, seeded per frame
            grain = np.random.default_rng([seed, 2, i]).standard_normal(rgb.shape, dtype=np.float32)
            rgb = np.clip(rgb + noise * grain, 0, 255).astype(np.uint8)
        yield SynthFrame(i, START_NS + i * (10**9 // FPS), poses[i], rgb)


def synthesize(out_dir: str | Path, seed: int, n_frames: int, width: int = 480, height: int = 352, *,
               n_rooms: int | None = None, hfov_deg: float = 70.0, compressed: bool = False,
               noise: float = 2.0, stride: int = 1, tour: str = "return") -> SynthResult:
    """Render a synthetic recording into `out_dir` (layout in the module doc); deterministic in seed.

    stride: keep every stride-th frame of the 10 Hz trajectory (a keyframe recording; stamps stay
    the trajectory's). tour: "return" (through the rooms and back) or "oneway" (trajectory.py).
    """
    out = Path(out_dir)
    scene = generate_scene(seed, n_rooms)
    intr = CameraIntrinsics.from_fov(width, height, hfov_deg)
    frames = stream_frames(scene, seed, n_frames, intr, stride=stride, tour=tour, noise=noise)
    out.mkdir(parents=True, exist_ok=True)
    scene_file = out / "scene.yaml"
    image_topic = msgs.TOPIC_IMAGE_COMPRESSED if compressed else msgs.TOPIC_IMAGE
    render_s, written = 0.0, 0
    with BagWriter(out / "bag") as bag:
        for topic in (image_topic, msgs.TOPIC_CAMERA_INFO, msgs.TOPIC_POSE):
            bag.add_topic(topic, msgs.TOPIC_TYPES[topic])
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            render_s += time.perf_counter() - t0
            if frame is None:
                break
            stamp, pose, rgb = frame.stamp_ns, frame.pose, frame.rgb
            image = msgs.compressed_image_msg(rgb, stamp) if compressed else msgs.image_msg(rgb, stamp)
            bag.write(image_topic, stamp, image)
            bag.write(msgs.TOPIC_CAMERA_INFO, stamp, msgs.camera_info_msg(intr.matrix, width, height, stamp))
            bag.write(msgs.TOPIC_POSE, stamp, msgs.pose_msg(pose.position, pose.orientation, stamp, scene.frame_id))
            written += 1
    save_scene(scene, scene_file)
    return SynthResult(out / "bag", scene_file, written, written / max(render_s, 1e-9))


def cli_synth(argv: list[str]) -> int:
    """`spatial-ttt synth --out DIR --seed N --frames N`: write a synthetic recording."""
    parser = argparse.ArgumentParser(prog="spatial-ttt synth", description="Render a synthetic recording (bag + scene file).")
    parser.add_argument("--out", type=Path, required=True, help="output directory (gets bag/ and scene.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=300, help="trajectory length in frames at 10 Hz")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--rooms", type=int, default=None, help="1-5 rooms (default: 1-3 at random)")
    parser.add_argument("--compressed", action="store_true", help="JPEG images on /camera/image_raw/compressed")
    parser.add_argument("--stride", type=int, default=1, help="keep every N-th frame of the 10 Hz trajectory")
    parser.add_argument("--tour", choices=TOURS, default="return",
                        help="return: through the rooms and back; oneway: never comes back (memory tests)")
    args = parser.parse_args(argv)
    try:
        res = synthesize(args.out, args.seed, args.frames, args.width, args.height,
                         n_rooms=args.rooms, compressed=args.compressed, stride=args.stride, tour=args.tour)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {res.frames} frames to {res.bag} and {res.scene_file} (rendering {res.render_fps:.0f} frames/s)")
    return 0
