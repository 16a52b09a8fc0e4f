"""The recorder node as its installed executable: keyframes through the shared sync + gate into a
rosbag2 MCAP bag (content and stamps of every topic), operator descriptions, SIGINT closes the bag,
SIGKILL loses at most the last second, unwritable and full disks are reported and survived."""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from spatial_ttt_ros.data import bags, msgs
from spatial_ttt_ros.data.annotate import annotate_bag
from spatial_ttt_ros.data.bag_reader import BagReader
from spatial_ttt_ros.data.recording import Recording
from spatial_ttt_ros.data.recover import recover_bag
from spatial_ttt_ros.ros import recorder_params
from spatial_ttt_ros.ros.launch_inspect import find_executable, find_package_share
from spatial_ttt_ros.ros.recorder_node import DEFAULTS, NODE_NAME, RecorderSettings

REPO = Path(__file__).resolve().parents[2]
K = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]


def start_recorder(processes: list, tmp_path: Path, **params: object) -> subprocess.Popen:
    """The installed recorder_node with config/recorder.yaml and `params` on top; output to a log file."""
    args = [str(find_executable("spatial_ttt_ros", "recorder_node")), "--ros-args",
            "--params-file", str(find_package_share("spatial_ttt_ros") / "config" / "recorder.yaml")]
    for name, value in params.items():
        value = str(value).lower() if isinstance(value, bool) else value
        args += ["-p", f"{name}:={value}"]
    log = open(tmp_path / "recorder.log", "w")  # noqa: SIM115 (closed with the process)
    # SIGINT at its default, as from a terminal, even when the test run itself was started with it
    # ignored (a background job): the recorder's SIGINT path is what sigint() tests
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log.close()
    processes.append(proc)
    return proc


def output(tmp_path: Path) -> str:
    return (tmp_path / "recorder.log").read_text()


class Diagnostics:
    """The recorder's latest /diagnostics status, as seen by the test node."""

    def __init__(self, node: object) -> None:
        self.values: dict[str, str] = {}
        self.level: int | None = None
        self.message = ""
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 50)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(NODE_NAME):
                self.values = {kv.key: kv.value for kv in status.values}
                self.level, self.message = status.level, status.message

    def __getitem__(self, key: str) -> int:
        return int(self.values.get(key, -1))


class Camera:
    """Publishes synced image + pose + camera info (same stamp) and waits until the recorder synced them."""

    def __init__(self, node: object, helpers: object, spin: object, diag: Diagnostics, *, transport: str = "raw",
                 pose_kind: str = "pose_stamped") -> None:
        self.node, self.helpers, self.spin, self.diag = node, helpers, spin, diag
        self.transport, self.pose_kind = transport, pose_kind
        raw = transport == "raw"
        self.image_pub = node.create_publisher(Image if raw else CompressedImage,
                                               "/image" if raw else "/image/compressed", 10)
        self.pose_pub = node.create_publisher(PoseStamped if pose_kind == "pose_stamped" else Odometry, "/pose", 10)
        self.info_pub = node.create_publisher(CameraInfo, "/camera_info", 10)
        self.notes_pub = node.create_publisher(String, "/descriptions", 10)
        self.resends = 0
        pubs = (self.image_pub, self.pose_pub, self.info_pub, self.notes_pub)
        assert helpers.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 30.0), \
            "recorder did not subscribe"
        assert spin(node, lambda: diag.level is not None, 20.0), "no recorder diagnostics"

    def messages(self, stamp_s: float, x: float) -> tuple[object, object, object]:
        image = self.helpers.make_image(stamp_s)
        if self.transport == "compressed":
            pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(48, 64, 3)
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
            assert ok
            image = CompressedImage(header=image.header, format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())
        pose = self.helpers.pose_msg(stamp_s, (x, 0.0, 1.0), 0.0, self.pose_kind)
        info = CameraInfo(width=64, height=48, k=K, distortion_model="plumb_bob")
        self.helpers.set_stamp(info, stamp_s)
        return image, pose, info

    def publish(self, stamp_s: float, x: float) -> tuple[object, object, object]:
        image, pose, info = self.messages(stamp_s, x)
        before = self.diag["synced"]
        for attempt in range(3):  # best-effort inputs: a lost message is sent again (same stamp, same set)
            self.resends += attempt > 0  # (the first may only have been reported late: then a duplicate)
            self.pose_pub.publish(pose)
            self.info_pub.publish(info)
            self.image_pub.publish(image)
            if self.spin(self.node, lambda: self.diag["synced"] > before, 3.0):
                return image, pose, info
        raise AssertionError(f"frame at {stamp_s} s never synced: {self.diag.values}")


