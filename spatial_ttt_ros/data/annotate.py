"""Dense descriptions and spatial QA for a recorded bag, answered from a scene annotation file.

    spatial-ttt annotate RUN/bag --scene RUN/scene.yaml [--chunk-frames 16] [--seed 0] [--max-per-kind 3]

Reads the layout the recorder and `spatial-ttt synth` write: an image topic (Image or
CompressedImage; each message is one frame, in stamp order, a recorder bag holding keyframes
only), CameraInfo (intrinsics) and PoseStamped or Odometry poses of the camera OPTICAL frame in the
scene's frame (spatial/camera.py). A frame takes the pose nearest its header stamp (frames without
one within `max_pose_gap_s` are skipped and counted) and the nearest CameraInfo.

Episodes are the bag's data files (the recorder splits by duration or size); frame indices count
from 0 within an episode. Per episode: visibility per frame (spatial.observations, with the rooms'
walls as occluders, doorways open, as the renderer draws them), then items:

* "episode_description": describe_episode over the whole episode;
* "chunk_description": describe_chunks, one per `chunk_frames` frames (the Stage-1 supervision);
* "qa": generate_qa items of the eight VSI-Bench kinds, answers from the geometry, and the
  robot-relative kinds (locate, robot_distance, robot_direction) from the frames' camera poses,
  asked after the episode's last frame (spatial/qa.py).

Every item carries type, episode, file (the episode's .mcap), frame_range [first, last]
(inclusive; what it depends on), stamp_ns (the header stamp of frame `last`) and its payload.

Where they go:

* `<bag>/../annotations.jsonl`, one item per line (beside the bag and its scene.yaml);
* the bag's /spatial_ttt/annotations topic (std_msgs/String JSON, bag time = stamp_ns), in a
  separate file of the same bag, `<name>_annotations.mcap`, listed in metadata.yaml. Why a new file
  and not a rewrite: the recorded files are never opened for writing, so annotating cannot damage
  or lose a recording, and costs no copy of the images. The new file is written complete (temp
  file, fsync, rename) before metadata.yaml is replaced atomically; annotating again replaces it.
  Deleting it and running `spatial-ttt bag recover` gives back the bag as recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bag_reader import BagReader
from spatial_ttt_ros.data.bags import McapFile, TopicSpec, fsync_dir
from spatial_ttt_ros.data.render import DEFAULT_ROOM_HEIGHT
from spatial_ttt_ros.data.shapes import doorways, wall_boxes
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, CameraPose
from spatial_ttt_ros.spatial.describe import describe_chunks, describe_episode
from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.observations import compute_visibility_table
from spatial_ttt_ros.spatial.qa import generate_qa
from spatial_ttt_ros.spatial.scene import Scene, load_scene

ODOMETRY = "nav_msgs/msg/Odometry"
ANNOTATIONS_SUFFIX = "_annotations.mcap"
JSONL_NAME = "annotations.jsonl"


@dataclass(frozen=True)
class Episode:
    """The frames of one bag file, in stamp order."""

    file: str
    stamps_ns: list[int]  # header stamps
    poses: list[CameraPose]
    intrinsics: list[CameraIntrinsics]


@dataclass(frozen=True)
class AnnotationResult:
    bag: Path
    jsonl: Path  # annotations.jsonl beside the bag
    bag_file: Path  # the bag's annotations file
    episodes: int
    frames: int  # frames annotated
    skipped_frames: int  # images without a pose within max_pose_gap_s
    items: tuple[dict, ...]

    def counts(self) -> dict[str, int]:
        """Items per type, QA per kind ("qa/count", ...)."""
        c = Counter(i["type"] if i["type"] != "qa" else f"qa/{i['kind']}" for i in self.items)
        return dict(sorted(c.items()))

    def summary(self) -> str:
        lines = [f"annotated {self.bag}: {self.episodes} episodes, {self.frames} frames"
                 + (f" ({self.skipped_frames} skipped: no pose within the gap)" if self.skipped_frames else ""),
                 f"  {len(self.items)} items -> {self.jsonl} and {self.bag_file.name} (/spatial_ttt/annotations)"]
        lines += [f"  {name}: {n}" for name, n in self.counts().items()]
        return "\n".join(lines)


def _pick_topic(topics: dict[str, str], types: tuple[str, ...], preferred: tuple[str, ...], what: str,
                bag: Path) -> str:
    candidates = sorted(t for t, ty in topics.items() if ty in types)
    for topic in preferred:
        if topic in candidates:
            return topic
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(f"bag {bag} has no {what} topic (of type {' or '.join(types)})")
    raise ValueError(f"bag {bag} has several {what} topics {candidates}; expected one, or {preferred[0]}")


def _nearest(stamps: np.ndarray, t: int) -> int:
    """Index of the stamp nearest t in the sorted array `stamps`."""
    i = int(np.searchsorted(stamps, t))
    if i == 0:
        return 0
    if i == len(stamps):
        return len(stamps) - 1
    return i if stamps[i] - t < t - stamps[i - 1] else i - 1


def _episode_starts(bag: Path) -> list[tuple[str, int]]:
    """(file name, first message time) of the bag's data files, in time order."""
    info = yaml.safe_load((bag / "metadata.yaml").read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
    files = [(str(f["path"]), int(f["starting_time"]["nanoseconds_since_epoch"]))
             for f in info.get("files") or [] if int(f.get("message_count", 0)) > 0
             and not str(f["path"]).endswith(ANNOTATIONS_SUFFIX)]
    return sorted(files, key=lambda f: f[1])


def read_episodes(bag: str | os.PathLike[str], frame_id: str | None = None,
                  max_pose_gap_s: float = 0.1) -> tuple[list[Episode], int]:
    """The bag's frames with their poses and intrinsics, per episode; and how many were skipped.

    frame_id: when given, poses stamped in another (non-empty) frame are a ValueError.
    """
    bag = Path(bag)
    images: list[tuple[int, int]] = []  # (bag time, header stamp)
    poses: dict[int, CameraPose] = {}
    infos: dict[int, tuple[tuple[float, ...], int, int]] = {}
    with BagReader(bag) as reader:
        topics = reader.topics
        image_topic = _pick_topic(topics, (msgs.IMAGE, msgs.COMPRESSED_IMAGE),
                                  (msgs.TOPIC_IMAGE, msgs.TOPIC_IMAGE_COMPRESSED), "image", bag)
        info_topic = _pick_topic(topics, (msgs.CAMERA_INFO,), (msgs.TOPIC_CAMERA_INFO,), "CameraInfo", bag)
        pose_topic = _pick_topic(topics, (msgs.POSE_STAMPED, ODOMETRY), (msgs.TOPIC_POSE,), "pose", bag)
        for raw, msg in reader.decoded([image_topic, info_topic, pose_topic]):
            stamp = msgs.stamp_ns_of(msg) or raw.stamp_ns  # an unstamped header falls back to bag time
            if raw.topic == image_topic:
                images.append((raw.stamp_ns, stamp))
            elif raw.topic == info_topic:
                infos[stamp] = (tuple(float(v) for v in msg.k), int(msg.width), int(msg.height))
            else:
                pose = msg.pose.pose if raw.msgtype == ODOMETRY else msg.pose
                if frame_id is not None and msg.header.frame_id and msg.header.frame_id != frame_id:
                    raise ValueError(f"bag {bag}: poses on {pose_topic} are in frame {msg.header.frame_id!r} "
                                     f"but the scene's frame_id is {frame_id!r}")
                p, q = pose.position, pose.orientation
                try:
                    poses[stamp] = CameraPose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
                except ValueError as exc:
                    raise ValueError(f"bag {bag}: pose on {pose_topic} at {stamp} ns: {exc}") from None
    for what, found, topic in (("image", images, image_topic), ("CameraInfo", infos, info_topic),
                               ("pose", poses, pose_topic)):
        if not found:
            raise ValueError(f"bag {bag} has no {what} messages on {topic}")
    pose_stamps, info_stamps = np.array(sorted(poses)), np.array(sorted(infos))
    intrinsics: dict[tuple, CameraIntrinsics] = {}
    starts = _episode_starts(bag) or [("", 0)]
    frames: dict[str, list[tuple[int, CameraPose, CameraIntrinsics]]] = {name: [] for name, _ in starts}
    skipped = 0
    for bag_time, stamp in sorted(images, key=lambda s: s[1]):
        t_pose = int(pose_stamps[_nearest(pose_stamps, stamp)])
        if abs(t_pose - stamp) > max_pose_gap_s * 1e9:
            skipped += 1
            continue
        t_info = int(info_stamps[_nearest(info_stamps, stamp)])
        key = infos[t_info]
        if key not in intrinsics:
            try:
                intrinsics[key] = CameraIntrinsics.from_k(*key)
            except ValueError as exc:
                raise ValueError(f"bag {bag}: CameraInfo on {info_topic} at {t_info} ns: {exc}") from None
        file = next((name for name, start in reversed(starts) if start <= bag_time), starts[0][0])
        frames[file].append((stamp, poses[t_pose], intrinsics[key]))
    episodes = [Episode(name, [f[0] for f in fs], [f[1] for f in fs], [f[2] for f in fs])
                for name, fs in frames.items() if fs]
    return episodes, skipped


def wall_occluders(scene: Scene) -> list[OrientedBox]:
    """The rooms' walls with their doorways open, as data/render.py draws them."""
    openings = doorways(scene.rooms)
    return [box for room in scene.rooms for box in wall_boxes(room, openings, room.height or DEFAULT_ROOM_HEIGHT)]


def episode_visibility(scene: Scene, episode: Episode) -> dict[int, frozenset[str]]:
    """Per-frame visibility of the episode's frames (walls occlude, doorways open)."""
    return compute_visibility_table(scene, episode.poses, episode.intrinsics, occluders=wall_occluders(scene))


def annotate_episode(scene: Scene, episode: Episode, index: int, *, chunk_frames: int, seed: int,
                     max_per_kind: int = 3, table: dict[int, frozenset[str]] | None = None) -> list[dict]:
    """Descriptions and QA of one episode (module doc), in that order. `table`: its visibility
    (episode_visibility) when the caller has it already."""
    if table is None:
        table = episode_visibility(scene, episode)
    stamps = episode.stamps_ns

    def item(kind: str, frame_range: list[int] | tuple[int, int], payload: dict) -> dict:
        first, last = int(frame_range[0]), int(frame_range[1])
        return {"type": kind, "episode": index, "file": episode.file, "frame_range": [first, last],
                "stamp_ns": stamps[last], **payload}

    items = [item("episode_description", [0, len(stamps) - 1], {"text": describe_episode(scene, table)})]
    items += [item("chunk_description", c.frame_range, {"text": c.text})
              for c in describe_chunks(scene, table, chunk_frames)]
    rng = np.random.default_rng([seed, index])
    qa_items = generate_qa(scene, table, seed=rng, max_per_kind=max_per_kind, poses=episode.poses)
    items += [item("qa", qa["frame_range"], qa) for qa in qa_items]
    return items


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def _to_json(item: dict) -> str:
    return json.dumps(item, ensure_ascii=False, default=_json_default)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _register_file(bag: Path, name: str, count: int, start_ns: int, end_ns: int, spec: TopicSpec) -> None:
    """List the annotations file (replacing an earlier one) in metadata.yaml, all else kept as is."""
    doc = yaml.safe_load((bag / "metadata.yaml").read_text(encoding="utf-8"))
    meta = doc["rosbag2_bagfile_information"]
    files = meta.get("files") or []
    removed = sum(int(f.get("message_count", 0)) for f in files if f["path"] == name)
    files = [f for f in files if f["path"] != name]
    files.append({"path": name, "starting_time": {"nanoseconds_since_epoch": start_ns},
                  "duration": {"nanoseconds": end_ns - start_ns}, "message_count": count})
    meta["files"] = files
    meta["relative_file_paths"] = [p for p in meta.get("relative_file_paths") or [] if p != name] + [name]
    meta["message_count"] = int(meta.get("message_count", 0)) - removed + count
    topics = meta.setdefault("topics_with_message_count", [])
    entry = next((t for t in topics if t["topic_metadata"]["name"] == spec.topic), None)
    if entry is None:
        topics.append({"topic_metadata": {"name": spec.topic, "type": spec.msgtype,
                                          "serialization_format": spec.encoding,
                                          "offered_qos_profiles": yaml.safe_load(spec.qos_yaml) or [],
                                          "type_description_hash": spec.type_hash},
                       "message_count": count})
    else:
        entry["message_count"] = int(entry["message_count"]) - removed + count
    spans = [(int(f["starting_time"]["nanoseconds_since_epoch"]),
              int(f["starting_time"]["nanoseconds_since_epoch"]) + int(f["duration"]["nanoseconds"]))
             for f in files if int(f.get("message_count", 0)) > 0]
    if spans:
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        meta["starting_time"] = {"nanoseconds_since_epoch": first}
        meta["duration"] = {"nanoseconds": last - first}
    _write_atomic(bag / "metadata.yaml", yaml.safe_dump(doc, sort_keys=False))


def write_to_bag(bag: Path, items: list[dict]) -> Path:
    """The items on the annotation topic, in a new file of the bag (module doc); returns its path."""
    final = bag / f"{bag.name}{ANNOTATIONS_SUFFIX}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    spec = TopicSpec.for_type(msgs.TOPIC_ANNOTATIONS, msgs.STRING)
    out = McapFile(tmp, name=final.name)
    try:
        out.add_topic(spec)
        for it in sorted(items, key=lambda i: i["stamp_ns"]):
            out.write(spec.topic, it["stamp_ns"], msgs.string_msg(_to_json(it)))
        out.finish([spec])
    except BaseException:
        out.abort()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    fsync_dir(bag)
    _register_file(bag, final.name, out.info.message_count, out.info.start_ns, out.info.end_ns, spec)
    return final


def annotate_bag(bag_path: str | os.PathLike[str], scene_path: str | os.PathLike[str], *, chunk_frames: int = 16,
                 seed: int = 0, max_per_kind: int = 3, max_pose_gap_s: float = 0.1) -> AnnotationResult:
    """Annotate a bag from its scene file and write the results (module doc). ValueError names the
    problem for a bad scene, a bag without images/CameraInfo/poses, or bad arguments."""
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise ValueError(f"chunk_frames must be a positive number of frames, got {chunk_frames!r}")
    if max_per_kind < 0:
        raise ValueError(f"max_per_kind must be >= 0, got {max_per_kind}")
    bag, scene_path = Path(bag_path), Path(scene_path)
    if not scene_path.is_file():
        raise ValueError(f"scene file {scene_path} does not exist")
    if not bag.is_dir():
        raise ValueError(f"bag directory {bag} does not exist")
    scene = load_scene(scene_path)
    episodes, skipped = read_episodes(bag, scene.frame_id, max_pose_gap_s)
    if not episodes:
        raise ValueError(f"bag {bag}: no frame has a pose within {max_pose_gap_s:g} s of its stamp")
    items: list[dict] = []
    for index, episode in enumerate(episodes):
        items += annotate_episode(scene, episode, index, chunk_frames=chunk_frames, seed=seed,
                                  max_per_kind=max_per_kind)
    jsonl = bag.resolve().parent / JSONL_NAME
    _write_atomic(jsonl, "".join(_to_json(it) + "\n" for it in items))
    bag_file = write_to_bag(bag, items)
    return AnnotationResult(bag, jsonl, bag_file, len(episodes), sum(len(e.stamps_ns) for e in episodes),
                            skipped, tuple(items))


def cli_annotate(argv: list[str]) -> int:
    """`spatial-ttt annotate BAG --scene FILE [--chunk-frames N] [--seed N]`; 2 for bad inputs."""
    parser = argparse.ArgumentParser(prog="spatial-ttt annotate",
                                     description="Dense descriptions + spatial QA for a bag, from a scene file.")
    parser.add_argument("bag", type=Path, help="bag directory (metadata.yaml + .mcap files)")
    parser.add_argument("--scene", type=Path, default=None,
                        help="scene annotation file (default: scene.yaml beside the bag)")
    parser.add_argument("--chunk-frames", type=int, default=16, help="frames per chunk description")
    parser.add_argument("--seed", type=int, default=0, help="seed of the QA draws")
    parser.add_argument("--max-per-kind", type=int, default=3, help="at most this many QA items per kind and episode")
    parser.add_argument("--max-pose-gap", type=float, default=0.1,
                        help="skip frames without a pose this close to their stamp [s]")
    args = parser.parse_args(argv)
    scene = args.scene
    if scene is None:
        scene = args.bag.resolve().parent / "scene.yaml"
        if not scene.is_file():
            print(f"error: no --scene given and no scene.yaml beside the bag ({scene})", file=sys.stderr)
            return 2
    try:
        result = annotate_bag(args.bag, scene, chunk_frames=args.chunk_frames, seed=args.seed,
                              max_per_kind=args.max_per_kind, max_pose_gap_s=args.max_pose_gap)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing the annotations failed: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
