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
from spatial_ttt_ros.ros.conversions import EncodingInfo, pose_from_msg, pose_to_matrix, stamp_to_seconds
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


@dataclass
class IngestCounts:
    received: int = 0  # images received
    synced: int = 0  # images paired with a pose (every image when there is no pose input)
    gated: int = 0  # synced frames the keyframe gate skipped (too soon / not moved)
    keyframes: int = 0  # frames handed to the worker queue
    rejected: int = 0  # bad input: undecodable image, bad pose, stamp going back
    last_reject: str = ""
    encodings: dict[str, EncodingCount] = field(default_factory=dict)


class FrameIngest:
    """Thread-safe: callbacks may come from several executor threads."""

    def __init__(self, decode: Callable[[Any], np.ndarray], gate: KeyframeGate,
                 push: Callable[[Frame], bool], *, describe: Callable[[Any], EncodingInfo] | None = None,
                 rectifier: Rectifier | None = None) -> None:
        """`describe(msg)` names a message's encoding for the per-encoding counters (none: not kept);
        `rectifier` rectifies keyframes on the worker (none: frames go in as decoded)."""
        self._decode = decode
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

    def on_pair(self, image_msg: Any, pose_msg: Any | None = None) -> str:
        """Handle one synced pair; returns "keyframe", "gated" or "rejected: <reason>"."""
        counts = self._counts
        info = self._describe(image_msg) if self._describe is not None else None
        with self._lock:
            counts.synced += 1
            decoding = False
            try:
                stamp_s = stamp_to_seconds(image_msg.header.stamp)
                if stamp_s <= 0.0:
                    raise ValueError("image header stamp is zero: the camera driver did not stamp it")
                pose = None if pose_msg is None else pose_from_msg(pose_msg)
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
            # Under the lock so frames enter the queue in stamp order; the queue counts drops.
            self._push(Frame(image=image, stamp_s=stamp_s, pose=None if pose is None else pose_to_matrix(pose),
                             transform=rectify))
        return "keyframe"
