"""What a recording saw: the per-frame visibility table and readable object names.

A visibility table maps a frame index to the ids of the objects visible in that frame. It is
computed from a Scene, per-frame camera poses and intrinsics with geometry.visibility, or supplied
by hand (tests, human annotation). describe.py and qa.py read only this table, so the annotations
they produce depend on what the camera actually showed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from spatial_ttt_ros.spatial.camera import CameraIntrinsics, CameraPose
from spatial_ttt_ros.spatial.geometry import OrientedBox, visibility
from spatial_ttt_ros.spatial.scene import Scene, SceneObject

VisibilityTable = dict[int, frozenset[str]]


def compute_visibility_table(
    scene: Scene,
    poses: Sequence[CameraPose],
    intrinsics: CameraIntrinsics | Sequence[CameraIntrinsics],
    *,
    min_fraction: float = 0.01,
    depth_samples: int = 4,
    near: float = 0.05,
    max_range: float = math.inf,
    occluders: Sequence[OrientedBox] = (),
) -> VisibilityTable:
    """Frame index (0..len(poses)-1) -> ids of objects showing more than `min_fraction` of their surface.

    intrinsics: one for all frames or one per frame. See geometry.visibility for the test.
    """
    if isinstance(intrinsics, CameraIntrinsics):
        intrinsics = [intrinsics] * len(poses)
    if len(intrinsics) != len(poses):
        raise ValueError(f"need one intrinsics per pose or a single one; got {len(intrinsics)} for {len(poses)} poses")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction!r}")
    boxes = [o.box for o in scene.objects]
    table: VisibilityTable = {}
    for f, (pose, intr) in enumerate(zip(poses, intrinsics)):
        frac = visibility(boxes, pose, intr, depth_samples=depth_samples, near=near, max_range=max_range,
                          occluders=occluders)
        table[f] = frozenset(o.id for o, v in zip(scene.objects, frac) if v > min_fraction)
    return table


def check_table(scene: Scene, table: Mapping[int, Iterable[str]]) -> VisibilityTable:
    """Normalise a visibility table and check that every id exists in the scene."""
    out: VisibilityTable = {}
    for f in sorted(table):
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise ValueError(f"visibility table keys must be frame indices >= 0, got {f!r}")
        ids = table[f]
        if isinstance(ids, str):
            raise ValueError(f"frame {f}: expected a collection of object ids, got the string {ids!r}")
        ids = frozenset(ids)
        for oid in sorted(ids):
            scene.get(oid)
        out[f] = ids
    return out


def first_seen(table: Mapping[int, Iterable[str]]) -> dict[str, int]:
    """Object id -> the first frame it is visible in."""
    out: dict[str, int] = {}
    for f in sorted(table):
        for oid in table[f]:
            out.setdefault(oid, f)
    return out


def seen_ids(table: Mapping[int, Iterable[str]]) -> frozenset[str]:
    return frozenset().union(*table.values()) if table else frozenset()


def plural(word: str, n: int) -> str:
    """English plural of a category word for n items ("2 chairs", "1 sofa", "3 boxes")."""
    if n == 1:
        return word
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def object_names(objects: Iterable[SceneObject]) -> dict[str, str]:
    """Id -> readable name: "the sofa" for a lone category, "chair 1", "chair 2" (by id) otherwise."""
    by_cat: dict[str, list[SceneObject]] = {}
    for o in sorted(objects, key=lambda o: o.id):
        by_cat.setdefault(o.category, []).append(o)
    names = {}
    for group in by_cat.values():
        for k, o in enumerate(group):
            names[o.id] = f"the {o.label}" if len(group) == 1 else f"{o.label} {k + 1}"
    return names


def last_seen(table: Mapping[int, Iterable[str]], ids: Iterable[str], until: int) -> int | None:
    """The last frame <= `until` in which any of `ids` is visible; None if none is seen by then."""
    wanted = frozenset(ids)
    frames = [f for f in table if f <= until and wanted & frozenset(table[f])]
    return max(frames) if frames else None


def evidence_outside_window(table: Mapping[int, Iterable[str]], ids: Iterable[str], ask_frame: int,
                            window_frames: int) -> bool:
    """True when a question about `ids`, asked after frame `ask_frame`, has all its evidence older
    than the sliding window: every object was seen by then, and none of them is visible in the
    last `window_frames` frames (ask_frame - window_frames + 1 .. ask_frame). A question about no
    object in particular (room size) is never labelled True."""
    ids = frozenset(ids)
    if isinstance(window_frames, bool) or not isinstance(window_frames, int) or window_frames < 0:
        raise ValueError(f"window_frames must be an integer >= 0, got {window_frames!r}")
    if not ids:
        return False
    seen = seen_ids({f: v for f, v in table.items() if f <= ask_frame})
    if not ids <= seen:
        return False
    last = last_seen(table, ids, ask_frame)
    return last is not None and last <= ask_frame - window_frames