def set_description(node: object, helpers: object, value: object) -> object:
    pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str) else \
        ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    request = SetParameters.Request(parameters=[Parameter(name="description", value=pv)])
    return helpers.call(node, SetParameters, f"/{NODE_NAME}/set_parameters", request, 20.0).results[0]


def sigint(proc: subprocess.Popen, tmp_path: Path) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0, output(tmp_path)
    assert "Traceback" not in output(tmp_path), output(tmp_path)


def stamp_ns(msg: object) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def now_s() -> float:
    """Camera stamps on the recorder's clock (its notes carry that clock's time), whole seconds."""
    return float(int(time.time()))


# Stamps [s] after the start, x [m]. Gate: 2 Hz, 0.1 m, 10 deg (the defaults).
FRAMES = ([(100.0 + 0.6 * i, 0.5 * i) for i in range(6)]  # moving: all keyframes
          + [(103.0 + 0.6 * j, 2.5 + 0.002 * j) for j in (1, 2, 3)]  # parked: gated (still)
          + [(105.5 + 0.1 * j, 3.0 + 0.5 * j) for j in (1, 2, 3, 4, 5)]  # too fast: the first only
          + [(106.2, 7.0)])  # 0.6 s after the last keyframe
KEYFRAMES = [0, 1, 2, 3, 4, 5, 9, 14]


