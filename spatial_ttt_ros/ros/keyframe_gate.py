"""Which synced frames become keyframes (no rclpy; shared by the perception and recorder nodes).

A parked robot must not fill memory with copies of one view, and a 30 Hz camera must not outrun
the model. A frame passes when

* it is newer than the last keyframe (a stamp that goes back is bad input, not a keyframe), and
* at least 1 / max_rate_hz seconds passed since the last keyframe (max_rate_hz <= 0: no limit), and
* with a pose: the camera moved at least `min_translation_m` or turned at least
  `min_rotation_deg` since the last keyframe. Without a pose only the rate applies.

`evaluate` only looks; `commit` makes the frame the new reference. The node commits after the
image decoded, so a corrupt image never becomes the reference that later frames are measured from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Why a frame did not pass.
PASS = ""
STAMP = "stamp"  # not newer than the last keyframe (bad input)
RATE = "rate"  # too soon after the last keyframe
STILL = "still"  # the camera has not moved or turned enough


@dataclass(frozen=True)
class GateConfig:
    max_rate_hz: float = 2.0
    min_translation_m: float = 0.1
    min_rotation_deg: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_rate_hz", "min_translation_m", "min_rotation_deg"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class Pose:
    """A camera pose: position [3] in metres, orientation quaternion [4] (x, y, z, w), unit norm."""

    position: np.ndarray  # [3] float64
    quaternion: np.ndarray  # [4] float64, (x, y, z, w)


def rotation_angle_deg(q_a: np.ndarray, q_b: np.ndarray) -> float:
    """Angle of the rotation taking unit quaternion q_a to q_b [deg]; q and -q are the same."""
    dot = min(1.0, abs(float(np.dot(q_a, q_b))))
    return math.degrees(2.0 * math.acos(dot))


class KeyframeGate:
    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._last_stamp: float | None = None
        self._last_pose: Pose | None = None

    @property
    def last_stamp(self) -> float | None:
        """The reference keyframe's stamp [s] (None before the first)."""
        return self._last_stamp

    def reset(self) -> None:
        """Forget the reference keyframe: the next frame passes (after a memory reset or load)."""
        self._last_stamp = None
        self._last_pose = None

    def evaluate(self, stamp_s: float, pose: Pose | None = None) -> str:
        """PASS ("") if a frame at `stamp_s` with `pose` is a keyframe, else STAMP, RATE or STILL."""
        if self._last_stamp is None:
            return PASS
        if stamp_s <= self._last_stamp:
            return STAMP
        # The tolerance keeps stamps exactly one period apart (in float seconds) on the passing side.
        if self.config.max_rate_hz > 0 and stamp_s - self._last_stamp < 1.0 / self.config.max_rate_hz - 1e-6:
            return RATE
        if pose is not None and self._last_pose is not None:
            moved = float(np.linalg.norm(pose.position - self._last_pose.position))
            turned = rotation_angle_deg(pose.quaternion, self._last_pose.quaternion)
            if moved < self.config.min_translation_m and turned < self.config.min_rotation_deg:
                return STILL
        return PASS

    def commit(self, stamp_s: float, pose: Pose | None = None) -> None:
        """Make this frame the reference for the next decisions."""
        self._last_stamp = stamp_s
        if pose is not None:
            self._last_pose = pose

    def admit(self, stamp_s: float, pose: Pose | None = None) -> str:
        """evaluate + commit when it passes (for callers with nothing to check in between)."""
        reason = self.evaluate(stamp_s, pose)
        if reason == PASS:
            self.commit(stamp_s, pose)
        return reason
