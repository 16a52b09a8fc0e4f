"""The scene annotation file: rooms and object boxes, YAML or JSON.

Format (version `spatial_ttt_scene/1`; units metres and radians, frames as in camera.py)::

    format: spatial_ttt_scene/1
    frame_id: map            # the frame of the poses and boxes
    name: apartment_3        # optional, free text
    rooms:                   # optional list; floor polygons, metres, counter-clockwise
      - {name: living_room, polygon: [[0,0],[5,0],[5,4],[0,4]], height: 2.6}
    objects:
      - {id: chair_0, category: chair, center: [1.0, 2.0, 0.45], size: [0.5, 0.5, 0.9], yaw: 0.3,
         color: [200, 40, 40]}

Fields:

* rooms[i]: `name` (unique, non-empty), `polygon` (>= 3 [x, y] vertices, counter-clockwise seen
  from above, non-zero area), `height` (optional, > 0, metres).
* objects[i]: `id` (unique, non-empty), `category` (non-empty, e.g. "chair"; questions use it with
  underscores read as spaces), `center` ([x, y, z] of the box centre), `size` (full extents along
  the box's x, y, z, all > 0), `yaw` (optional, radians about +z, default 0), `color` (optional
  [r, g, b] integers 0-255).

Unknown fields are errors (they are usually typos). `validate_scene` reports every problem it
finds, one per line, each naming the place, e.g.
"objects[3] (chair_2).size: must be 3 positive numbers, got [0.5, -1, 2]".
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from spatial_ttt_ros.spatial.geometry import OrientedBox, point_in_polygon, polygon_area, signed_polygon_area

FORMAT_VERSION = "spatial_ttt_scene/1"
_TOP_KEYS = {"format", "frame_id", "name", "rooms", "objects"}
_ROOM_KEYS = {"name", "polygon", "height"}
_OBJECT_KEYS = {"id", "category", "center", "size", "yaw", "color"}


@dataclass(frozen=True)
class Room:
    name: str
    polygon: tuple[tuple[float, float], ...]  # counter-clockwise floor vertices, metres
    height: float | None = None

    @property
    def area(self) -> float:
        return polygon_area(self.polygon)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: xy of the points inside the floor polygon."""
        return point_in_polygon(self.polygon, points)


@dataclass(frozen=True)
class SceneObject:
    id: str
    category: str
    box: OrientedBox
    color: tuple[int, int, int] | None = None

    @property
    def label(self) -> str:
        """The category as English words ("coffee_table" -> "coffee table")."""
        return self.category.replace("_", " ")


@dataclass(frozen=True)
class Scene:
    frame_id: str
    rooms: tuple[Room, ...]
    objects: tuple[SceneObject, ...]
    name: str = ""
    _by_id: dict[str, SceneObject] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({o.id: o for o in self.objects})

    def get(self, object_id: str) -> SceneObject:
        if object_id not in self._by_id:
            raise ValueError(f"no object with id {object_id!r} in the scene")
        return self._by_id[object_id]

    def by_category(self, ids: set[str] | frozenset[str] | None = None) -> dict[str, list[SceneObject]]:
        """Category -> its objects (sorted by id), optionally only those in `ids`."""
        out: dict[str, list[SceneObject]] = defaultdict(list)
        for o in sorted(self.objects, key=lambda o: o.id):
            if ids is None or o.id in ids:
                out[o.category].append(o)
        return dict(sorted(out.items()))

    def room_of(self, obj: SceneObject) -> Room | None:
        """The first room whose floor polygon holds the object's centre."""
        for room in self.rooms:
            if room.contains(obj.box.center[None])[0]:
                return room
        return None

    @property
    def floor_area(self) -> float:
        return sum(r.area for r in self.rooms)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _nums(v: object, n: int) -> list[float] | None:
    if isinstance(v, list | tuple) and len(v) == n and all(_is_num(x) for x in v):
        return [float(x) for x in v]
    return None