@pytest.mark.parametrize(("transport", "pose_kind"), [("raw", "pose_stamped"), ("compressed", "odometry")])
def test_round_trip_of_every_topic_and_descriptions(ros_node, spin, helpers, processes, tmp_path, transport,
                                                    pose_kind):
    proc = start_recorder(processes, tmp_path, output_dir=tmp_path, run_name="run", image_transport=transport,
                          pose_type=pose_kind, status_rate_hz=20.0)
    diag = Diagnostics(ros_node)
    cam = Camera(ros_node, helpers, spin, diag, transport=transport, pose_kind=pose_kind)
    sent, t0 = [], now_s() - 110.0  # FRAMES' stamps end ~4 s before now (never ahead of the recorder's clock)
    for stamp_s, x in FRAMES[:6]:
        sent.append(cam.publish(t0 + stamp_s, x))
    assert spin(ros_node, lambda: diag["keyframes_written"] == 6, 10.0), diag.values
    t_before = ros_node.get_clock().now().nanoseconds
    cam.notes_pub.publish(String(data="two chairs by the window, a lamp behind the sofa"))
    assert spin(ros_node, lambda: diag["notes_written"] == 1, 10.0), diag.values
    t_after = ros_node.get_clock().now().nanoseconds
    for stamp_s, x in FRAMES[6:]:
        sent.append(cam.publish(t0 + stamp_s, x))
    assert set_description(ros_node, helpers, "the kitchen door is open").successful  # rclpy drops a success reason
    refused = set_description(ros_node, helpers, "   ")
    assert not refused.successful and "empty description" in refused.reason
    assert not set_description(ros_node, helpers, 3.0).successful
    assert spin(ros_node, lambda: diag["keyframes_written"] == len(KEYFRAMES) and diag["notes_written"] == 2, 10.0)
    # A re-sent frame whose first copy was synced after all comes back as a duplicate stamp, which
    # the keyframe gate drops (rate limit): it adds to synced and gated alike, never to keyframes.
    duplicates = diag["synced"] - 15
    assert 0 <= duplicates <= cam.resends, (diag.values, cam.resends)
    assert (diag["keyframes"], diag["gated"], diag["rejected"]) == (8, 7 + duplicates, 0), diag.values
    assert diag.level == DiagnosticStatus.OK and diag.values["bag"] == str(tmp_path / "run" / "bag")
    sigint(proc, tmp_path)

    bag = tmp_path / "run" / "bag"
    assert (bag / "metadata.yaml").is_file()
    image_topic = msgs.TOPIC_IMAGE if transport == "raw" else msgs.TOPIC_IMAGE_COMPRESSED
    with BagReader(bag) as reader:
        assert reader.topics == {image_topic: msgs.TOPIC_TYPES[image_topic], msgs.TOPIC_POSE: msgs.POSE_STAMPED,
                                 msgs.TOPIC_CAMERA_INFO: msgs.CAMERA_INFO, msgs.TOPIC_DESCRIPTIONS: msgs.STRING,
                                 msgs.TOPIC_ANNOTATIONS: msgs.STRING}
        stored = {topic: [(raw.stamp_ns, raw.data) for raw in reader.raw([topic])] for topic in reader.topics}
    assert stored[msgs.TOPIC_ANNOTATIONS] == []
    expected = [sent[i] for i in KEYFRAMES]
    images = [(t, deserialize_message(d, Image if transport == "raw" else CompressedImage))
              for t, d in stored[image_topic]]
    poses = [(t, deserialize_message(d, PoseStamped)) for t, d in stored[msgs.TOPIC_POSE]]
    infos = [(t, deserialize_message(d, CameraInfo)) for t, d in stored[msgs.TOPIC_CAMERA_INFO]]
    assert len(images) == len(poses) == len(infos) == len(KEYFRAMES)
    for (image, pose, _info), (ti, im), (tp, po), (tc, ci), i in zip(expected, images, poses, infos, KEYFRAMES):
        assert ti == tp == tc == stamp_ns(image) == stamp_ns(im) == round((t0 + FRAMES[i][0]) * 1e9)
        assert bytes(im.data) == bytes(image.data)  # as received, compressed or not
        if transport == "compressed":
            assert im.format == image.format
        else:
            assert (im.width, im.height, im.encoding, im.step) == (64, 48, "rgb8", 64 * 3)
        src = pose.pose if pose_kind == "pose_stamped" else pose.pose.pose  # odometry -> its pose
        assert po.pose == src and po.header.frame_id == "map" and stamp_ns(po) == stamp_ns(image)
        assert list(ci.k) == K and (ci.width, ci.height) == (64, 48) and stamp_ns(ci) == stamp_ns(image)
    notes = [(t, json.loads(deserialize_message(d, String).data)) for t, d in stored[msgs.TOPIC_DESCRIPTIONS]]
    (t1, first), (t2, second) = notes
    assert first["text"] == "two chairs by the window, a lamp behind the sofa" and first["source"] == "topic"
    assert t_before <= t1 == first["stamp_ns"] <= t_after and first["keyframes_before"] == 6
    assert second["text"] == "the kitchen door is open" and second["source"] == "parameter"
    assert t2 == second["stamp_ns"] > t1 and second["keyframes_before"] == len(KEYFRAMES)

    # What annotate needs is there: the recording is a training bag as it stands.
    scene = {"format": "spatial_ttt_scene/1", "frame_id": "map", "objects": [],
             "rooms": [{"name": "lab", "polygon": [[-1, -5], [10, -5], [10, 5], [-1, 5]]}]}
    (tmp_path / "run" / "scene.yaml").write_text(yaml.safe_dump(scene))
    result = annotate_bag(bag, tmp_path / "run" / "scene.yaml")
    assert (result.episodes, result.frames, result.skipped_frames) == (1, len(KEYFRAMES), 0)
    assert (tmp_path / "run" / "annotations.jsonl").is_file()


