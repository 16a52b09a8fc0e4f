"""The keyframe gate: rate limit, motion thresholds, stamps going back (rclpy-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_ttt_ros.ros.keyframe_gate import (
    PASS,
    RATE,
    STAMP,
    STILL,
    GateConfig,
    KeyframeGate,
    Pose,
    rotation_angle_deg,
)


def pose(x: float = 0.0, yaw_deg: float = 0.0) -> Pose:
    half = math.radians(yaw_deg) / 2
    return Pose(position=np.array([x, 0.0, 0.0]), quaternion=np.array([0.0, 0.0, math.sin(half), math.cos(half)]))


def test_parked_robot_gives_one_keyframe_moving_robot_gives_all():
    gate = KeyframeGate(GateConfig(max_rate_hz=2.0, min_translation_m=0.1, min_rotation_deg=10.0))
    parked = [gate.admit(float(t), pose(0.001 * t)) for t in range(20)]
    assert parked.count(PASS) == 1 and parked[1:] == [STILL] * 19
    moving = [gate.admit(20.0 + t, pose(1.0 + 0.5 * t)) for t in range(10)]
    assert moving == [PASS] * 10


def test_turning_in_place_counts_as_motion():
    gate = KeyframeGate(GateConfig(max_rate_hz=0.0, min_translation_m=0.1, min_rotation_deg=10.0))
    assert gate.admit(1.0, pose(0.0, 0.0)) == PASS
    assert gate.admit(2.0, pose(0.0, 9.0)) == STILL
    assert gate.admit(3.0, pose(0.0, 11.0)) == PASS
    # -q is the same rotation as q: no spurious 360 degree turn.
    q = pose(0.0, 11.0)
    assert gate.admit(4.0, Pose(q.position, -q.quaternion)) == STILL


def test_rate_limit_applies_with_and_without_pose():
    gate = KeyframeGate(GateConfig(max_rate_hz=2.0))
    stamps = [round(0.1 * i, 1) for i in range(21)]  # 10 Hz for 2 s
    results = [gate.admit(t) for t in stamps]
    assert [t for t, r in zip(stamps, results) if r == PASS] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert set(results) == {PASS, RATE}
    unlimited = KeyframeGate(GateConfig(max_rate_hz=0.0))
    assert all(unlimited.admit(t) == PASS for t in stamps[1:])


def test_stamp_going_back_or_repeating_is_refused():
    gate = KeyframeGate(GateConfig(max_rate_hz=0.0))
    assert gate.admit(5.0) == PASS
    assert gate.admit(5.0) == STAMP and gate.admit(4.0) == STAMP
    gate.reset()
    assert gate.admit(4.0) == PASS  # after a reset (memory reset / load) anything goes


def test_evaluate_does_not_commit():
    gate = KeyframeGate(GateConfig(max_rate_hz=1.0))
    assert gate.evaluate(1.0) == PASS and gate.evaluate(1.2) == PASS  # nothing committed yet
    gate.commit(1.0)
    assert gate.evaluate(1.2) == RATE and gate.evaluate(2.0) == PASS


def test_rotation_angle():
    assert rotation_angle_deg(pose(0, 0).quaternion, pose(0, 90).quaternion) == pytest.approx(90.0)
    assert rotation_angle_deg(pose(0, 170).quaternion, pose(0, -170).quaternion) == pytest.approx(20.0)


@pytest.mark.parametrize("field", ["max_rate_hz", "min_translation_m", "min_rotation_deg"])
def test_config_rejects_negative_or_nan(field):
    for value in (-1.0, math.nan):
        with pytest.raises(ValueError, match=field):
            GateConfig(**{field: value})
