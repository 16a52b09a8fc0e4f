"""FrameIngest: a synced pair -> checks -> gate -> decode -> queue, with a counter per outcome.
Messages are plain namespaces with the ROS field names (the module is duck-typed, rclpy-free)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np

from spatial_ttt_ros.ros.conversions import image_to_rgb
from spatial_ttt_ros.ros.ingest import FrameIngest, StampPolicy
from spatial_ttt_ros.ros.keyframe_gate import GateConfig, KeyframeGate


def stamp(t: float) -> NS:
    return NS(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))


def image(t: float, encoding: str = "rgb8", step: int | None = None) -> NS:
    data = np.arange(4 * 6 * 3, dtype=np.uint8).tobytes()
    return NS(header=NS(stamp=stamp(t)), height=4, width=6, encoding=encoding, step=18 if step is None else step,
              data=data)


def pose(t: float, x: float, qw: float = 1.0) -> NS:
    return NS(header=NS(stamp=stamp(t)), pose=NS(position=NS(x=x, y=0.0, z=0.0),
                                                   orientation=NS(x=0.0, y=0.0, z=0.0, w=qw)))


def make(max_rate_hz: float = 0.0) -> tuple[FrameIngest, list]:
    queued: list = []
    gate = KeyframeGate(GateConfig(max_rate_hz=max_rate_hz, min_translation_m=0.1, min_rotation_deg=10.0))
    return FrameIngest(image_to_rgb, gate, lambda frame: queued.append(frame) or True), queued


def test_outcomes_are_counted_and_only_keyframes_are_queued():
    ingest, queued = make()
    assert ingest.on_pair(image(1.0), pose(1.0, 0.0)) == "keyframe"
    assert ingest.on_pair(image(2.0), pose(2.0, 0.05)) == "gated"  # 5 cm: parked
    assert ingest.on_pair(image(3.0, step=10), pose(3.0, 1.0)).startswith("rejected: image step 10")
    assert ingest.on_pair(image(4.0, encoding="yuv422"), pose(4.0, 1.0)).startswith("rejected: unsupported")
    assert ingest.on_pair(image(5.0), pose(5.0, 1.0, qw=0.0)).startswith("rejected: pose orientation")
    assert ingest.on_pair(image(0.0), pose(0.0, 2.0)).startswith("rejected: image header stamp is zero")
    assert ingest.on_pair(image(6.0), pose(6.0, 1.0)) == "keyframe"  # the rejects did not move the gate
    assert ingest.on_pair(image(5.5), pose(5.5, 3.0)).startswith("rejected: stamp 5.5")
    counts = ingest.counts()
    assert (counts.synced, counts.keyframes, counts.gated, counts.rejected) == (8, 2, 1, 5)
    assert counts.last_reject.startswith("stamp 5.5")
    assert [f.stamp_s for f in queued] == [1.0, 6.0]
    assert queued[1].pose.shape == (4, 4) and queued[1].pose[0, 3] == 1.0
    assert queued[0].image.shape == (4, 6, 3) and queued[0].image.dtype == np.uint8


def test_without_pose_only_the_rate_applies_and_reset_reopens_the_gate():
    ingest, queued = make(max_rate_hz=1.0)
    results = [ingest.on_pair(image(1.0 + 0.25 * i)) for i in range(9)]
    assert results.count("keyframe") == 3 and queued[-1].pose is None
    ingest.reset_gate()
    assert ingest.on_pair(image(0.5)) == "keyframe"


def test_counts_are_a_copy():
    ingest, _ = make()
    counts = ingest.counts()
    ingest.on_image()
    assert counts.received == 0 and ingest.counts().received == 1


def neg_stamp(sec: int) -> NS:
    return NS(sec=sec, nanosec=0)


def test_negative_and_zero_stamps_are_rejected_with_their_reason():
    ingest, queued = make()
    msg = image(1.0)
    msg.header.stamp = neg_stamp(-5)
    assert "header stamp is negative (-5 s)" in ingest.on_pair(msg, pose(1.0, 0.0))
    msg.header.stamp = neg_stamp(0)
    assert "stamp is zero" in ingest.on_pair(msg, pose(1.0, 0.0))
    assert ingest.counts().rejected == 2 and queued == []
    ingest.reject("pose: header stamp is negative (-1 s)")  # refused before pairing (ros/inputs.py)
    assert ingest.counts().refused == 1 and "negative" in ingest.counts().last_reject


def test_far_future_stamps_are_refused_and_a_rewound_clock_starts_over():
    queued: list = []
    clock = [1000.0]
    policy = StampPolicy(max_ahead_s=60.0, rewind_s=10.0, now_s=lambda: clock[0])
    gate = KeyframeGate(GateConfig(max_rate_hz=0.0, min_translation_m=0.1, min_rotation_deg=10.0))
    ingest = FrameIngest(image_to_rgb, gate, lambda frame: queued.append(frame) or True, policy)
    assert ingest.on_pair(image(900.0), pose(900.0, 0.0)) == "keyframe"
    far = 2.0**31 - 10
    assert "ahead of the node's clock" in ingest.on_pair(image(far), pose(far, 1.0))
    assert ingest.on_pair(image(901.0), pose(901.0, 2.0)) == "keyframe"  # the wild stamp blocked nothing
    assert "not after the last keyframe" in ingest.on_pair(image(895.0), pose(895.0, 3.0))  # a small step back
    assert ingest.on_pair(image(3.0), pose(3.0, 4.0)) == "keyframe"  # the robot's clock restarted
    assert ingest.on_pair(image(4.0), pose(4.0, 5.0)) == "keyframe"
    assert [f.stamp_s for f in queued] == [900.0, 901.0, 3.0, 4.0]
    assert ingest.counts().rewinds == 1
    clock[0] = 0.0  # sim time before the first /clock: no check
    assert ingest.on_pair(image(far), pose(far, 6.0)) == "keyframe"