def test_sigkill_loses_at_most_the_last_second(ros_node, spin, helpers, processes, tmp_path):
    # Every synced frame is a keyframe; flushes every second (the default).
    proc = start_recorder(processes, tmp_path, output_dir=tmp_path, run_name="run", status_rate_hz=20.0,
                          keyframe_max_rate_hz=0.0, keyframe_min_translation_m=0.0, keyframe_min_rotation_deg=0.0)
    diag = Diagnostics(ros_node)
    cam = Camera(ros_node, helpers, spin, diag)
    sent, written_at = [], []  # written_at[i]: when the recorder reported frame i written (after the write)
    t0 = now_s()
    start = time.monotonic()

    def old_enough() -> int:  # frames written more than one flush period (+0.3 s margin) ago
        return sum(t < time.monotonic() - 1.3 for t in written_at)

    # At least 3 s of recording and 5 frames old enough to have been flushed (a loaded machine can
    # write more slowly than one frame per 0.1 s; the property is about flushed frames, not rate).
    while time.monotonic() - start < 3.0 or old_enough() < 5:
        assert time.monotonic() - start < 60.0, written_at
        i = len(sent)
        sent.append(cam.publish(t0 + 0.1 * i, 0.1 * i))
        assert spin(ros_node, lambda i=i: diag["keyframes_written"] > i, 10.0), diag.values
        written_at.append(time.monotonic())
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    must_survive = sum(t < killed_at - 1.3 for t in written_at)  # 1 s flush period + 0.3 s of margin
    assert must_survive >= 5, written_at

    bag = tmp_path / "run" / "bag"
    assert not (bag / "metadata.yaml").exists()
    with pytest.raises(ValueError, match="bag recover"):
        BagReader(bag)
    cli = shutil.which("spatial-ttt")
    assert cli is not None, "spatial-ttt is not on PATH (source env.sh)"
    recovered = subprocess.run([cli, "bag", "recover", str(bag)], capture_output=True, text=True, timeout=60)
    assert recovered.returncode == 0 and "recovered" in recovered.stdout, recovered.stdout + recovered.stderr
    with BagReader(bag) as reader:
        images = [deserialize_message(r.data, Image) for r in reader.raw([msgs.TOPIC_IMAGE])]
        poses = [deserialize_message(r.data, PoseStamped) for r in reader.raw([msgs.TOPIC_POSE])]
        infos = [deserialize_message(r.data, CameraInfo) for r in reader.raw([msgs.TOPIC_CAMERA_INFO])]
    assert must_survive <= len(images) <= len(sent)
    # What survived is exactly the first frames, intact (the last keyframe may have lost its tail).
    for (image, pose, _info), im, po, ci in zip(sent, images, poses, infos):
        assert stamp_ns(im) == stamp_ns(image) and bytes(im.data) == bytes(image.data)
        assert po.pose == pose.pose and list(ci.k) == K
    assert len(images) - 1 <= len(infos) <= len(poses) <= len(images)
    assert len(infos) >= must_survive


