"""Every parameter of the recorder node, declared once (no rclpy).

The inputs and the keyframe gate are the perception node's rows (same names, meanings and
limits), so a bag holds what the model would see; config/recorder.yaml is rendered from this
table (`python -m spatial_ttt_ros.ros.params`). Every recorder parameter is read at start-up
(read-only afterwards) except `description`, which stores an operator note when set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.recording import COMPRESSIONS, RecordingOptions
from spatial_ttt_ros.ros.keyframe_gate import GateConfig
from spatial_ttt_ros.ros.param_table import (
    START,
    ParamSpec,
    SettingsBase,
    params_yaml,
    require,
    settings_class,
)
from spatial_ttt_ros.ros.param_table import table_defaults as _defaults
from spatial_ttt_ros.ros.params import SPECS as PERCEPTION

NODE_NAME = "spatial_ttt_recorder"
DESCRIPTION_PARAM = "description"

_BAG, _INPUTS = "where and how the bag is written: <output_dir>/<run>/bag/", "inputs: as the perception node's"
_GATE = "keyframe gate: the perception node's defaults, so a bag holds what the model would see"


def _shared(name: str, section: str, **changes: Any) -> ParamSpec:
    """A perception-node row, read at start-up here."""
    return dataclasses.replace(PERCEPTION[name], applies=START, section=section, **changes)


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("output_dir", "recordings", str, "directory that receives one <run>/bag/ per recording",
              applies=START, section=_BAG),
    ParamSpec("run_name", "", str, "name of the run directory; empty = spatial_ttt_<local date_time>",
              applies=START, section=_BAG),
    ParamSpec("max_episode_duration_s", 300.0, float, "start the next bag file (episode) after this much "
              "message time [s]; 0 = no limit", minimum=0.0, applies=START, section=_BAG),
    ParamSpec("max_episode_bytes", 1 << 30, int, "start the next bag file (episode) at this size [bytes]; "
              "0 = no limit", minimum=0, applies=START, section=_BAG),
    ParamSpec("flush_period_s", 1.0, float, "close the open chunk and fsync at least this often [s]",
              minimum=0.001, applies=START, section=_BAG),
    ParamSpec("compression", "zstd", str, "MCAP chunk compression", choices=COMPRESSIONS, applies=START,
              section=_BAG),
    ParamSpec("retry_period_s", 5.0, float, "after the bag is lost (e.g. disk full), try a new run this often [s]",
              minimum=0.001, applies=START, section=_BAG),
    _shared("image_transport", _INPUTS, description="camera input: raw (Image on `image`) or compressed "
            "(CompressedImage on `image`/compressed); stored as received"),
    _shared("pose_type", _INPUTS),
    _shared("use_camera_info", _INPUTS, default=True, description="sync CameraInfo on `camera_info` with each "
            "frame and store it (annotate needs the intrinsics)"),
    _shared("sync_queue_size", _INPUTS),
    _shared("sync_slop_s", _INPUTS),
    _shared("keyframe_max_rate_hz", _GATE),
    _shared("keyframe_min_translation_m", _GATE),
    _shared("keyframe_min_rotation_deg", _GATE),
    ParamSpec("status_rate_hz", 1.0, float, "/diagnostics publishing rate [Hz]", minimum=0.01, maximum=100.0,
              applies=START, section=_GATE),
)
DEFAULTS: dict[str, Any] = _defaults(PARAMETERS)


class _RecorderRules(SettingsBase):
    """The recorder's settings: one field per row of `recorder_params.PARAMETERS`."""

    def check_together(self) -> None:
        require(self.output_dir.strip() != "", "output_dir must not be empty")
        require("/" not in self.run_name and self.run_name not in (".", ".."),
                f"run_name must be a plain directory name, got {self.run_name[:200]!r}")
        self.gate_config()

    def gate_config(self) -> GateConfig:
        return GateConfig(max_rate_hz=self.keyframe_max_rate_hz,
                          min_translation_m=self.keyframe_min_translation_m,
                          min_rotation_deg=self.keyframe_min_rotation_deg)

    @property
    def image_topic(self) -> str:
        """Where the images go in the bag."""
        return msgs.TOPIC_IMAGE if self.image_transport == "raw" else msgs.TOPIC_IMAGE_COMPRESSED

    def bag_topics(self) -> list[str]:
        topics = [self.image_topic]
        if self.pose_type != "none":
            topics.append(msgs.TOPIC_POSE)
        if self.use_camera_info:
            topics.append(msgs.TOPIC_CAMERA_INFO)
        return topics + [msgs.TOPIC_DESCRIPTIONS, msgs.TOPIC_ANNOTATIONS]

    def recording_options(self) -> RecordingOptions:
        return RecordingOptions(
            output_dir=self.output_dir, run_name=self.run_name, max_episode_duration_s=self.max_episode_duration_s,
            max_episode_bytes=self.max_episode_bytes, flush_period_s=self.flush_period_s,
            compression=self.compression, retry_period_s=self.retry_period_s, topics=tuple(self.bag_topics()))


RecorderSettings = settings_class("RecorderSettings", PARAMETERS, _RecorderRules)

YAML_HEADER = """\
Parameters of the spatial_ttt_ros recorder node: every default, with its meaning and limits.
GENERATED from spatial_ttt_ros/ros/recorder_params.py (python -m spatial_ttt_ros.ros.params): edit the table there.
Keyed `/**` so it applies under any namespace. Used by `spatial-ttt record --params-file` and
`ros2 run spatial_ttt_ros recorder_node --ros-args --params-file`. At run time,
`ros2 param set /spatial_ttt_recorder description "..."` stores an operator description
(as does std_msgs/String on the `descriptions` topic)."""


def config_yaml() -> str:
    """The text of config/recorder.yaml."""
    return params_yaml(PARAMETERS, YAML_HEADER)
