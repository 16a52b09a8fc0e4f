"""Dense, deterministic English descriptions of a scene as a recording saw it.

Three granularities, all built from the Scene and a visibility table (observations.py):

* `describe_scene`: the layout (rooms and floor areas), counts per category, each object's size
  and position, and pairwise relations (what rests on what, each object's nearest neighbour).
* `describe_episode`: the same restricted to the objects the recording saw, plus the order in
  which they first appeared.
* `summarize_episode`: the rooms the recording saw objects in and the counts per category of what
  it saw (a few hundred characters where a whole description runs to thousands).
* `describe_chunks`: one short text per chunk of consecutive frames: what is visible, what is new,
  and the running counts so far (the training data for a streaming memory).

Wording is fixed and numbers are rounded (positions and sizes to 0.1 m, distances to 0.1 m,
areas to 0.1 m^2), so equal inputs give byte-identical text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from spatial_ttt_ros.spatial.geometry import box_distance, point_in_polygon
from spatial_ttt_ros.spatial.observations import check_table, first_seen, object_names, plural, seen_ids
from spatial_ttt_ros.spatial.scene import Scene, SceneObject

# An object "rests on" another when its bottom is within this gap of the other's top (metres)
# and its centre lies over the other's footprint.
ON_TOP_GAP = 0.05


@dataclass(frozen=True)
class ChunkDescription:
    frame_range: tuple[int, int]  # first and last frame index of the chunk, inclusive
    text: str


def _m(x: float) -> str:
    return f"{x:.1f} m"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join(words: list[str]) -> str:
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _counts_sentence(objects: list[SceneObject]) -> str:
    counts: dict[str, int] = {}
    for o in objects:
        counts[o.label] = counts.get(o.label, 0) + 1
    parts = [f"{n} {plural(label, n)}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return _join(parts)


def _rests_on(a: SceneObject, b: SceneObject) -> bool:
    if abs(a.box.z_min - b.box.z_max) > ON_TOP_GAP:
        return False
    return bool(point_in_polygon(b.box.footprint(), a.box.center[None])[0])


def _layout(scene: Scene, only: list | None = None) -> list[str]:
    """The rooms and their floor areas: all of the scene's, or `only` those (in the scene's order)."""
    chosen = [r for r in scene.rooms if only is None or any(r is o for o in only)]
    if not chosen:
        return []
    rooms = []
    for r in chosen:
        poly = np.asarray(r.polygon)
        ext = poly.max(0) - poly.min(0)
        rooms.append(f"the {r.name.replace('_', ' ')} ({r.area:.1f} square meters, about {_m(ext[0])} by {_m(ext[1])})")
    head = f"The space has {len(rooms)} room{'s' if len(rooms) > 1 else ''}: {_join(rooms)}."
    if len(rooms) > 1:
        total = scene.floor_area if only is None else sum(r.area for r in chosen)
        head += f" The total floor area is {total:.1f} square meters."
    return [head]


def _object_lines(scene: Scene, objects: list[SceneObject], names: dict[str, str]) -> list[str]:
    lines = []
    for o in objects:
        sx, sy, sz = o.box.size
        room = scene.room_of(o)
        where = f" in the {room.name.replace('_', ' ')}" if room else ""
        x, y, z = o.box.center
        lines.append(
            f"{_cap(names[o.id])} measures {sx:.1f} by {sy:.1f} by {sz:.1f} meters (longest side "
            f"{round(o.box.longest_dimension * 100)} cm) and stands at x {x:.1f}, y {y:.1f}{where}, "
            f"its top {o.box.z_max:.1f} m above the floor.")
    return lines


def _relation_lines(objects: list[SceneObject], names: dict[str, str]) -> list[str]:
    lines = []
    for a in objects:
        for b in objects:
            if a.id != b.id and _rests_on(a, b):
                lines.append(f"{_cap(names[a.id])} rests on {names[b.id]}.")
    if len(objects) < 2:
        return lines
    for a in objects:
        dists = [(box_distance(a.box, b.box), b.id) for b in objects if b.id != a.id]
        d, bid = min(dists)
        if d < 0.05:
            lines.append(f"The nearest object to {names[a.id]} is {names[bid]}, which it touches.")
        else:
            lines.append(f"The nearest object to {names[a.id]} is {names[bid]}, {_m(d)} away.")
    return lines


def describe_scene(scene: Scene, ids: Iterable[str] | None = None) -> str:
    """Layout, counts, per-object sizes and positions, and relations; optionally only `ids`."""
    keep = None if ids is None else frozenset(ids)
    objects = [o for o in sorted(scene.objects, key=lambda o: o.id) if keep is None or o.id in keep]
    names = object_names(objects)
    lines = _layout(scene)
    if not objects:
        return "\n".join(lines + ["No objects are annotated."])
    lines.append(f"It contains {_counts_sentence(objects)}.")
    lines += _object_lines(scene, objects, names)
    lines += _relation_lines(objects, names)
    return "\n".join(lines)


def describe_episode(scene: Scene, table: Mapping[int, Iterable[str]]) -> str:
    """describe_scene over the objects the recording saw, plus their order of first appearance."""
    table = check_table(scene, table)
    seen = seen_ids(table)
    text = describe_scene(scene, seen)
    if not seen:
        return text
    names = object_names(scene.get(i) for i in seen)
    order = sorted(first_seen(table).items(), key=lambda kv: (kv[1], kv[0]))
    appearance = _join([f"{names[oid]} (frame {f})" for oid, f in order])
    frames = sorted(table)
    return (f"The recording has {len(frames)} frames, {frames[0]} to {frames[-1]}.\n{text}\n"
            f"Objects first appear in this order: {appearance}.")


def summarize_episode(scene: Scene, table: Mapping[int, Iterable[str]]) -> str:
    """The rooms the recording saw objects in (with their floor areas) and the counts per category
    of the objects it saw. (describe_episode names every room of the scene, also those a short
    clip never reached: a target the clip cannot tell.)"""
    table = check_table(scene, table)
    objects = [scene.get(i) for i in seen_ids(table)]
    if not objects:
        return "No objects are annotated."
    rooms = [room for room in (scene.room_of(o) for o in objects) if room is not None]
    return "\n".join(_layout(scene, rooms) + [f"It contains {_counts_sentence(objects)}."])


def describe_chunks(scene: Scene, table: Mapping[int, Iterable[str]], chunk_size: int) -> list[ChunkDescription]:
    """One description per chunk of frames [k*chunk_size, (k+1)*chunk_size) that has frames in the table."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of frames, got {chunk_size!r}")
    table = check_table(scene, table)
    names = object_names(scene.get(i) for i in seen_ids(table))
    chunks: dict[int, list[int]] = {}
    for f in table:
        chunks.setdefault(f // chunk_size, []).append(f)
    out, so_far = [], set()
    for k in sorted(chunks):
        frames = chunks[k]
        visible = sorted(frozenset().union(*(table[f] for f in frames)))
        new = [oid for oid in visible if oid not in so_far]
        so_far.update(visible)
        if len(frames) > 1:
            span = f"Frames {frames[0]} to {frames[-1]} show"
        else:
            span = f"Frame {frames[0]} shows"
        if not visible:
            lines = [f"{span} no annotated objects."]
        else:
            lines = [f"{span} {_join([names[i] for i in visible])}."]
            if new:
                lines.append(f"New in these frames: {_join([names[i] for i in new])}.")
            lines.append(f"Seen so far: {_counts_sentence([scene.get(i) for i in sorted(so_far)])}.")
        out.append(ChunkDescription((frames[0], frames[-1]), " ".join(lines)))
    return out
