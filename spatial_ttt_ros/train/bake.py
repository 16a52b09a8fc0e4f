"""Bake bags into episode shards (train/shards.py): decode and resize once, sample many times.

    spatial-ttt train bake RUN/bag [RUN2/bag ...] --preset demo --out runs/shards [--stride 2]

Reads what `spatial-ttt synth`, the recorder and `spatial-ttt annotate` leave behind:

* the bag: an image topic (Image or CompressedImage) and, when present, CameraInfo + poses
  (PoseStamped or Odometry). With poses, frames are exactly the frames `annotate` indexes
  (data.annotate.read_episodes: one episode per data file, frames in header-stamp order, frames
  without a pose within `max_pose_gap_s` skipped). Without poses: one episode of every image.
* the scene file (`--scene`, else `scene.yaml` beside the bag): per-frame visibility (as
  annotate computes it), and the items of the kept frames;
* `annotations.jsonl` beside the bag: its items, used as they are when every frame is kept.

Frames are resized with the engine's own `runtime.tokens.resize_frame` to the preset's size.
`--stride k` keeps every k-th frame of an episode (synth writes 10 Hz; the recorder already
keeps keyframes only). Items index the kept frames. With a stride > 1 they are recomputed on the
kept frames from the scene file (data.annotate.annotate_episode: the same descriptions and
generate_qa on the visibility of the kept frames), so every answer is true of what the shard
shows; re-indexing annotations.jsonl instead would keep answers about objects only the dropped
frames saw. Without a scene file a stride > 1 with annotations.jsonl is refused (say --stride 1).

Errors (ValueError, exit code 2 from the CLI) name what cannot be read: a bag without an image
topic lists the topics it has with their counts; an image topic that cannot be decoded says why.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import msgs
from ..data.annotate import JSONL_NAME, annotate_episode, read_episodes, wall_occluders
from ..data.annotate import Episode as BagEpisode
from ..data.bag_reader import BagReader
from ..runtime.config import load_config
from ..runtime.tokens import resize_frame
from ..spatial.observations import compute_visibility_table
from ..spatial.scene import Scene, load_scene, scene_to_dict
from .shards import ITEM_KEYS, write_episode

IMAGE_TYPES = (msgs.IMAGE, msgs.COMPRESSED_IMAGE)
POSE_TYPES = (msgs.POSE_STAMPED, "nav_msgs/msg/Odometry")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BakeOptions:
    frame_size: tuple[int, int]   # (H, W) of the preset
    stride: int = 1
    chunk_frames: int = 16        # chunk descriptions when items are computed (kept frames)
    seed: int = 0                 # QA draws when items are computed
    max_per_kind: int = 3
    max_pose_gap_s: float = 0.1
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("stride", "chunk_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        h, w = self.frame_size
        if h < 2 or w < 2:
            raise ValueError(f"frame_size must be at least 2x2, got {self.frame_size!r}")


@dataclass(frozen=True)
class BakedEpisode:
    path: Path
    frames: int
    items: int
    descriptions: int
    annotations: str  # "annotations.jsonl" | "scene" | "none"


def _topics_text(reader: BagReader) -> str:
    counts = reader.counts
    return ", ".join(f"{t} [{ty}]: {counts.get(t, 0)}" for t, ty in sorted(reader.topics.items())) or "none"


def _pick(reader: BagReader, types: tuple[str, ...], preferred: tuple[str, ...]) -> str | None:
    cands = sorted(t for t, ty in reader.topics.items() if ty in types and reader.counts.get(t, 0) > 0)
    for t in preferred:
        if t in cands:
            return t
    return cands[0] if len(cands) == 1 else (None if not cands else "")


def _inspect(bag: Path) -> tuple[str, bool, dict[str, int]]:
    """(image topic, whether poses + CameraInfo exist, topic counts); ValueError naming what is missing."""
    with BagReader(bag) as reader:
        image = _pick(reader, IMAGE_TYPES, (msgs.TOPIC_IMAGE, msgs.TOPIC_IMAGE_COMPRESSED))
        if image is None:
            raise ValueError(f"bag {bag} has no images to bake: no topic of type {' or '.join(IMAGE_TYPES)} "
                             f"with messages; its topics: {_topics_text(reader)}")
        if image == "":
            cands = sorted(t for t, ty in reader.topics.items() if ty in IMAGE_TYPES)
            raise ValueError(f"bag {bag} has several image topics {cands}; expected {msgs.TOPIC_IMAGE} or one")
        if image in reader.problems:
            raise ValueError(f"bag {bag}: image topic {image} cannot be read: {reader.problems[image]}")
        posed = bool(_pick(reader, POSE_TYPES, (msgs.TOPIC_POSE,))) and bool(
            _pick(reader, (msgs.CAMERA_INFO,), (msgs.TOPIC_CAMERA_INFO,)))
        return image, posed, reader.counts


def _read_frames(bag: Path, topic: str, wanted: set[int], size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Header stamp (ns) -> resized RGB frame, for the images whose stamp is in `wanted`."""
    out: dict[int, np.ndarray] = {}
    with BagReader(bag) as reader:
        for raw, msg in reader.decoded([topic]):
            stamp = msgs.stamp_ns_of(msg) or raw.stamp_ns
            if stamp in wanted and stamp not in out:
                try:
                    rgb = msgs.image_from_msg(msg)
                except ValueError as exc:
                    raise ValueError(f"bag {bag}: image on {topic} at {stamp} ns: {exc}") from None
                out[stamp] = resize_frame(rgb, *size)
    return out