def test_unwritable_output_is_reported_and_recording_starts_when_it_can(ros_node, spin, helpers, processes,
                                                                         tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output directory's parent should be")
    proc = start_recorder(processes, tmp_path, output_dir=blocker / "rec", run_name="run", status_rate_hz=20.0,
                          retry_period_s=0.3)
    diag = Diagnostics(ros_node)
    cam = Camera(ros_node, helpers, spin, diag)
    assert diag.level == DiagnosticStatus.ERROR and "cannot start bag" in diag.message
    assert str(blocker) in diag.message and "Not a directory" in diag.message
    t0 = now_s()
    cam.publish(t0, 0.0)
    assert spin(ros_node, lambda: diag["keyframes_lost"] == 1, 10.0), diag.values
    cam.notes_pub.publish(String(data="said while the disk was away"))
    assert spin(ros_node, lambda: diag["notes_pending"] == 1, 10.0), diag.values
    assert proc.poll() is None  # still running

    blocker.unlink()
    k = 1
    deadline = time.monotonic() + 20.0
    while diag["keyframes_written"] < 1 and time.monotonic() < deadline:  # retried on the next keyframes
        cam.publish(t0 + k, float(k))
        k += 1
    assert spin(ros_node, lambda: diag["keyframes_written"] >= 1 and diag["notes_written"] == 1, 10.0), diag.values
    assert spin(ros_node, lambda: diag.level == DiagnosticStatus.WARN, 5.0)  # recording, the error still shown
    written = diag["keyframes_written"]
    sigint(proc, tmp_path)
    with BagReader(blocker / "rec" / "run" / "bag") as reader:
        assert reader.counts[msgs.TOPIC_IMAGE] == written
        assert reader.counts[msgs.TOPIC_DESCRIPTIONS] == 1
    assert "cannot start bag" in output(tmp_path)


class Disk:
    """Bag files that fail with ENOSPC past `limits[name]` bytes, or all of them while `full`."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits, self.full = limits, False

    def open(self, path: Path) -> object:
        disk, file = self, open(path, "xb")  # noqa: SIM115 (closed by the bag writer)

        class File:
            def write(self, data: bytes) -> int:
                if disk.full or file.tell() + len(data) > disk.limits.get(path.name, 1 << 40):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return file.write(data)

            def __getattr__(self, name: str) -> object:
                return getattr(file, name)

        return File()


def keyframe(i: int) -> list[tuple[str, int, bytes]]:
    s = 10**12 + i * 10**8
    image = msgs.image_msg(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8), s)
    return [(msgs.TOPIC_IMAGE, s, image), (msgs.TOPIC_POSE, s, msgs.pose_msg((i, 0, 0), (0, 0, 0, 1), s))]


def test_disk_full_goes_on_in_the_next_file_then_in_a_new_run(tmp_path, monkeypatch, helpers):
    disk = Disk({"bag_0.mcap": 40_000})
    monkeypatch.setattr(bags, "_open_for_write", disk.open)
    settings = RecorderSettings(output_dir=str(tmp_path), run_name="run", flush_period_s=0.05, retry_period_s=0.05)
    rec = Recording(settings.recording_options(), logging.getLogger("test_recorder"))
    frames = itertools.count()
    # bag_0 fills up after a few frames; the full disk shows when a chunk is flushed (every 0.05 s).
    assert helpers.wait_for(lambda: rec.write_keyframe(keyframe(next(frames))) and bool(rec.status().failed_files),
                            10.0)
    status = rec.status()
    assert status.failed_files == (str(tmp_path / "run" / "bag" / "bag_0.mcap"),) and not status.broken
    assert "bag_0.mcap failed" in status.error
    for _ in range(5):  # ... and recording goes on in bag_1
        assert rec.write_keyframe(keyframe(next(frames)))

    # Now every file is full: the bag is lost as a whole, keyframes are counted as lost.
    disk.full = True
    assert helpers.wait_for(lambda: not rec.write_keyframe(keyframe(next(frames))) and rec.status().broken, 10.0)
    status = rec.status()
    assert status.keyframes_lost >= 1 and "No space left" in status.error
    # Space again: the next keyframe after the retry period opens a new run.
    disk.full = False
    assert helpers.wait_for(lambda: rec.write_keyframe(keyframe(next(frames))), 10.0)
    status = rec.status()
    assert not status.broken and Path(status.bag).parent.name.startswith("run_")
    rec.close()
    written = rec.status().keyframes_written
    recovered = 0
    for run in sorted(tmp_path.iterdir()):
        recover_bag(run / "bag")
        with BagReader(run / "bag") as reader:
            recovered += reader.counts.get(msgs.TOPIC_IMAGE, 0)
    # Only what sat in the chunks that failed to flush is lost: a few frames each.
    assert written - 12 <= recovered <= written, (written, recovered)


def test_parameters_are_declared_once_and_checked(tmp_path):
    text = (REPO / "config" / "recorder.yaml").read_text()
    assert text == recorder_params.config_yaml(), "config/recorder.yaml is stale: python -m spatial_ttt_ros.ros.params"
    params = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert params == DEFAULTS
    assert RecorderSettings.from_values(params) == RecorderSettings()
    with pytest.raises(ValueError, match="pose_type must be one of"):
        RecorderSettings(pose_type="imu")
    with pytest.raises(ValueError, match="unknown parameters"):
        RecorderSettings.from_values({"flush_every": 1.0})
    with pytest.raises(ValueError, match="flush_period_s must be"):
        RecorderSettings(flush_period_s=0.0)
    exe = find_executable("spatial_ttt_ros", "recorder_node")
    proc = subprocess.run([str(exe), "--ros-args", "-p", "image_transport:=theora", "-p", f"output_dir:={tmp_path}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "image_transport must be one of" in proc.stderr
    assert list(tmp_path.iterdir()) == []
