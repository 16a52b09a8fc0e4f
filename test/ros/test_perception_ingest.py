"""Ingest through real topics into the real (tiny) engine: keyframe gate, bad images, the
compressed + odometry inputs, drops, a dead worker, and what memory_status / diagnostics say."""

from __future__ import annotations

import math

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image

from spatial_ttt_ros.msg import MemoryStatus

MOVING = {"keyframe_max_rate_hz": 2.0, "keyframe_min_translation_m": 0.2, "keyframe_min_rotation_deg": 15.0}


def test_moving_robot_fills_memory_parked_robot_does_not(ros_node, perception, helpers):
    node = perception(MOVING)
    rig = helpers.Rig(ros_node, node)
    # Moving: 0.5 m per second of stamps -> every frame is a keyframe.
    for i in range(6):
        rig.publish(10.0 + i, position=(0.5 * i, 0.0, 0.0))
    view = rig.wait_idle()
    assert (view.ingest.keyframes, view.ingest.gated) == (6, 0)
    assert view.worker.frames_in_memory == 6
    # Parked for 6 s: same pose (a few mm of jitter) -> no new keyframe.
    for i in range(6):
        rig.publish(16.0 + i, position=(2.5 + 0.002 * i, 0.0, 0.0))
    view = rig.wait_idle()
    assert view.ingest.keyframes == 6 and view.ingest.gated == 6
    # Turning on the spot counts as motion.
    rig.publish(22.0, position=(2.51, 0.0, 0.0), yaw_deg=30.0)
    # Moving but faster than max_rate_hz (stamps 0.1 s apart): every 5th frame passes.
    for i in range(1, 11):
        rig.publish(22.0 + 0.1 * i, position=(2.51 + 0.5 * i, 0.0, 0.0), yaw_deg=30.0)
    view = rig.wait_idle()
    assert view.ingest.keyframes == 6 + 1 + 2
    assert view.ingest.synced == view.ingest.received == 23
    assert view.worker.frames_in_memory == 9 and view.rejected == 0 and view.dropped == 0


def test_bad_images_are_rejected_and_ingest_goes_on(ros_node, perception, helpers):
    node = perception({**MOVING, "keyframe_max_rate_hz": 0.0})
    rig = helpers.Rig(ros_node, node)
    rig.publish(1.0, position=(0.0, 0.0, 0.0))
    short_step = helpers.make_image(2.0)
    short_step.step = 64 * 3 - 1
    unknown = helpers.make_image(3.0)
    unknown.encoding = "16UC1"
    truncated = helpers.make_image(4.0)
    truncated.data = truncated.data[: len(truncated.data) // 2]
    for i, bad in enumerate((short_step, unknown, truncated)):
        rig.publish(2.0 + i, position=(1.0 + i, 0.0, 0.0), image=bad)
    rig.publish(5.0, position=(5.0, 0.0, 0.0))
    view = rig.wait_idle()
    assert view.ingest.rejected == 3 and view.ingest.keyframes == 2
    assert view.worker.frames_in_memory == 2
    assert "image data is" in view.last_error  # the newest reason: the truncated one
    # Padded rows (step > width * 3) are honoured, not rejected.
    padded = helpers.make_image(6.0)
    pixels = np.frombuffer(bytes(padded.data), np.uint8).reshape(48, 64 * 3)
    padded.data = np.concatenate([pixels, np.zeros((48, 8), np.uint8)], axis=1).tobytes()
    padded.step = 64 * 3 + 8
    rig.publish(6.0, position=(6.0, 0.0, 0.0), image=padded)
    assert rig.wait_idle().worker.frames_in_memory == 3


def _jpeg(stamp_s: float, helpers: object) -> CompressedImage:
    import cv2

    raw = helpers.make_image(stamp_s)
    rgb = np.frombuffer(bytes(raw.data), np.uint8).reshape(48, 64, 3)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=data.tobytes())
    helpers.set_stamp(msg, stamp_s)
    return msg


