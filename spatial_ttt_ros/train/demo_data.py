"""Bulk synthetic episodes for the demo model, straight into episode shards (train/shards.py).

    python -m spatial_ttt_ros.train.demo_data --seeds 0:4000 --out runs/demo_shards \\
        [--preset demo] [--frames 600] [--stride 5] [--tour oneway] [--workers 16] [--time-limit S]

The product path is `spatial-ttt synth --width W --height H --stride S --tour T` -> bag ->
`spatial-ttt annotate` -> `bake`. This module renders the same frames (data.synth.stream_frames,
at the preset's frame size, so the bake's resize is the identity) and annotates them with the same
function (data.annotate.annotate_episode, episode 0 of the bag, the same QA seed), but skips the
bag, so that thousands of scenes render in minutes on all cores. test_train_demo_data.py checks
one scene both ways.

Every QA item also carries, computed at the end of the episode (the question asked after the last
frame): `last_evidence_frame` (the last frame showing any object the answer depends on, or null)
and `evidence_outside_window` (observations.evidence_outside_window with the preset's sliding
window in frames, `window_frames`). Items are otherwise exactly generate_qa's.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from ..data.annotate import Episode as BagEpisode
from ..data.annotate import annotate_episode, episode_visibility
from ..data.synth import generate_scene, stream_frames
from ..data.trajectory import TOURS
from ..runtime.config import SpatialTTTConfig, load_config
from ..runtime.tokens import group_text
from ..spatial.camera import CameraIntrinsics
from ..spatial.observations import evidence_outside_window, last_seen
from ..spatial.scene import scene_to_dict
from .shards import write_episode

BAG_FILE = "bag_0.mcap"  # the data file name `synth` gives its one episode (data/bags.py)
QA_KEYS = ("kind", "vsi_type", "difficulty", "question", "options", "answer", "answer_text", "unit", "objects",
           "frame_range")
HFOV_DEG = 70.0


def window_frames(config: SpatialTTTConfig, tokenizer) -> int:  # noqa: ANN001
    """Frames the sliding window of W tokens can hold before a question: whole frame groups of the
    shortest kind (timestamp text "<0.0 seconds>", with the pose channel "<0.0 seconds x=0.0 y=0.0
    yaw=0>", vision start/end, h*w visual tokens), rounded up,
    times 2 frames per group. Conservative: an item is 'outside the window' only if no evidence
    frame is among these."""
    h, w = config.frame_height // 32, config.frame_width // 32
    shortest = group_text(0.0, 0.0, 0.0, (0.0, 0.0, 0.0) if config.pose_text else None)
    per_group = len(tokenizer.encode(shortest, add_special_tokens=False)) + 2 + h * w
    return 2 * math.ceil(config.window_size / per_group)


def label_items(items: list[dict], table: dict[int, frozenset[str]], ask_frame: int, window: int) -> list[dict]:
    """Copies of the items with last_evidence_frame and evidence_outside_window for a question
    asked after frame `ask_frame` (module doc)."""
    out = []
    for it in items:
        ids = it["objects"]
        out.append({**it, "last_evidence_frame": last_seen(table, ids, ask_frame) if ids else None,
                    "evidence_outside_window": evidence_outside_window(table, ids, ask_frame, window)})
    return out


def synth_episode(seed: int, config: SpatialTTTConfig, *, frames: int, stride: int, tour: str, window: int,
                  n_rooms: int | None = None, qa_seed: int = 0, max_per_kind: int = 3,
                  chunk_frames: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(frames uint8 [F, H, W, 3], stamps [F] s, poses [F, 7], shard info) of synthetic scene `seed`,
    as `synth` + `annotate` (seed = qa_seed) would make them (module doc)."""
    scene = generate_scene(seed, n_rooms)
    intr = CameraIntrinsics.from_fov(config.frame_width, config.frame_height, HFOV_DEG)
    shots = list(stream_frames(scene, seed, frames, intr, stride=stride, tour=tour))
    episode = BagEpisode(BAG_FILE, [f.stamp_ns for f in shots], [f.pose for f in shots], [intr] * len(shots))
    table = episode_visibility(scene, episode)
    annotated = annotate_episode(scene, episode, 0, chunk_frames=chunk_frames, seed=qa_seed,
                                 max_per_kind=max_per_kind, table=table)
    items = [{k: a[k] for k in QA_KEYS} for a in annotated if a["type"] == "qa"]
    descriptions = [{"type": a["type"], "frame_range": a["frame_range"], "text": a["text"]}
                    for a in annotated if a["type"] != "qa"]
    n = len(shots)
    info = {"episode": f"synth_{seed:07d}", "source": f"synth:{seed}",
            "items": label_items(items, table, n - 1, window), "descriptions": descriptions,
            "visibility": {str(f): sorted(ids) for f, ids in table.items()}, "scene": scene_to_dict(scene),
            "topics": {}, "synth": {"frames": frames, "stride": stride, "tour": tour, "n_rooms": n_rooms,
                                    "qa_seed": qa_seed, "max_per_kind": max_per_kind, "window_frames": window}}
    rgb = np.stack([f.rgb for f in shots])
    stamps = np.array([f.stamp_ns * 1e-9 for f in shots], dtype=np.float64)
    poses = np.array([np.r_[f.pose.position, f.pose.orientation] for f in shots], dtype=np.float64)
    return rgb, stamps, poses, info


def _one_thread() -> None:
    """Initializer of the (spawned) worker processes: one OpenCV and one torch thread each; the
    pool is the parallelism, and their default of a thread per core in each of N workers
    oversubscribes the CPU. Spawned, not forked: resizing a thread pool that the parent had
    started hangs in a forked child."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _one(job: tuple) -> tuple[int, int, int, float]:
    seed, out, preset, kwargs = job
    t0 = time.perf_counter()
    config = load_config(preset, weights="")
    rgb, stamps, poses, info = synth_episode(seed, config, **kwargs)
    write_episode(Path(out) / info["episode"], rgb, stamps, poses, info, overwrite=True)
    outside = sum(bool(i["evidence_outside_window"]) for i in info["items"])
    return seed, len(info["items"]), outside, time.perf_counter() - t0


def parse_seeds(text: str) -> range:
    """"A:B" -> range(A, B); ValueError otherwise."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"seeds must be A:B (integers, A < B), got {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"seeds must be A:B with 0 <= A < B, got {text!r}")
    return range(a, b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatial_ttt_ros.train.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="A:B renders scenes A..B-1")
    parser.add_argument("--out", type=Path, required=True, help="shard root (one directory per episode)")
    parser.add_argument("--preset", default="demo", help="model preset: frame size and window")
    parser.add_argument("--frames", type=int, default=600, help="trajectory length in 10 Hz frames")
    parser.add_argument("--stride", type=int, default=5, help="keep every N-th frame (5 = 2 Hz keyframes)")
    parser.add_argument("--tour", choices=TOURS, default="oneway")
    parser.add_argument("--rooms", type=int, default=None, help="rooms per scene (default 1-3 at random)")
    parser.add_argument("--qa-seed", type=int, default=0, help="annotate's --seed")
    parser.add_argument("--max-per-kind", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--time-limit", type=float, default=None, metavar="S",
                        help="start no scene after S seconds (those running finish; every shard written is whole)")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        config = load_config(args.preset, weights="")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ..runtime.tokens import build_byte_tokenizer
    tokenizer = build_byte_tokenizer(int(config.tiny_text.get("vocab_size", 320))) if config.backbone == "tiny" else None
    if tokenizer is None:
        print("error: demo_data needs a tiny-backbone preset (byte tokenizer)", file=sys.stderr)
        return 2
    kwargs = dict(frames=args.frames, stride=args.stride, tour=args.tour, window=window_frames(config, tokenizer),
                  n_rooms=args.rooms, qa_seed=args.qa_seed, max_per_kind=args.max_per_kind)
    jobs = [(s, str(args.out), args.preset, kwargs) for s in seeds]
    t0 = time.perf_counter()
    deadline = None if args.time_limit is None else t0 + args.time_limit
    done = items = outside = 0
    scene_s = 0.0  # summed per-scene seconds inside the workers

    def report(prefix: str = "") -> None:
        per_scene = f", {scene_s / done:.1f} s per scene in a worker" if done else ""
        print(f"{prefix}{done}/{len(jobs)} scenes, {items} QA items ({outside} with evidence outside the window), "
              f"{time.perf_counter() - t0:.0f} s{per_scene}", flush=True)

    with ProcessPoolExecutor(max_workers=max(1, args.workers), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        pending = {pool.submit(_one, job) for job in jobs}
        while pending:
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                for future in pending:  # queued scenes never start; running ones finish below
                    future.cancel()
                finished, pending = wait({f for f in pending if not f.cancelled()}).done, set()
            else:
                finished, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in finished:
                _, n_items, n_out, seconds = future.result()
                done, items, outside, scene_s = done + 1, items + n_items, outside + n_out, scene_s + seconds
                if done % 200 == 0:
                    report()
    report("time limit: " if done < len(jobs) else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
