"""What happens to a synced (image, pose) pair before the model sees it (no rclpy).

pair -> stamp and pose checks -> keyframe gate -> decode to RGB -> worker queue, with a counter for
every outcome. The node wires subscriptions and the synchroniser to `on_image` / `on_pair`; the
recorder node can reuse the same steps.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spatial_ttt_ros.ros import keyframe_gate
from spatial_ttt_ros.ros.conversions import pose_from_msg, pose_to_matrix, stamp_to_seconds
from spatial_ttt_ros.ros.keyframe_gate import KeyframeGate
from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.worker import Frame


@dataclass
class IngestCounts:
    received: int = 0  # images received
    synced: int = 0  # images paired with a pose (every image when there is no pose input)
    gated: int = 0  # synced frames the keyframe gate skipped (too soon / not moved)
    keyframes: int = 0  # frames handed to the worker queue
    rejected: int = 0  # bad input: undecodable image, bad pose, stamp going back
    last_reject: str = ""


class FrameIngest:
    """Thread-safe: callbacks may come from several executor threads."""

    def __init__(self, decode: Callable[[Any], np.ndarray], gate: KeyframeGate,
                 push: Callable[[Frame], bool]) -> None:
        self._decode = decode
        self._gate = gate
        self._push = push
        self._lock = threading.Lock()
        self._counts = IngestCounts()

    def counts(self) -> IngestCounts:
        """A copy of the counters."""
        with self._lock:
            return dataclasses.replace(self._counts)

    def set_gate_config(self, config: keyframe_gate.GateConfig) -> None:
        """New keyframe thresholds (a live parameter change); the reference keyframe is kept."""
        with self._lock:
            self._gate.config = config

    def reset_gate(self) -> None:
        """After a memory reset/load: the next frame is a keyframe again."""
        with self._lock:
            self._gate.reset()

    def on_image(self, _msg: Any = None) -> None:
        """Every image on the camera topic, before pairing."""
        with self._lock:
            self._counts.received += 1

    def on_pair(self, image_msg: Any, pose_msg: Any | None = None) -> str:
        """Handle one synced pair; returns "keyframe", "gated" or "rejected: <reason>"."""
        counts = self._counts
        with self._lock:
            counts.synced += 1
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
                image = self._decode(image_msg)
            except Exception as exc:  # ValueError names the bad field; anything else is still bad input
                reason = clip(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}", 300)
                counts.rejected += 1
                counts.last_reject = reason
                return f"rejected: {reason}"
            self._gate.commit(stamp_s, pose)
            counts.keyframes += 1
            # Under the lock so frames enter the queue in stamp order; the queue counts drops.
            self._push(Frame(image=image, stamp_s=stamp_s, pose=None if pose is None else pose_to_matrix(pose)))
        return "keyframe"
