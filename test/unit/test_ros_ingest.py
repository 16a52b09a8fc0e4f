"""FrameIngest: a synced pair -> checks -> gate -> decode -> queue, with a counter per outcome.
Messages are plain namespaces with the ROS field names (the module is duck-typed, rclpy-free)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np

from spatial_ttt_ros.data.rectify import Rectifier
from spatial_ttt_ros.ros.conversions import ImageDecoder, image_to_rgb
from spatial_ttt_ros.ros.ingest import MAX_ENCODINGS, FrameIngest, StampPolicy
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
    assert ingest.on_pair(image(4.0, encoding="32FC1"), pose(4.0, 1.0)).startswith(
        "rejected: unsupported image encoding '32FC1' (depth, not colour)")
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
    ingest = FrameIngest(image_to_rgb, gate, lambda frame: queued.append(frame) or True, stamps=policy)
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
def test_each_encoding_is_counted_with_its_verdict():
    decoder = ImageDecoder(use_cv_bridge=False)
    queued: list = []
    gate = KeyframeGate(GateConfig(max_rate_hz=0.0, min_translation_m=0.1, min_rotation_deg=10.0))
    ingest = FrameIngest(decoder, gate, lambda frame: queued.append(frame) or True, describe=decoder.describe)
    yuyv = image(1.0, encoding="yuv422_yuy2", step=12)  # 4 x 6 pixels, 2 bytes each
    yuyv.data = yuyv.data[:48]
    odd = image(2.0, encoding="yuv422_yuy2", step=12)  # wrong size: 72 bytes for 4 rows of 12
    depth = image(3.0, encoding="32FC1")
    for t, msg in ((1.0, yuyv), (2.0, odd), (3.0, depth)):
        ingest.on_image(msg)
        ingest.on_pair(msg, pose(t, t))
    ingest.on_image(depth)  # received but gated/not paired: still counted, still unsupported
    counts = ingest.counts().encodings
    assert set(counts) == {"yuv422_yuy2", "32FC1"}
    y = counts["yuv422_yuy2"]
    assert (y.frames, y.decoded, y.rejected) == (2, 1, 1)
    assert y.status == "bad frame: image data is 72 bytes; step 12 x height 4 needs 48"
    d = counts["32FC1"]
    assert (d.frames, d.decoded, d.rejected, d.status) == (2, 0, 1, "unsupported (depth, not colour)")
    assert len(queued) == 1 and queued[0].image.shape == (4, 6, 3)
    # a good frame after a bad one puts the verdict back to ok
    good = image(4.0, encoding="yuv422_yuy2", step=12)
    good.data = good.data[:48]
    ingest.on_pair(good, pose(4.0, 4.0))
    assert ingest.counts().encodings["yuv422_yuy2"].status == "ok"
    # the table is bounded: a stream of made-up encodings ends up under "other"
    for i in range(3 * MAX_ENCODINGS):
        ingest.on_image(image(5.0, encoding=f"junk{i}"))
    table = ingest.counts().encodings
    assert len(table) == MAX_ENCODINGS and table["other"].status == "unsupported (unknown encoding)"


def _camera_info(width: int = 6, height: int = 4, d: tuple = (-0.3, 0.1, 0.0, 0.0, 0.0)) -> NS:
    k = (5.0, 0.0, 3.0, 0.0, 5.0, 2.0, 0.0, 0.0, 1.0)
    return NS(width=width, height=height, distortion_model="plumb_bob", d=d, k=k, r=(0.0,) * 9, p=(0.0,) * 12,
              binning_x=0, binning_y=0, roi=NS(x_offset=0, y_offset=0, width=0, height=0))


def test_rectification_travels_with_the_frame_and_waits_for_camera_info():
    rectifier = Rectifier("auto")
    queued: list = []
    gate = KeyframeGate(GateConfig(max_rate_hz=0.0, min_translation_m=0.1, min_rotation_deg=10.0))
    ingest = FrameIngest(image_to_rgb, gate, lambda frame: queued.append(frame) or True, rectifier=rectifier)
    assert ingest.on_pair(image(1.0), pose(1.0, 0.0)) == (
        "rejected: rectify=auto: no CameraInfo received yet on camera_info")
    rectifier.on_camera_info(_camera_info(width=8))
    assert ingest.on_pair(image(2.0), pose(2.0, 1.0)) == "rejected: image 6x4 does not match camera_info 8x4"
    rectifier.on_camera_info(_camera_info())
    assert ingest.on_pair(image(3.0), pose(3.0, 2.0)) == "keyframe"
    frame = queued[-1]
    assert frame.transform is not None and rectifier.cache.computed == 0  # maps: later, on the worker
    out = frame.transform(frame.image)
    assert out.shape == frame.image.shape and rectifier.cache.computed == 1
    frame.transform(frame.image)
    assert rectifier.cache.computed == 1  # once per calibration
    rectifier.on_camera_info(_camera_info(d=(0.0,) * 5))  # no distortion: nothing to do per frame
    assert ingest.on_pair(image(4.0), pose(4.0, 3.0)) == "keyframe" and queued[-1].transform is None
    bad = _camera_info()
    bad.distortion_model = "kannala_brandt"
    rectifier.on_camera_info(bad)
    assert ingest.on_pair(image(5.0), pose(5.0, 4.0)).startswith(
        "rejected: camera_info unusable for rectify=auto: distortion_model 'kannala_brandt'")