def _image_stamps(bag: Path, topic: str) -> list[int]:
    with BagReader(bag) as reader:
        return sorted({msgs.stamp_ns_of(m) or raw.stamp_ns for raw, m in reader.decoded([topic])})


def _jsonl_items(path: Path) -> list[dict]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(item, dict) or "type" not in item or "frame_range" not in item:
            raise ValueError(f"{path}:{n}: expected an annotation item with type and frame_range")
        items.append(item)
    return items


def split_items(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Annotation items -> (QA items in generate_qa form, descriptions {type, frame_range, text})."""
    qa, descs = [], []
    for it in items:
        if it["type"] == "qa":
            qa.append({k: it[k] for k in ITEM_KEYS})
        elif it["type"] in ("episode_description", "chunk_description"):
            descs.append({"type": it["type"], "frame_range": list(it["frame_range"]), "text": it["text"]})
    return qa, descs


def episode_id(bag: Path, index: int) -> str:
    """`<run dir>_<bag dir>_<episode>`, e.g. synth_0001_bag_0 for runs/synth_0001/bag."""
    bag = bag.resolve()
    return _UNSAFE.sub("_", f"{bag.parent.name}_{bag.name}_{index}").strip("_.-")[:190]


def _source(bag: Path, scene: Scene | None) -> str:
    m = re.fullmatch(r"synthetic_(\d+)", scene.name) if scene is not None and scene.name else None
    return f"synth:{m.group(1)}" if m else str(bag.resolve())


def bake_bag(bag: str | Path, out: str | Path, opts: BakeOptions, *,
             scene_path: str | Path | None = None) -> list[BakedEpisode]:
    """Bake one bag into `out/<episode id>/` shards; see the module doc."""
    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise ValueError(f"bag {bag} does not exist")
    if not bag.is_dir():
        raise ValueError(f"bag {bag} is a file; give the bag directory (with metadata.yaml; "
                         "`spatial-ttt bag recover DIR` writes one)")
    image_topic, posed, counts = _inspect(bag)
    side = bag.resolve().parent
    scene_file = Path(scene_path) if scene_path is not None else side / "scene.yaml"
    if scene_path is not None and not scene_file.is_file():
        raise ValueError(f"scene file {scene_file} does not exist")
    scene = load_scene(scene_file) if scene_file.is_file() else None
    jsonl = side / JSONL_NAME
    annotations = _jsonl_items(jsonl) if jsonl.is_file() else None
    if scene is not None and not posed:
        raise ValueError(f"bag {bag}: a scene file is given but the bag has no poses and CameraInfo to place "
                         f"the camera in it; its topics: {', '.join(f'{t}: {n}' for t, n in sorted(counts.items()))}")
    if annotations is not None and opts.stride > 1 and scene is None:
        raise ValueError(f"bag {bag}: with --stride {opts.stride} the items must be recomputed on the kept frames, "
                         f"which needs the scene file (--scene, or scene.yaml beside the bag); or use --stride 1")

    if posed:
        episodes, _skipped = read_episodes(bag, scene.frame_id if scene is not None else None, opts.max_pose_gap_s)
        if not episodes:
            raise ValueError(f"bag {bag}: no image has a pose within {opts.max_pose_gap_s:g} s of its stamp")
    else:
        stamps = _image_stamps(bag, image_topic)
        episodes = [BagEpisode("", stamps, [], [])]
    kept = [list(range(0, len(e.stamps_ns), opts.stride)) for e in episodes]
    wanted = {e.stamps_ns[i] for e, k in zip(episodes, kept) for i in k}
    images = _read_frames(bag, image_topic, wanted, opts.frame_size)
    missing = sorted(wanted - set(images))
    if missing:
        raise ValueError(f"bag {bag}: {len(missing)} frames have no readable image on {image_topic} "
                         f"(first at {missing[0]} ns)")

    baked = []
    for index, (ep, keep) in enumerate(zip(episodes, kept)):
        sub = BagEpisode(ep.file, [ep.stamps_ns[i] for i in keep], [ep.poses[i] for i in keep] if ep.poses else [],
                         [ep.intrinsics[i] for i in keep] if ep.intrinsics else [])
        frames = np.stack([images[s] for s in sub.stamps_ns])
        stamps = np.asarray(sub.stamps_ns, dtype=np.int64).astype(np.float64) / 1e9
        poses = (np.stack([np.concatenate([p.position, p.orientation]) for p in sub.poses]).astype(np.float64)
                 if sub.poses else None)
        visibility, items, descs, origin = None, [], [], "none"
        if scene is not None:
            table = compute_visibility_table(scene, sub.poses, sub.intrinsics, occluders=wall_occluders(scene))
            visibility = {str(f): sorted(ids) for f, ids in table.items()}
        if annotations is not None and opts.stride == 1:
            mine = [it for it in annotations if it.get("episode") == index and it.get("file", ep.file) == ep.file]
            n = len(sub.stamps_ns)
            spans = [it["frame_range"] for it in mine if max(it["frame_range"]) >= n or
                     (it["type"] == "episode_description" and list(it["frame_range"]) != [0, n - 1])]
            if spans:
                raise ValueError(f"{jsonl}: items of episode {index} span frames {spans[0]} but the bag's "
                                 f"episode has {n} frames; annotate the bag again")
            items, descs = split_items(mine)
            origin = JSONL_NAME
        elif scene is not None:
            computed = annotate_episode(scene, sub, index, chunk_frames=opts.chunk_frames, seed=opts.seed,
                                        max_per_kind=opts.max_per_kind)
            items, descs = split_items(computed)
            origin = "scene"
        info: dict[str, Any] = {
            "episode": episode_id(bag, index), "source": _source(bag, scene), "items": items,
            "descriptions": descs, "visibility": visibility,
            "scene": scene_to_dict(scene) if scene is not None else None, "topics": counts,
            "bake": {"stride": opts.stride, "annotations": origin, "bag_file": ep.file,
                     "first_stamp_ns": sub.stamps_ns[0]},
        }
        path = write_episode(out / info["episode"], frames, stamps, poses, info, overwrite=opts.overwrite)
        baked.append(BakedEpisode(path, len(frames), len(items), len(descs), origin))
    return baked


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bake` verb to `spatial-ttt train`'s subparsers; the handler is `args.func(args) -> int`."""
    p = subparsers.add_parser("bake", help="bags -> episode shards (resized frames, stamps, poses, items)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG", help="bag directories (or .mcap files)")
    p.add_argument("--preset", default="demo", help="model preset (models/<name>.yaml or a path): the frame size")
    p.add_argument("--out", type=Path, required=True, help="shard root; each episode goes to OUT/<episode id>/")
    p.add_argument("--stride", type=int, default=1, help="keep every k-th frame of an episode")
    p.add_argument("--scene", type=Path, default=None, help="scene file (one bag only; default: scene.yaml beside it)")
    p.add_argument("--chunk-frames", type=int, default=16, help="kept frames per chunk description (recomputed items)")
    p.add_argument("--seed", type=int, default=0, help="seed of the QA draws (recomputed items)")
    p.add_argument("--max-per-kind", type=int, default=3, help="QA items per kind and episode (recomputed items)")
    p.add_argument("--max-pose-gap", type=float, default=0.1, help="skip frames without a pose this close [s]")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards")
    p.set_defaults(func=run_bake)
    return p


def run_bake(args: argparse.Namespace) -> int:
    """The `bake` verb: 0 on success, 2 when a bag or an argument is bad, 1 on an OS error."""
    try:
        if args.scene is not None and len(args.bags) > 1:
            raise ValueError("--scene applies to one bag; with several bags put scene.yaml beside each")
        config = load_config(args.preset)
        opts = BakeOptions((config.frame_height, config.frame_width), args.stride, args.chunk_frames, args.seed,
                           args.max_per_kind, args.max_pose_gap, args.overwrite)
        for bag in args.bags:
            for ep in bake_bag(bag, args.out, opts, scene_path=args.scene):
                print(f"{ep.path}: {ep.frames} frames {config.frame_height}x{config.frame_width}, {ep.items} QA items, "
                      f"{ep.descriptions} descriptions (from {ep.annotations})")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cli_bake(argv: list[str]) -> int:
    """`bake` on its own (until `spatial-ttt train` dispatches to register())."""
    parser = argparse.ArgumentParser(prog="spatial-ttt train")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["bake", *argv])
    return args.func(args)