def test_compressed_images_with_odometry_on_remapped_topics(ros_node, perception, helpers):
    node = perception({**MOVING, "image_transport": "compressed", "pose_type": "odometry"},
                      ros_args=("-r", "image:=/cam/color", "-r", "pose:=/odom"))
    rig = helpers.Rig(ros_node, node, image_topic="/cam/color/compressed", pose_topic="/odom",
                      image_type=CompressedImage, pose_kind="odometry")
    rig.publish(1.0, position=(0.0, 0.0, 0.0), image=_jpeg(1.0, helpers))
    cut = _jpeg(2.0, helpers)
    cut.data = cut.data[: len(cut.data) * 2 // 3]
    rig.publish(2.0, position=(1.0, 0.0, 0.0), image=cut)
    rig.publish(3.0, position=(2.0, 0.0, 0.0), image=_jpeg(3.0, helpers))
    view = rig.wait_idle()
    assert (view.ingest.keyframes, view.ingest.rejected) == (2, 1)
    assert "truncated" in view.last_error
    assert view.worker.frames_in_memory == 2


def test_status_topics_report_counters_drops_and_a_restarted_worker(ros_node, perception, helpers):
    import threading

    node = perception({**MOVING, "keyframe_max_rate_hz": 0.0, "ingest_queue_size": 1, "status_rate_hz": 20.0})
    statuses: list[MemoryStatus] = []
    diags: list[DiagnosticStatus] = []
    ros_node.create_subscription(MemoryStatus, "/memory_status", statuses.append, 50)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), 50)
    rig = helpers.Rig(ros_node, node, image_type=Image)
    rig.publish(1.0, position=(0.0, 0.0, 0.0))
    rig.wait_idle()

    # Hold the worker on a job so the 1-frame queue overflows: 3 keyframes -> 2 dropped.
    release = threading.Event()
    node._worker.submit(lambda engine: release.wait(30))
    for i in range(3):
        rig.publish(2.0 + i, position=(1.0 + i, 0.0, 0.0))
    assert helpers.spin(ros_node, lambda: any(d.level == DiagnosticStatus.WARN and "dropping" in d.message
                                              for d in diags), 20)
    release.set()
    view = rig.wait_idle()
    assert view.dropped == 2 and view.worker.frames_in_memory == 2

    # The engine fails hard once: the worker dies, is restarted, says so, and ingests again.
    engine = node._engine
    real_push = engine.push_frame

    def failing_push(*args: object, **kwargs: object) -> None:
        engine.push_frame = real_push
        raise RuntimeError("simulated device failure")

    engine.push_frame = failing_push
    rig.publish(10.0, position=(10.0, 0.0, 0.0))
    assert helpers.spin(ros_node, lambda: any(d.level == DiagnosticStatus.ERROR and "restarted" in d.message
                                              and "simulated device failure" in d.message for d in diags), 20)
    rig.publish(11.0, position=(11.0, 0.0, 0.0))
    view = rig.wait_idle()
    assert view.worker.alive and view.worker.restarts == 1 and view.worker.frames_in_memory == 3

    n = len(statuses)
    assert helpers.spin(ros_node, lambda: len(statuses) > n + 1, 10)
    last = statuses[-1]
    assert (last.frames_received, last.frames_synced, last.keyframes) == (6, 6, 6)
    assert (last.frames_dropped, last.frames_in_memory, last.queue_depth) == (2, 3, 0)
    assert last.device == "cpu" and last.model_id == "tiny"
    assert last.tokens > 0 and last.memory_bytes_total == sum(last.memory_bytes) > 0
    assert len(last.memory_parts) == len(last.memory_bytes)
    assert math.isclose(last.memory_stamp.sec + last.memory_stamp.nanosec * 1e-9, 11.0)
    assert "simulated device failure" in last.last_error


def _yuyv(stamp_s: float, helpers: object) -> Image:
    """A USB webcam's frame (v4l2_camera / usb_cam default): YUYV 4:2:2, rows padded to 4 bytes more."""
    import cv2

    rgb = np.frombuffer(bytes(helpers.make_image(stamp_s).data), np.uint8).reshape(48, 64, 3)
    packed = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    rows = np.concatenate([packed.reshape(48, 128), np.zeros((48, 4), np.uint8)], axis=1)
    msg = Image(height=48, width=64, encoding="yuv422_yuy2", step=132, data=rows.tobytes())
    helpers.set_stamp(msg, stamp_s)
    return msg