def validate_scene(data: Mapping) -> Scene:
    """Check a parsed scene file and build the Scene; ValueError lists every problem found."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a scene file must hold a mapping at the top level, got {type(data).__name__}")
    errors: list[str] = []
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        errors.append(f"{key}: unknown field; expected one of {sorted(_TOP_KEYS)}")
    if data.get("format") != FORMAT_VERSION:
        errors.append(f"format: expected {FORMAT_VERSION!r}, got {data.get('format')!r}")
    frame_id = data.get("frame_id")
    if not isinstance(frame_id, str) or not frame_id.strip():
        errors.append(f"frame_id: must be a non-empty string, got {frame_id!r}")
    name = data.get("name", "")
    if not isinstance(name, str):
        errors.append(f"name: must be a string, got {name!r}")

    rooms: list[Room] = []
    raw_rooms = data.get("rooms", [])
    if not isinstance(raw_rooms, list):
        errors.append(f"rooms: must be a list, got {type(raw_rooms).__name__}")
        raw_rooms = []
    room_names: set[str] = set()
    for i, r in enumerate(raw_rooms):
        where = f"rooms[{i}]"
        if not isinstance(r, Mapping):
            errors.append(f"{where}: must be a mapping, got {r!r}")
            continue
        rname = r.get("name")
        if isinstance(rname, str) and rname.strip():
            where += f" ({rname})"
        n_err = len(errors)
        errors += [f"{where}.{k}: unknown field; expected one of {sorted(_ROOM_KEYS)}" for k in sorted(set(r) - _ROOM_KEYS, key=str)]
        if not isinstance(rname, str) or not rname.strip():
            errors.append(f"{where}.name: must be a non-empty string, got {rname!r}")
        elif rname in room_names:
            errors.append(f"{where}.name: duplicate room name {rname!r}")
        else:
            room_names.add(rname)
        poly = r.get("polygon")
        pts = [_nums(p, 2) for p in poly] if isinstance(poly, list) else None
        if pts is None or len(pts) < 3 or any(p is None for p in pts):
            errors.append(f"{where}.polygon: must be a list of at least 3 [x, y] number pairs, got {poly!r}")
        else:
            area = signed_polygon_area(pts)
            if abs(area) < 1e-9:
                errors.append(f"{where}.polygon: has zero area, got {poly!r}")
            elif area < 0:
                errors.append(f"{where}.polygon: vertices are clockwise; list them counter-clockwise, got {poly!r}")
        height = r.get("height")
        if height is not None and not (_is_num(height) and height > 0):
            errors.append(f"{where}.height: must be a positive number of metres, got {height!r}")
        if len(errors) == n_err:
            rooms.append(Room(rname, tuple((p[0], p[1]) for p in pts), None if height is None else float(height)))

    objects: list[SceneObject] = []
    raw_objects = data.get("objects")
    if not isinstance(raw_objects, list):
        errors.append(f"objects: must be a list, got {raw_objects!r}")
        raw_objects = []
    ids: set[str] = set()
    for i, o in enumerate(raw_objects):
        where = f"objects[{i}]"
        if not isinstance(o, Mapping):
            errors.append(f"{where}: must be a mapping, got {o!r}")
            continue
        oid = o.get("id")
        if isinstance(oid, str) and oid.strip():
            where += f" ({oid})"
        n_err = len(errors)
        errors += [f"{where}.{k}: unknown field; expected one of {sorted(_OBJECT_KEYS)}" for k in sorted(set(o) - _OBJECT_KEYS, key=str)]
        if not isinstance(oid, str) or not oid.strip():
            errors.append(f"{where}.id: must be a non-empty string, got {oid!r}")
        elif oid in ids:
            errors.append(f"{where}.id: duplicate id {oid!r}")
        else:
            ids.add(oid)
        cat = o.get("category")
        if not isinstance(cat, str) or not cat.strip():
            errors.append(f"{where}.category: must be a non-empty string, got {cat!r}")
        center = _nums(o.get("center"), 3)
        if center is None:
            errors.append(f"{where}.center: must be 3 numbers [x, y, z], got {o.get('center')!r}")
        size = _nums(o.get("size"), 3)
        if size is None or any(s <= 0 for s in size):
            errors.append(f"{where}.size: must be 3 positive numbers, got {o.get('size')!r}")
        yaw = o.get("yaw", 0.0)
        if not _is_num(yaw):
            errors.append(f"{where}.yaw: must be a number of radians, got {yaw!r}")
        color = o.get("color")
        if color is not None and not (
                isinstance(color, list | tuple) and len(color) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)):
            errors.append(f"{where}.color: must be 3 integers 0-255 [r, g, b], got {color!r}")
        if len(errors) == n_err:
            box = OrientedBox(np.array(center), np.array(size), float(yaw))
            objects.append(SceneObject(oid, cat.strip(), box, None if color is None else tuple(color)))

    if errors:
        raise ValueError("invalid scene:\n  " + "\n  ".join(errors))
    return Scene(frame_id=frame_id, rooms=tuple(rooms), objects=tuple(objects), name=name)


def scene_to_dict(scene: Scene) -> dict:
    """The file representation of a Scene (inverse of validate_scene)."""
    def obj(o: SceneObject) -> dict:
        d = {"id": o.id, "category": o.category, "center": [float(x) for x in o.box.center],
             "size": [float(x) for x in o.box.size], "yaw": float(o.box.yaw)}
        if o.color is not None:
            d["color"] = list(o.color)
        return d

    def room(r: Room) -> dict:
        d = {"name": r.name, "polygon": [[float(x), float(y)] for x, y in r.polygon]}
        if r.height is not None:
            d["height"] = r.height
        return d

    out = {"format": FORMAT_VERSION, "frame_id": scene.frame_id}
    if scene.name:
        out["name"] = scene.name
    out["rooms"] = [room(r) for r in scene.rooms]
    out["objects"] = [obj(o) for o in scene.objects]
    return out


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"scene file must end in .yaml, .yml or .json, got {str(path)!r}")
    return suffix


def load_scene(path: str | Path) -> Scene:
    """Read and validate a scene file (.yaml/.yml/.json); errors name the file."""
    path = Path(path)
    suffix = _suffix(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not valid {suffix[1:].upper()}: {e}") from None
    try:
        return validate_scene(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_scene(scene: Scene, path: str | Path) -> None:
    """Write a scene file; the format follows the suffix."""
    path = Path(path)
    data = scene_to_dict(scene)
    if _suffix(path) == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    path.write_text(text, encoding="utf-8")
