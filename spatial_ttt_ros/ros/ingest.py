"""What happens to a synced (image, pose) pair before the model sees it (no rclpy).

pair -> stamp and pose checks -> keyframe gate -> decode to RGB -> worker queue, with a counter for
every outcome and, per image encoding, how many frames came and whether they decode ("yuv422: ok",
"32FC1: unsupported (depth, not colour)"). With a rectifier the frame carries its rectification,
which the engine worker runs (data/rectify.py: maps built once per calibration, off the callbacks).
The node wires subscriptions and the synchroniser to `on_image` / `on_pair`; the recorder node
reuses the same steps (without a rectifier: it keeps raw images).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatial_ttt_ros.data.rectify import Rectifier
from spatial_ttt_ros.ros import keyframe_gate
from spatial_ttt_ros.ros.conversions import (
    EncodingInfo,
    pose_from_msg,
    pose_to_matrix,
    stamp_problem,
    stamp_to_seconds,
)
from spatial_ttt_ros.ros.keyframe_gate import KeyframeGate
from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.worker import Frame

MAX_ENCODINGS = 16  # distinct encodings tracked; more are counted under "other"
MAX_REASON_CHARS = 200


@dataclass
class EncodingCount:
    frames: int = 0  # images received in this encoding
    decoded: int = 0  # keyframe candidates decoded
    rejected: int = 0  # keyframe candidates that failed to decode
    status: str = ""  # "ok", "ok (cv_bridge)", "unsupported (<why>)" or "bad frame: <last reason>"


@dataclass(frozen=True)
class StampPolicy:
    """What to do with stamps that do not follow the last keyframe's.

    * `max_ahead_s` > 0: a frame stamped more than this ahead of `now_s()` (the node's clock) is
      rejected; one wild stamp would otherwise make every later frame "not after the last
      keyframe's". Skipped while the clock reads 0 (sim time before the first /clock).
    * `rewind_s` > 0: a frame stamped more than this before the last keyframe (a robot clock that
      restarted, a bag played again) is taken as the start of a new segment: the gate starts over,
      and the engine worker ends the segment and shifts later stamps to follow the memory's
      (EngineWorker). Smaller steps back are rejected as bad input.
    """

    max_ahead_s: float = 0.0
    rewind_s: float = 0.0
    now_s: Callable[[], float] | None = None


@dataclass
class IngestCounts:
    received: int = 0  # images received
    synced: int = 0  # images paired with a pose (every image when there is no pose input)
    gated: int = 0  # synced frames the keyframe gate skipped (too soon / not moved)
    keyframes: int = 0  # frames handed to the worker queue
    rejected: int = 0  # bad input: undecodable image, bad pose, stamp going back
    refused: int = 0  # messages refused before pairing (a negative stamp on any input)
    rewinds: int = 0  # stamps that jumped back by more than StampPolicy.rewind_s (new segments)
    last_reject: str = ""
    pose_frame_id: str = ""  # header.frame_id of the last keyframe's pose ("" without one)
    encodings: dict[str, EncodingCount] = field(default_factory=dict)


class FrameIngest:
    """Thread-safe: callbacks may come from several executor threads."""

    def __init__(self, decode: Callable[[Any], np.ndarray], gate: KeyframeGate,
                 push: Callable[[Frame], bool], *, describe: Callable[[Any], EncodingInfo] | None = None,
                 rectifier: Rectifier | None = None, stamps: StampPolicy | None = None) -> None:
        """`describe(msg)` names a message's encoding for the per-encoding counters (none: not kept);
        `rectifier` rectifies keyframes on the worker (none: frames go in as decoded); `stamps`: what
        to do with stamps far ahead or jumping back (none: no check, steps back refused)."""
        self._decode = decode
        self._stamps = stamps or StampPolicy()
        self._describe = describe
        self._rectifier = rectifier
        self._gate = gate
        self._push = push
        self._lock = threading.Lock()
        self._counts = IngestCounts()

    def counts(self) -> IngestCounts:
        """A copy of the counters."""
        with self._lock:
            encodings = {k: dataclasses.replace(v) for k, v in self._counts.encodings.items()}
            return dataclasses.replace(self._counts, encodings=encodings)

    def _encoding(self, info: EncodingInfo) -> EncodingCount:
        table = self._counts.encodings
        key = info.key if info.key in table or len(table) < MAX_ENCODINGS - 1 else "other"
        entry = table.setdefault(key, EncodingCount())
        if info.problem:
            entry.status = f"unsupported ({info.problem})"
        return entry

    def set_gate_config(self, config: keyframe_gate.GateConfig) -> None:
        """New keyframe thresholds (a live parameter change); the reference keyframe is kept."""
        with self._lock:
            self._gate.config = config

    def reset_gate(self) -> None:
        """After a memory reset/load: the next frame is a keyframe again."""
        with self._lock:
            self._gate.reset()

    def on_image(self, msg: Any = None) -> None:
        """Every image on the camera topic, before pairing."""
        info = self._describe(msg) if self._describe is not None and msg is not None else None
        with self._lock:
            self._counts.received += 1
            if info is not None:
                self._encoding(info).frames += 1

    def _check_ahead(self, stamp_s: float) -> None:
        policy = self._stamps
        if policy.max_ahead_s <= 0 or policy.now_s is None:
            return
        now = policy.now_s()
        if now > 0 and stamp_s > now + policy.max_ahead_s:
            raise ValueError(f"stamp {stamp_s:.3f} s is {stamp_s - now:.1f} s ahead of the node's clock "
                             f"(max_stamp_ahead_s {policy.max_ahead_s:g})")

    def reject(self, reason: str) -> None:
        """A message refused before pairing (e.g. a negative stamp on any input)."""
        with self._lock:
            self._counts.refused += 1
            self._counts.last_reject = clip(reason, 300)

    def on_pair(self, image_msg: Any, pose_msg: Any | None = None) -> str:
        """Handle one synced pair; returns "keyframe", "gated" or "rejected: <reason>"."""
        counts = self._counts
        info = self._describe(image_msg) if self._describe is not None else None
        with self._lock:
            counts.synced += 1
            decoding = False
            try:
                problem = stamp_problem(image_msg.header.stamp)
                if problem:
                    raise ValueError(f"image {problem}")
                stamp_s = stamp_to_seconds(image_msg.header.stamp)
                self._check_ahead(stamp_s)
                pose = None if pose_msg is None else pose_from_msg(pose_msg)
                verdict = self._gate.evaluate(stamp_s, pose)
                last, rewind = self._gate.last_stamp, self._stamps.rewind_s
                if verdict == keyframe_gate.STAMP and rewind > 0 and last is not None and stamp_s < last - rewind:
                    counts.rewinds += 1
                    self._gate.reset()
                    verdict = self._gate.evaluate(stamp_s, pose)
                if verdict == keyframe_gate.STAMP:
                    raise ValueError(f"stamp {stamp_s:.6f} s is not after the last keyframe's")
                if verdict != keyframe_gate.PASS:
                    counts.gated += 1
                    return "gated"
                decoding = True
                image = self._decode(image_msg)
                if info is not None:
                    entry = self._encoding(info)
                    entry.decoded += 1
                    backend = self._describe(image_msg).backend  # after the fact: what converted it
                    entry.status = "ok" if backend == "own" else f"ok ({backend})"
                decoding = False
                rectify = None if self._rectifier is None else self._rectifier.for_image(*image.shape[:2])
            except Exception as exc:  # ValueError names the bad field; anything else is still bad input
                reason = clip(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}", 300)
                counts.rejected += 1
                counts.last_reject = reason
                if decoding and info is not None:
                    entry = self._encoding(info)
                    entry.rejected += 1
                    if not info.problem:
                        entry.status = f"bad frame: {reason[:MAX_REASON_CHARS]}"
                return f"rejected: {reason}"
            self._gate.commit(stamp_s, pose)
            counts.keyframes += 1
            if pose_msg is not None:
                counts.pose_frame_id = clip(str(getattr(pose_msg.header, "frame_id", "")), MAX_REASON_CHARS)
            # Under the lock so frames enter the queue in stamp order; the queue counts drops.
            self._push(Frame(image=image, stamp_s=stamp_s, pose=None if pose is None else pose_to_matrix(pose),
                             transform=rectify))
        return "keyframe"
