"""Episode shards: what `bake` writes once per bag episode and the sampler reads many times.

A shard is a directory `<root>/<episode_id>/` holding

* `frames.safetensors`: `frames` uint8 [F, H, W, 3] at the preset's frame size, `stamps`
  float64 [F] (seconds), optional `poses` float64 [F, 7] (x y z qx qy qz qw, map frame);
  safetensors metadata {"format": "spatial_ttt_episode/1"};
* `episode.json`: {"format", "episode", "source" ("<bag path>" or "synth:<seed>"),
  "frame_size": [H, W], "frames": F, "items": QA items as spatial.qa.generate_qa emits them
  (frame indices re-based onto the shard's frames), "descriptions": [{"type", "frame_range",
  "text"}], "visibility": {"<frame>": [object ids]} or null, "scene": scene dict or null,
  "topics": {topic: message count}}.

Never pickle: tensors are safetensors, the rest JSON. Everything is validated on read (and
before writing) and a bad field is a ValueError naming the field and the value. Writing is atomic:
the shard is assembled in a temporary sibling directory and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..spatial.prompts import QuestionKind

FORMAT = "spatial_ttt_episode/1"
FRAMES_FILE = "frames.safetensors"
INFO_FILE = "episode.json"
DESCRIPTION_TYPES = ("episode_description", "chunk_description")
# Keys every QA item carries (spatial.qa._item).
ITEM_KEYS = ("kind", "vsi_type", "difficulty", "question", "options", "answer", "answer_text", "unit",
             "objects", "frame_range")
_EPISODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_MAX_JSON_BYTES = 256 << 20


@dataclass
class Episode:
    """One shard in memory; treat the arrays as read-only."""

    path: Path
    episode: str
    source: str
    frame_size: tuple[int, int]          # (H, W)
    frames: np.ndarray | None            # [F, H, W, 3] uint8; None when read with load_frames=False
    stamps: np.ndarray                   # [F] float64 seconds, non-decreasing
    poses: np.ndarray | None             # [F, 7] float64 or None
    items: list[dict]                    # QA items (generate_qa form), frame_range within [0, F-1]
    descriptions: list[dict]             # {"type", "frame_range", "text"}
    visibility: dict[int, list[str]] | None  # shard frame -> visible object ids
    scene: dict | None
    topics: dict[str, int]

    @property
    def num_frames(self) -> int:
        return int(self.stamps.shape[0])


def _fail(field: str, expected: str, value: Any) -> ValueError:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return ValueError(f"episode field {field!r}: expected {expected}, got {text}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_range(field: str, fr: Any, n_frames: int) -> list[int]:
    if (not isinstance(fr, list) or len(fr) != 2 or not all(_is_int(x) for x in fr)
            or not 0 <= fr[0] <= fr[1] < n_frames):
        raise _fail(field, f"[first, last] with 0 <= first <= last < {n_frames}", fr)
    return [int(fr[0]), int(fr[1])]


def _check_frames(dtype: Any, shape: Any) -> tuple[int, int, int]:
    shape = tuple(shape) if shape is not None else None
    if dtype not in (np.uint8, "U8") or shape is None or len(shape) != 4 or shape[3] != 3:
        raise _fail("frames", "uint8 [F, H, W, 3]", f"{dtype} {shape}")
    if shape[0] < 1 or shape[1] < 2 or shape[2] < 2:
        raise _fail("frames", "at least one frame of at least 2x2 pixels", shape)
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_series(n: int, stamps: Any, poses: Any) -> None:
    """stamps float64 [n] finite non-decreasing; poses None or float64 [n, 7] finite, unit quaternions."""
    if not isinstance(stamps, np.ndarray) or stamps.dtype != np.float64 or stamps.shape != (n,):
        raise _fail("stamps", f"float64 [{n}]", f"{getattr(stamps, 'dtype', type(stamps).__name__)} "
                    f"{getattr(stamps, 'shape', None)}")
    if not np.all(np.isfinite(stamps)):
        raise _fail("stamps", "finite seconds", stamps[~np.isfinite(stamps)][:4].tolist())
    if n > 1 and np.any(np.diff(stamps) < 0):
        i = int(np.argmax(np.diff(stamps) < 0))
        raise _fail("stamps", "non-decreasing seconds", f"stamps[{i}]={stamps[i]} > stamps[{i + 1}]={stamps[i + 1]}")
    if poses is not None:
        if not isinstance(poses, np.ndarray) or poses.dtype != np.float64 or poses.shape != (n, 7):
            raise _fail("poses", f"float64 [{n}, 7] or absent", f"{getattr(poses, 'dtype', type(poses).__name__)} "
                        f"{getattr(poses, 'shape', None)}")
        if not np.all(np.isfinite(poses)):
            raise _fail("poses", "finite values", "non-finite entries")
        norms = np.linalg.norm(poses[:, 3:], axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-3):
            raise _fail("poses", "unit quaternions (qx qy qz qw)", f"norm {float(norms[np.argmax(np.abs(norms - 1))])}")


def _check_item(i: int, item: Any, n: int) -> dict:
    field = f"items[{i}]"
    if not isinstance(item, dict):
        raise _fail(field, "a QA item mapping", item)
    missing = [k for k in ITEM_KEYS if k not in item]
    if missing:
        raise _fail(f"{field}", f"keys {list(ITEM_KEYS)}; missing {missing}", sorted(item))
    kinds = [k.value for k in QuestionKind if k is not QuestionKind.FREE_FORM]
    if item["kind"] not in kinds:
        raise _fail(f"{field}.kind", f"one of {kinds}", item["kind"])
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise _fail(f"{field}.question", "non-empty text", item["question"])
    if not isinstance(item["options"], list) or not all(isinstance(o, str) for o in item["options"]):
        raise _fail(f"{field}.options", "a list of strings", item["options"])
    if not isinstance(item["objects"], list) or not all(isinstance(o, str) for o in item["objects"]):
        raise _fail(f"{field}.objects", "a list of object ids", item["objects"])
    ans = item["answer"]
    if item["options"]:
        if not isinstance(ans, str) or len(ans) != 1 or not "A" <= ans <= chr(ord("A") + len(item["options"]) - 1):
            raise _fail(f"{field}.answer", f"an option letter A-{chr(ord('A') + len(item['options']) - 1)}", ans)
    elif item["kind"] == "locate":
        if not isinstance(ans, list) or len(ans) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in ans):
            raise _fail(f"{field}.answer", "a map position [x, y] in metres", ans)
    elif isinstance(ans, bool) or not isinstance(ans, (int, float)) or not math.isfinite(ans) or ans < 0:
        raise _fail(f"{field}.answer", "a finite number >= 0", ans)
    _check_range(f"{field}.frame_range", item["frame_range"], n)
    return item


def _check_info(info: Any, n: int, frame_size: tuple[int, int], *, reading: bool) -> dict:
    if not isinstance(info, dict):
        raise _fail("episode.json", "a JSON object", type(info).__name__)
    if reading and info.get("format") != FORMAT:
        raise _fail("format", repr(FORMAT), info.get("format"))
    eid = info.get("episode")
    if not isinstance(eid, str) or not _EPISODE_ID.match(eid):
        raise _fail("episode", "an id of letters, digits, '_', '.', '-' (<= 200 chars)", eid)
    if not isinstance(info.get("source"), str) or not info["source"]:
        raise _fail("source", "'<bag path>' or 'synth:<seed>'", info.get("source"))
    if reading:
        fs = info.get("frame_size")
        if fs != list(frame_size):
            raise _fail("frame_size", f"[H, W] = {list(frame_size)} (the frames' size)", fs)
        if info.get("frames") != n or not _is_int(info.get("frames")):
            raise _fail("frames", f"{n} (the number of stored frames)", info.get("frames"))
    items = info.get("items", [])
    if not isinstance(items, list):
        raise _fail("items", "a list of QA items", items)
    for i, it in enumerate(items):
        _check_item(i, it, n)
    descs = info.get("descriptions", [])
    if not isinstance(descs, list):
        raise _fail("descriptions", "a list", descs)
    for i, d in enumerate(descs):
        if not isinstance(d, dict) or d.get("type") not in DESCRIPTION_TYPES:
            raise _fail(f"descriptions[{i}].type", f"one of {DESCRIPTION_TYPES}",
                        d.get("type") if isinstance(d, dict) else d)
        if not isinstance(d.get("text"), str) or not d["text"].strip():
            raise _fail(f"descriptions[{i}].text", "non-empty text", d.get("text"))
        _check_range(f"descriptions[{i}].frame_range", d.get("frame_range"), n)
    vis = info.get("visibility")
    if vis is not None:
        if not isinstance(vis, dict):
            raise _fail("visibility", "{'<frame>': [object ids]} or null", type(vis).__name__)
        for key, ids in vis.items():
            if not isinstance(key, str) or not key.isdigit() or not 0 <= int(key) < n:
                raise _fail("visibility", f"frame keys '0'..'{n - 1}'", key)
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                raise _fail(f"visibility[{key}]", "a list of object ids", ids)
    scene = info.get("scene")
    if scene is not None and not isinstance(scene, dict):
        raise _fail("scene", "a scene mapping or null", type(scene).__name__)
    if vis is not None and scene is not None:
        known = {o.get("id") for o in scene.get("objects", []) if isinstance(o, dict)}
        unknown = sorted({x for ids in vis.values() for x in ids} - known)
        if unknown:
            raise _fail("visibility", "ids of the scene's objects", unknown[:5])
    topics = info.get("topics", {})
    if not isinstance(topics, dict) or not all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in topics.items()):
        raise _fail("topics", "{topic: count >= 0}", topics)
    return info


def write_episode(path: str | os.PathLike[str], frames: np.ndarray, stamps: np.ndarray,
                  poses: np.ndarray | None, info: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write one shard directory atomically; `info` holds episode, source, items, descriptions,
    visibility, scene, topics (format, frame_size and frames are filled in). Returns the path."""
    out = Path(path)
    stamps = np.asarray(stamps, dtype=np.float64) if isinstance(stamps, (list, tuple)) else stamps
    if not isinstance(frames, np.ndarray):
        raise _fail("frames", "a numpy uint8 array [F, H, W, 3]", type(frames).__name__)
    n, h, w = _check_frames(frames.dtype, frames.shape)
    _check_series(n, stamps, poses)
    doc = json.loads(json.dumps(dict(info), default=_json_default))  # plain JSON types, a copy
    doc.update(format=FORMAT, frame_size=[int(h), int(w)], frames=int(n))
    for key, default in (("items", []), ("descriptions", []), ("visibility", None), ("scene", None), ("topics", {})):
        doc.setdefault(key, default)
    _check_info(doc, n, (h, w), reading=True)
    if doc["episode"] != out.name:
        raise _fail("episode", f"the shard directory's name {out.name!r}", doc["episode"])
    if out.exists() and not overwrite:
        raise ValueError(f"shard {out} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = {"frames": np.ascontiguousarray(frames), "stamps": stamps}
        if poses is not None:
            tensors["poses"] = np.ascontiguousarray(poses)
        save_file(tensors, str(tmp / FRAMES_FILE), metadata={"format": FORMAT})
        (tmp / INFO_FILE).write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in episode.json")


def read_episode(path: str | os.PathLike[str], *, load_frames: bool = True) -> Episode:
    """Read and validate one shard; ValueError names the first bad field.

    load_frames=False checks the frames' dtype and shape from the header only and returns an
    Episode whose `frames` is None (for indexing many shards cheaply).
    """
    root = Path(path)
    info_path, frames_path = root / INFO_FILE, root / FRAMES_FILE
    for p in (info_path, frames_path):
        if not p.is_file():
            raise ValueError(f"shard {root}: {p.name} is missing (not an episode shard?)")
    if info_path.stat().st_size > _MAX_JSON_BYTES:
        raise ValueError(f"shard {root}: {INFO_FILE} is larger than {_MAX_JSON_BYTES} bytes")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"shard {root}: {INFO_FILE} is not valid JSON: {exc}") from None
    try:
        with safe_open(str(frames_path), framework="numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            shapes = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in keys}
            if meta.get("format") != FORMAT:
                raise _fail(f"{FRAMES_FILE} metadata format", repr(FORMAT), meta.get("format"))
            extra = sorted(keys - {"frames", "stamps", "poses"})
            if extra or not {"frames", "stamps"} <= keys:
                raise _fail(f"{FRAMES_FILE} tensors", "frames, stamps[, poses]", sorted(keys))
            n, h, w = _check_frames(*shapes["frames"])
            frames = f.get_tensor("frames") if load_frames else None
            stamps = f.get_tensor("stamps")
            poses = f.get_tensor("poses") if "poses" in keys else None
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001  safetensors raises SafetensorError for a damaged file
        raise ValueError(f"shard {root}: cannot read {FRAMES_FILE}: {exc}") from None
    _check_series(n, stamps, poses)
    _check_info(info, n, (h, w), reading=True)
    if info["episode"] != root.name:
        raise _fail("episode", f"the shard directory's name {root.name!r}", info["episode"])
    vis = info.get("visibility")
    return Episode(
        path=root, episode=info["episode"], source=info["source"], frame_size=(h, w),
        frames=frames, stamps=stamps, poses=poses,
        items=info.get("items", []), descriptions=info.get("descriptions", []),
        visibility=None if vis is None else {int(k): list(v) for k, v in vis.items()},
        scene=info.get("scene"), topics=info.get("topics", {}),
    )


def read_frames(path: str | os.PathLike[str], start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of a shard, read from disk without loading the rest ([n, H, W, 3] uint8)."""
    try:
        with safe_open(str(Path(path) / FRAMES_FILE), framework="numpy") as f:
            sl = f.get_slice("frames")
            n = int(sl.get_shape()[0])
            if not 0 <= start < stop <= n:
                raise ValueError(f"shard {path}: frames [{start}, {stop}) are outside its {n} frames")
            out = sl[start:stop]
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001  SafetensorError for a damaged or replaced file
        raise ValueError(f"shard {path}: cannot read {FRAMES_FILE}: {exc}") from None
    if out.dtype != np.uint8 or out.ndim != 4 or out.shape[0] != stop - start:
        raise _fail("frames", "uint8 [F, H, W, 3]", f"{out.dtype} {out.shape}")
    return out


def find_shards(patterns: list[str] | tuple[str, ...] | str) -> list[Path]:
    """Shard directories matching glob patterns (or directories holding shards), sorted, unique."""
    import glob  # noqa: PLC0415

    if isinstance(patterns, str):
        patterns = [patterns]
    found: set[Path] = set()
    for pat in patterns:
        for hit in sorted(glob.glob(os.path.expanduser(str(pat)))):
            p = Path(hit)
            if (p / INFO_FILE).is_file():
                found.add(p)
            elif p.is_dir():
                found.update(c for c in p.iterdir() if (c / INFO_FILE).is_file())
    return sorted(found)