def test_a_yuyv_camera_fills_memory_and_status_names_each_encoding(ros_node, perception, helpers):
    node = perception({**MOVING, "keyframe_max_rate_hz": 0.0, "status_rate_hz": 20.0})
    statuses: list[MemoryStatus] = []
    ros_node.create_subscription(MemoryStatus, "/memory_status", statuses.append, 50)
    rig = helpers.Rig(ros_node, node)
    for i in range(4):
        rig.publish(1.0 + i, position=(float(i), 0.0, 0.0), image=_yuyv(1.0 + i, helpers))
    depth = helpers.make_image(5.0)
    depth.encoding, depth.step = "32FC1", 64 * 4
    depth.data = bytes(48 * 64 * 4)
    rig.publish(5.0, position=(5.0, 0.0, 0.0), image=depth)
    view = rig.wait_idle()
    assert view.worker.frames_in_memory == 4 and view.ingest.keyframes == 4 and view.ingest.rejected == 1
    assert helpers.spin(ros_node, lambda: bool(statuses) and "32FC1" in statuses[-1].image_encodings
                        and statuses[-1].frames_in_memory == 4, 10)
    last = statuses[-1]
    table = dict(zip(last.image_encodings, zip(last.image_encoding_frames, last.image_encoding_rejected,
                                               last.image_encoding_status)))
    assert table["yuv422_yuy2"][:2] == (4, 0) and table["yuv422_yuy2"][2] in ("ok", "ok (cv_bridge)")
    assert table["32FC1"] == (1, 1, "unsupported (depth, not colour)")
    assert last.frames_in_memory == 4 and last.rectification == "off"


def test_rectify_auto_undistorts_frames_on_the_worker_from_camera_info(ros_node, perception, helpers):
    from sensor_msgs.msg import CameraInfo

    from spatial_ttt_ros.data.rectify import calibration_from_camera_info, rectify_image

    node = perception({**MOVING, "keyframe_max_rate_hz": 0.0, "rectify": "auto"})
    rig = helpers.Rig(ros_node, node)
    rig.publish(1.0, position=(0.0, 0.0, 0.0))  # before any CameraInfo: refused, memory stays empty
    view = rig.wait_idle()
    assert view.ingest.rejected == 1 and "no CameraInfo received yet" in view.ingest.last_reject
    assert view.rectification.startswith("auto: waiting for camera_info")

    info = CameraInfo(width=64, height=48, distortion_model="plumb_bob", d=[-0.3, 0.1, 0.0, 0.0, 0.0],
                      k=[50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0], r=[0.0] * 9, p=[0.0] * 12)
    info_pub = ros_node.create_publisher(CameraInfo, "/camera_info", 10)
    assert helpers.wait_for(lambda: info_pub.get_subscription_count() > 0, 20)
    engine, seen = node._engine, []
    real_push = engine.push_frame
    engine.push_frame = lambda image, *a, **k: (seen.append(image.copy()), real_push(image, *a, **k))[1]

    def has_info() -> bool:
        info_pub.publish(info)  # best-effort input: sent until it arrived
        return node.status_view().rectification.startswith("pinhole 64x48")
    assert helpers.spin(ros_node, has_info, 20)
    sent = [helpers.make_image(2.0 + i) for i in range(3)]
    for i, msg in enumerate(sent):
        rig.publish(2.0 + i, position=(1.0 + i, 0.0, 0.0), image=msg)
    view = rig.wait_idle()
    assert view.worker.frames_in_memory == 3 and node._rectifier.cache.computed == 1  # maps once
    cal = calibration_from_camera_info(info, "auto")
    for msg, image in zip(sent, seen):
        raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3)
        np.testing.assert_array_equal(image, rectify_image(raw, cal))  # the memory got the rectified frame
        assert not np.array_equal(image, raw)
