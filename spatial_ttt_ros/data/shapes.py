"""What synthetic things look like: object categories built from boxes and cylinders, and rooms.

An object's parts live in its annotation box (centre, size, yaw from the scene file): local x is
the width, local y the depth with the front facing +y, local z up. Parts are derived from the
category, size, colour and id alone, so any scene file renders the same way it was generated.
Room structure (walls with doorways between rooms sharing an edge) is likewise derived from the
room polygons.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.scene import Room

WALL_THICKNESS = 0.08  # metres, inside each room's polygon
DOOR_HEIGHT = 2.1  # top of a doorway between rooms
DOORWAY_WIDTH = 0.9

WOOD = ((150, 105, 65), (120, 80, 50), (185, 145, 100), (95, 65, 45))
WHITE = ((235, 235, 230), (215, 215, 210))
DARK = ((35, 35, 38), (60, 60, 65))
FABRIC = ((110, 115, 125), (60, 85, 130), (80, 110, 80), (190, 170, 140), (150, 50, 50), (70, 70, 75))
BRIGHT = ((200, 40, 40), (40, 90, 180), (230, 170, 40), (60, 150, 90))


@dataclass(frozen=True)
class Category:
    """Size range (width x, depth y, height z in metres), colour family and where it goes."""

    name: str
    size_min: tuple[float, float, float]
    size_max: tuple[float, float, float]
    colors: tuple[tuple[int, int, int], ...]
    placement: str  # "wall" (back to a wall), "mount" (on a wall, above the floor), "floor", "on_table"
    mount_z: tuple[float, float] = (0.0, 0.0)  # centre height range of mounted objects


CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("chair", (0.42, 0.45, 0.80), (0.55, 0.58, 1.00), WOOD + DARK + BRIGHT[:2], "floor"),
    Category("table", (0.90, 0.60, 0.70), (1.80, 1.00, 0.78), WOOD + WHITE + DARK[:1], "floor"),
    Category("sofa", (1.60, 0.80, 0.75), (2.40, 1.00, 0.95), FABRIC, "wall"),
    Category("bed", (1.40, 1.95, 0.90), (1.90, 2.15, 1.20), FABRIC + WHITE, "wall"),
    Category("tv", (0.90, 0.06, 0.55), (1.50, 0.10, 0.85), DARK, "mount", (1.10, 1.40)),
    Category("lamp", (0.30, 0.30, 1.40), (0.45, 0.45, 1.80), ((240, 230, 200), (230, 150, 60), (250, 250, 245)), "floor"),
    Category("plant", (0.35, 0.35, 0.60), (0.60, 0.60, 1.40), ((190, 100, 60), (225, 225, 220), (110, 110, 115)), "floor"),
    Category("cabinet", (0.60, 0.40, 0.70), (1.20, 0.55, 1.10), WOOD + WHITE + ((120, 125, 130),), "wall"),
    Category("door", (0.80, 0.05, 2.00), (0.95, 0.07, 2.08), WOOD + WHITE, "mount"),
    Category("window", (0.80, 0.06, 0.90), (1.60, 0.08, 1.30), WHITE + ((120, 120, 125),), "mount", (1.40, 1.60)),
    Category("shelf", (0.60, 0.30, 1.20), (1.20, 0.40, 2.00), WOOD + WHITE + DARK[:1], "wall"),
    Category("monitor", (0.45, 0.15, 0.35), (0.70, 0.22, 0.50), DARK, "on_table"),
    Category("refrigerator", (0.60, 0.60, 1.60), (0.90, 0.75, 1.90), ((240, 240, 240), (190, 192, 195), (40, 40, 42)), "wall"),
    Category("stool", (0.30, 0.30, 0.45), (0.40, 0.40, 0.75), WOOD + DARK[:1] + BRIGHT[:1], "floor"),
    Category("trash_can", (0.25, 0.25, 0.30), (0.40, 0.40, 0.60), ((120, 120, 125), (40, 40, 42), (230, 230, 230), (60, 130, 80)), "floor"),
)}


@dataclass(frozen=True)
class Part:
    """A box or a vertical cylinder (inscribed in the box) in object-local coordinates."""

    kind: str  # "box" or "cyl"
    lo: tuple[float, float, float]  # [3] min corner, z measured from the object's bottom
    hi: tuple[float, float, float]  # [3] max corner
    color: tuple[float, float, float]


def _c(color: Sequence[float], f: float = 1.0, toward: Sequence[float] | None = None,
       t: float = 0.0) -> tuple[float, float, float]:
    """Colour scaled by f, optionally mixed a fraction t toward another colour."""
    c = np.asarray(color, dtype=np.float64) * f
    if toward is not None:
        c = (1 - t) * c + t * np.asarray(toward, dtype=np.float64)
    return tuple(float(x) for x in np.clip(c, 0, 255))


def _legs(sx: float, sy: float, h: float, w: float, color: tuple, inset: float = 0.02) -> list[Part]:
    out = []
    for x in (-sx / 2 + inset, sx / 2 - inset - w):
        for y in (-sy / 2 + inset, sy / 2 - inset - w):
            out.append(Part("box", (x, y, 0.0), (x + w, y + w, h), color))
    return out


def object_parts(category: str, size: Sequence[float], color: Sequence[int] | None,
                 object_id: str = "") -> list[Part]:
    """The parts of one object; `object_id` seeds the style details (shelf count, books ...)."""
    sx, sy, sz = (float(v) for v in size)
    col = tuple(color) if color is not None else (160, 160, 160)
    rng = np.random.default_rng(zlib.crc32(object_id.encode()))
    x0, x1, y0, y1 = -sx / 2, sx / 2, -sy / 2, sy / 2

    def box(xa: float, xb: float, ya: float, yb: float, za: float, zb: float, c: tuple,
            kind: str = "box") -> Part:
        return Part(kind, (xa, ya, za), (xb, yb, zb), c)

    if category == "chair":
        seat = min(0.47, 0.55 * sz)
        parts = _legs(sx, sy, seat - 0.05, 0.04, _c(col, 0.6))
        parts += [box(x0, x1, y0, y1, seat - 0.05, seat, _c(col)),
                  box(x0 + 0.02, x1 - 0.02, y0, y0 + 0.05, seat, sz, _c(col, 0.9))]
    elif category == "table":
        parts = _legs(sx, sy, sz - 0.04, 0.06, _c(col, 0.7), inset=0.05)
        parts.append(box(x0, x1, y0, y1, sz - 0.04, sz, _c(col)))
    elif category == "sofa":
        arm, back = 0.16, 0.22
        parts = [box(x0, x1, y0, y1, 0.0, 0.42, _c(col, 0.85)),
                 box(x0 + arm, x1 - arm, y0 + back, y1, 0.42, 0.50, _c(col, 1.1)),
                 box(x0, x1, y0, y0 + back, 0.42, sz, _c(col)),
                 box(x0, x0 + arm, y0 + back, y1, 0.42, 0.64, _c(col, 0.95)),
                 box(x1 - arm, x1, y0 + back, y1, 0.42, 0.64, _c(col, 0.95))]
    elif category == "bed":
        frame, sheet = WOOD[int(rng.integers(len(WOOD)))], (238, 236, 230)
        parts = [box(x0, x1, y0, y1, 0.0, 0.30, _c(frame)),
                 box(x0 + 0.03, x1 - 0.03, y0 + 0.06, y1 - 0.03, 0.30, 0.52, _c(sheet)),
                 box(x0 + 0.02, x1 - 0.02, y0 + 0.6, y1 - 0.02, 0.52, 0.58, _c(col)),
                 box(x0, x1, y0, y0 + 0.06, 0.0, sz, _c(frame, 0.85))]
        for k in range(2):
            xa = x0 + 0.1 + k * (sx - 0.2) / 2
            parts.append(box(xa + 0.04, xa + (sx - 0.2) / 2 - 0.04, y0 + 0.1, y0 + 0.45, 0.52, 0.66,
                             _c(sheet, 0.97)))
    elif category in ("tv", "monitor"):
        screen = (20, 24, 32)
        if category == "tv":
            parts = [box(x0, x1, y0, y1 - 0.01, 0.0, sz, _c(col)),
                     box(x0 + 0.03, x1 - 0.03, y1 - 0.01, y1, 0.03, sz - 0.03, screen)]
        else:
            parts = [box(-0.2 * sx, 0.2 * sx, y0, y1, 0.0, 0.02, _c(col)),
                     box(-0.03, 0.03, -0.02, 0.02, 0.02, 0.35 * sz, _c(col, 1.2)),
                     box(x0, x1, -0.035, 0.015, 0.3 * sz, sz, _c(col)),
                     box(x0 + 0.015, x1 - 0.015, 0.015, 0.02, 0.3 * sz + 0.015, sz - 0.015, screen)]
    elif category == "lamp":
        parts = [box(-0.4 * sx, 0.4 * sx, -0.4 * sy, 0.4 * sy, 0.0, 0.03, (50, 50, 52), "cyl"),
                 box(-0.02, 0.02, -0.02, 0.02, 0.03, sz - 0.36, (70, 70, 72), "cyl"),
                 box(x0, x1, y0, y1, sz - 0.38, sz, _c(col), "cyl")]
    elif category == "plant":
        leaf = (int(rng.integers(40, 80)), int(rng.integers(110, 150)), int(rng.integers(40, 70)))
        parts = [box(-0.3 * sx, 0.3 * sx, -0.3 * sy, 0.3 * sy, 0.0, 0.35 * sz, _c(col), "cyl"),
                 box(x0, x1, y0, y1, 0.33 * sz, 0.8 * sz, _c(leaf), "cyl"),
                 box(0.65 * x0, 0.65 * x1, 0.65 * y0, 0.65 * y1, 0.8 * sz, sz, _c(leaf, 1.15), "cyl")]
    elif category == "cabinet":
        parts = [box(x0, x1, y0, y1 - 0.02, 0.0, sz, _c(col, 0.9)),
                 box(x0 + 0.02, x1 - 0.02, y1 - 0.02, y1, 0.0, 0.06, _c(col, 0.5))]
        doors = 1 if sx < 0.7 else 2
        w = (sx - 0.04) / doors
        for k in range(doors):
            xa = x0 + 0.02 + k * w
            parts.append(box(xa + 0.005, xa + w - 0.005, y1 - 0.02, y1, 0.08, sz - 0.02, _c(col, 1.05)))
            hx = xa + (w - 0.03 if k == 0 else 0.01)
            parts.append(box(hx, hx + 0.02, y1 - 0.005, y1, sz - 0.25, sz - 0.1, (180, 180, 185)))
    elif category == "door":
        frame = _c(col, 0.8)
        parts = [box(x0, x0 + 0.05, y0, y1, 0.0, sz, frame), box(x1 - 0.05, x1, y0, y1, 0.0, sz, frame),
                 box(x0 + 0.05, x1 - 0.05, y0, y1, sz - 0.05, sz, frame),
                 box(x0 + 0.05, x1 - 0.05, y0, y1 - 0.02, 0.0, sz - 0.05, _c(col)),
                 box(x1 - 0.15, x1 - 0.07, y1 - 0.02, y1, 0.98, 1.04, (200, 190, 120))]
    elif category == "window":
        frame, glass = _c(col), (150, 185, 215)
        parts = [box(x0, x1, y0, y1, 0.0, 0.06, frame), box(x0, x1, y0, y1, sz - 0.06, sz, frame),
                 box(x0, x0 + 0.06, y0, y1, 0.06, sz - 0.06, frame),
                 box(x1 - 0.06, x1, y0, y1, 0.06, sz - 0.06, frame),
                 box(-0.025, 0.025, y0 + 0.01, y1 - 0.01, 0.06, sz - 0.06, frame),
                 box(x0 + 0.06, x1 - 0.06, y0, y0 + 0.02, 0.06, sz - 0.06, glass)]
    elif category == "shelf":
        t = 0.03
        parts = [box(x0, x0 + t, y0, y1, 0.0, sz, _c(col)), box(x1 - t, x1, y0, y1, 0.0, sz, _c(col)),
                 box(x0 + t, x1 - t, y0, y0 + 0.01, 0.0, sz, _c(col, 0.8))]
        levels = int(rng.integers(3, 6))
        for k in range(levels + 1):
            z = k * (sz - t) / levels
            parts.append(box(x0 + t, x1 - t, y0 + 0.01, y1, z, z + t, _c(col, 0.95)))
            if k == levels:
                break
            x, top = x0 + t + 0.02, min(z + t + rng.uniform(0.15, 0.25), z + (sz - t) / levels - 0.02)
            while x < x1 - t - 0.08:
                w = rng.uniform(0.03, 0.07)
                book = BRIGHT[int(rng.integers(len(BRIGHT)))]
                if rng.random() < 0.8:
                    parts.append(box(x, x + w, y0 + 0.03, y1 - 0.03, z + t, top - rng.uniform(0, 0.05),
                                     _c(book, rng.uniform(0.6, 1.1))))
                x += w + 0.005
    elif category == "refrigerator":
        split = 0.68 * sz
        parts = [box(x0, x1, y0, y1 - 0.03, 0.0, sz, _c(col, 0.92)),
                 box(x0 + 0.01, x1 - 0.01, y1 - 0.03, y1 - 0.01, 0.02, split - 0.01, _c(col)),
                 box(x0 + 0.01, x1 - 0.01, y1 - 0.03, y1 - 0.01, split + 0.01, sz - 0.01, _c(col)),
                 box(x1 - 0.08, x1 - 0.05, y1 - 0.01, y1, split - 0.5, split - 0.1, (150, 150, 155)),
                 box(x1 - 0.08, x1 - 0.05, y1 - 0.01, y1, split + 0.08, split + 0.35, (150, 150, 155))]
    elif category == "stool":
        parts = _legs(sx, sy, sz - 0.04, 0.03, _c(col, 0.7), inset=0.04)
        parts.append(box(x0, x1, y0, y1, sz - 0.04, sz, _c(col), "cyl"))
    elif category == "trash_can":
        parts = [box(x0 + 0.01, x1 - 0.01, y0 + 0.01, y1 - 0.01, 0.0, sz - 0.03, _c(col), "cyl"),
                 box(x0, x1, y0, y1, sz - 0.03, sz, _c(col, 0.75), "cyl")]
    else:
        parts = [box(x0, x1, y0, y1, 0.0, sz, _c(col))]
    return [Part(p.kind, (p.lo[0], p.lo[1], p.lo[2] - sz / 2), (p.hi[0], p.hi[1], p.hi[2] - sz / 2), p.color)
            for p in parts]


@dataclass(frozen=True)
class Doorway:
    """An opening between two rooms sharing a wall; `center` on the shared edge."""

    center: np.ndarray  # [2] xy
    direction: np.ndarray  # [2] unit vector along the wall
    width: float


def _edges(room: Room) -> list[tuple[np.ndarray, np.ndarray]]:
    p = np.asarray(room.polygon, dtype=np.float64)
    return [(p[i], p[(i + 1) % len(p)]) for i in range(len(p))]


def doorways(rooms: Sequence[Room], min_overlap: float = 1.2) -> list[Doorway]:
    """One doorway centred on each shared wall (collinear edges overlapping >= min_overlap)."""
    out = []
    for i in range(len(rooms)):
        for j in range(i + 1, len(rooms)):
            for a, b in _edges(rooms[i]):
                d = b - a
                length = float(np.linalg.norm(d))
                if length < 1e-9:
                    continue
                d = d / length
                for c, e in _edges(rooms[j]):
                    off = np.array([c - a, e - a])
                    if np.any(np.abs(off[:, 0] * d[1] - off[:, 1] * d[0]) > 1e-6):
                        continue  # not collinear
                    s = np.sort(off @ d)
                    lo, hi = max(0.0, s[0]), min(length, s[1])
                    if hi - lo >= min_overlap:
                        out.append(Doorway(a + d * (lo + hi) / 2, d, min(DOORWAY_WIDTH, hi - lo - 0.3)))
    return out


def wall_boxes(room: Room, openings: Sequence[Doorway], height: float) -> list[OrientedBox]:
    """Thin wall slabs inside the room's polygon, leaving the doorways open up to DOOR_HEIGHT."""
    out = []
    for a, b in _edges(room):
        d = b - a
        length = float(np.linalg.norm(d))
        d = d / length
        inward = np.array([-d[1], d[0]])  # counter-clockwise polygon: the inside is on the left
        yaw = math.atan2(d[1], d[0])
        gaps = []
        for door in openings:
            rel = door.center - a
            if abs(rel[0] * d[1] - rel[1] * d[0]) < 1e-6 and abs(abs(float(door.direction @ d)) - 1) < 1e-6:
                s = float(rel @ d)
                gaps.append((s - door.width / 2, s + door.width / 2))
        pieces, start = [], 0.0
        for g0, g1 in sorted(gaps):
            pieces.append((start, g0, 0.0, height))
            pieces.append((g0, g1, DOOR_HEIGHT, height))
            start = g1
        pieces.append((start, length, 0.0, height))
        for s0, s1, z0, z1 in pieces:
            if s1 - s0 < 1e-3 or z1 - z0 < 1e-3:
                continue
            c = a + d * (s0 + s1) / 2 + inward * WALL_THICKNESS / 2
            out.append(OrientedBox(np.array([c[0], c[1], (z0 + z1) / 2]),
                                   np.array([s1 - s0, WALL_THICKNESS, z1 - z0]), yaw))
    return out
