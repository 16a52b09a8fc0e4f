"""The recorder node: synced keyframes of a robot run -> a crash-safe rosbag2 MCAP training bag.

Frames take the perception node's path up to the keyframe decision, through the same shared code:
camera (Image, or CompressedImage on `<image>/compressed`) + pose (PoseStamped or Odometry on
`pose`, or none) + optional CameraInfo on `camera_info` -> approximate-time sync (message_filters
where installed, else ros/sync.py) -> ros/ingest.py FrameIngest (stamp and pose checks, keyframe
gate, image must decode) -> the messages as received, serialized by rclpy, into data/bags.py's
BagWriter (chunk CRCs, flush + fsync every `flush_period_s`, episodes split by duration/size).

Bag topics (data/msgs.py): the image on /camera/image_raw or /camera/image_raw/compressed,
/camera/pose (geometry_msgs/PoseStamped; an Odometry input is stored as its header + pose),
/camera/camera_info, /spatial_ttt/descriptions (operator notes) and /spatial_ttt/annotations
(relayed from the `annotations` topic; `spatial-ttt annotate` adds more). Each message's bag time
is its header stamp; notes carry the node clock's time of arrival.

A run is `<output_dir>/<run>/bag/`, the layout `spatial-ttt synth` writes: put the scene file at
`<run>/scene.yaml` and `spatial-ttt annotate <run>/bag` writes `<run>/annotations.jsonl`.

Operator descriptions: std_msgs/String on `descriptions`, or `ros2 param set
/spatial_ttt_recorder description "..."` (the parameter service answers successful + reason; the
package has no srv for it). Stored as JSON {"type": "operator_description", "text", "stamp_ns",
"source", "keyframes_before"}.

Errors: a bag that cannot be created (unwritable output_dir) or a file that fails (disk full) is
logged and reported on /diagnostics with the path and errno. BagWriter continues in the next file
of the bag where it can; when the bag is lost as a whole, a new run `<run>_<k>` is tried every
`retry_period_s` while keyframes arrive (keyframes in between are counted as lost). SIGINT/SIGTERM
close the bag (footer + metadata.yaml); after a SIGKILL run `spatial-ttt bag recover <run>/bag`.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import sys
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header, String

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.recording import Recording, description_json
from spatial_ttt_ros.ros import node_params
from spatial_ttt_ros.ros.conversions import make_decoder, stamp_to_ns
from spatial_ttt_ros.ros.ingest import FrameIngest, StampPolicy
from spatial_ttt_ros.ros.inputs import image_input, synced_inputs
from spatial_ttt_ros.ros.keyframe_gate import KeyframeGate
from spatial_ttt_ros.ros.launch_inspect import node_cli
from spatial_ttt_ros.ros.lost_responses import LostResponses
from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.params import DEFAULTS as PERCEPTION_DEFAULTS
from spatial_ttt_ros.ros.recorder_params import (  # noqa: F401 (re-exported for callers)
    DEFAULTS,
    DESCRIPTION_PARAM,
    NODE_NAME,
    PARAMETERS,
    RecorderSettings,
)
from spatial_ttt_ros.ros.spinning import end_signal_handling, spin_resilient

POSE_MSG_TYPES = {"pose_stamped": PoseStamped, "odometry": Odometry}


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        self.responses_lost = LostResponses()
        super().__init__(NODE_NAME, **kwargs)
        self.responses_lost.logger = self.get_logger()
        self.responses_lost.watch_node(self)  # the parameter services (`description`)
        self.callback_errors = self._reported_callback_errors = 0
        self._callback_error = ""
        self._last_callback_exc: BaseException | None = None
        refused = node_params.declare_table(self, PARAMETERS)
        if refused:
            raise ValueError("; ".join(refused))
        self.declare_parameter(DESCRIPTION_PARAM, "", ParameterDescriptor(
            description="set at run time to store an operator description (ros2 param set)"))
        self.settings = RecorderSettings.from_values(node_params.table_values(self, PARAMETERS))
        s = self.settings
        self.recording = Recording(s.recording_options(), self.get_logger())
        decoder = make_decoder(s.image_transport)
        # The gate's verdict decides; the pushed frame itself is not needed here (images are stored raw,
        # as received: a bag is rectified, if at all, when it is baked for training).
        stamps = StampPolicy(max_ahead_s=PERCEPTION_DEFAULTS["max_stamp_ahead_s"],
                             rewind_s=PERCEPTION_DEFAULTS["stamp_rewind_s"],
                             now_s=lambda: self.get_clock().now().nanoseconds * 1e-9)
        self.ingest = FrameIngest(decoder, KeyframeGate(s.gate_config()), lambda frame: True,
                                  describe=decoder.describe, stamps=stamps)
        self._ingest_group = MutuallyExclusiveCallbackGroup()
        self._notes_group = MutuallyExclusiveCallbackGroup()
        self._sync: Any = None
        self._subscriptions_active = self._create_inputs()
        self.create_subscription(String, "descriptions", self._on_description, 10, callback_group=self._notes_group)
        self.create_subscription(String, "annotations", self._on_annotation, 10, callback_group=self._notes_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / s.status_rate_hz, self._publish_status, callback_group=self._notes_group)

    def _create_inputs(self) -> list[Any]:
        s = self.settings
        inputs = [image_input(self, s.image_transport)]
        if s.pose_type != "none":
            inputs.append((POSE_MSG_TYPES[s.pose_type], "pose"))
        if s.use_camera_info:
            inputs.append((CameraInfo, "camera_info"))
        subs, self._sync = synced_inputs(self, inputs, s.sync_queue_size, s.sync_slop_s, on_set=self._on_synced,
                                         on_first=self.ingest.on_image, on_reject=self._on_rejected,
                                         group=self._ingest_group)
        return subs

    def _on_rejected(self, reason: str) -> None:
        self.ingest.reject(reason)
        self.get_logger().warning(f"message rejected: {reason}", throttle_duration_sec=5.0)

    def _on_synced(self, image: Any, *rest: Any) -> None:
        """One synced set (image[, pose][, camera info]): through the gate, then into the bag."""
        s = self.settings
        pose = rest[0] if s.pose_type != "none" else None
        info = rest[-1] if s.use_camera_info else None
        verdict = self.ingest.on_pair(image, pose)
        if verdict != "keyframe":
            if verdict.startswith("rejected"):
                self.get_logger().warning(f"frame {verdict}", throttle_duration_sec=5.0)
            return
        stamp = stamp_to_ns(image.header.stamp)
        messages = [(s.image_topic, stamp, serialize_message(image))]
        if pose is not None:
            if isinstance(pose, Odometry):
                pose = PoseStamped(header=pose.header, pose=pose.pose.pose)
            messages.append((msgs.TOPIC_POSE, stamp_to_ns(pose.header.stamp), serialize_message(pose)))
        if info is not None:
            messages.append((msgs.TOPIC_CAMERA_INFO, stamp_to_ns(info.header.stamp), serialize_message(info)))
        self.recording.write_keyframe(messages)

    def add_description(self, text: str, source: str) -> tuple[bool, str]:
        """Store an operator description at the node clock's time; (success, message)."""
        text = text.strip()
        if not text:
            return False, "empty description: nothing stored"
        stamp = self.get_clock().now().nanoseconds
        note = description_json(text, stamp, source, self.recording.keyframes_written)
        if self.recording.write_note(msgs.TOPIC_DESCRIPTIONS, stamp, serialize_message(String(data=note))):
            return True, f"description stored at {stamp * 1e-9:.3f} s"
        return True, (f"description kept in memory at {stamp * 1e-9:.3f} s: no writable bag right now "
                      f"({self.recording.status().error})")

    def _on_description(self, msg: String) -> None:
        ok, message = self.add_description(msg.data, "topic")
        if not ok:
            self.get_logger().warning(f"descriptions: {message}")

    def _on_annotation(self, msg: String) -> None:
        self.recording.write_note(msgs.TOPIC_ANNOTATIONS, self.get_clock().now().nanoseconds, serialize_message(msg))

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        # the table's parameters are read-only (their descriptors say so); only the description is set
        for p in params:
            if p.name == DESCRIPTION_PARAM:
                if not isinstance(p.value, str):
                    return SetParametersResult(successful=False, reason="description must be a string")
                ok, message = self.add_description(p.value, "parameter")
                return SetParametersResult(successful=ok, reason=message)
        return SetParametersResult(successful=True)

    def status_values(self) -> dict[str, str]:
        """The recorder's counters as /diagnostics reports them."""
        rec, counts = self.recording.status(), self.ingest.counts()
        values = {k: str(v) for k, v in dataclasses.asdict(counts).items() if k != "encodings"}
        for name, c in sorted(counts.encodings.items()):
            values[f"encoding {name}"] = f"{c.status or 'received'}; {c.frames} received, {c.rejected} rejected"
        values.update({k: str(v) for k, v in dataclasses.asdict(rec).items() if k != "failed_files"})
        values["failed_files"] = ", ".join(rec.failed_files)
        values["responses_lost"] = str(self.responses_lost.count)
        values["callback_errors"] = str(self.callback_errors)
        values["requests_taken"] = str(self.responses_lost.taken)
        return values

    def record_callback_error(self, exc: BaseException) -> None:
        """A callback raised (spin_resilient caught it): counted, reported as ERROR, the node goes on."""
        if exc is not self._last_callback_exc:  # rclpy can raise one callback's exception twice
            self._last_callback_exc = exc
            self.callback_errors += 1
            self._callback_error = clip(f"callback failed: {type(exc).__name__}: {exc}", 300)

    def _publish_status(self) -> None:
        rec, counts = self.recording.status(), self.ingest.counts()
        if self.callback_errors > self._reported_callback_errors:
            self._reported_callback_errors = self.callback_errors
            level, message = DiagnosticStatus.ERROR, f"{self._callback_error} ({self.callback_errors} in all)"
        elif rec.broken:
            level, message = DiagnosticStatus.ERROR, f"not recording: {rec.error}"
        elif rec.error:
            level, message = DiagnosticStatus.WARN, f"recording to {rec.bag}; {rec.error}"
        else:
            level, message = DiagnosticStatus.OK, f"recording to {rec.bag}"
        if counts.last_reject and level == DiagnosticStatus.OK:
            level, message = DiagnosticStatus.WARN, f"{message}; last rejected frame: {counts.last_reject}"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: recording", message=message,
                                  hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in self.status_values().items()])
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diag_pub.publish(DiagnosticArray(header=header, status=[status]))

    def close(self) -> None:
        """Close the bag (metadata.yaml), then destroy the node (its subscriptions with it). The bag
        goes first: nothing after it (DDS teardown in native code) can cost it its metadata. main()
        has shut the executor down before; a callback that still ran would find the bag closed and
        write nothing."""
        if not self.context.ok():
            # After SIGINT the context is gone and the node's logger cannot reach /rosout any more;
            # a logger of another name still prints.
            self.recording.logger = rclpy.logging.get_logger(f"{NODE_NAME}.shutdown")
        self.recording.close()
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    # A crash in native code (rcl, DDS, torch) prints every thread's Python stack to stderr.
    faulthandler.enable()
    rclpy.init(args=args)
    try:
        node = RecorderNode()
    except ValueError as exc:  # bad parameters
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        spin_resilient(executor, node.get_logger(), node.record_callback_error)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        end_signal_handling()  # rclpy's signal thread is done before executor.shutdown() (see there)
        executor.shutdown(timeout_sec=5.0)  # no callback may write once the bag is closed
        node.close()
        rclpy.try_shutdown()
    return 0


def cli_record(argv: list[str]) -> int:
    """`spatial-ttt record [--params-file FILE] [--output-dir DIR] [--ros-args ...]`."""
    parsed = node_cli(argv, "spatial-ttt record", "record keyframes into training bags", "recorder.yaml",
                      lambda p: p.add_argument("--output-dir", default=None, help="overrides the output_dir parameter"))
    if parsed is None:
        return 2
    options, ros_args = parsed
    if options.output_dir is not None:  # after the params file (ros_args[:2]), before the caller's own
        ros_args[2:2] = ["-p", f"output_dir:={os.path.abspath(options.output_dir)}"]
    return main(["spatial-ttt-record", "--ros-args", *ros_args])


if __name__ == "__main__":
    sys.exit(main())
