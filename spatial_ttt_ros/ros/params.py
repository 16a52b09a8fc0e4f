"""Every parameter of the perception node, declared once (no rclpy).

`PARAMETERS` is the single table. From it come `NodeSettings` (the frozen settings dataclass the
node, the CLI and the tests share; one field per row), the node's declarations and descriptors
(ros/node_params.py: ranges, read-only, validation of `ros2 param set`), config/perception.yaml
(`write_config` renders it; a unit test compares the file), and the launch file's model
arguments (ros/launch_args.py). To add a parameter, add a row here, run
`python -m spatial_ttt_ros.ros.params` (rewrites config/perception.yaml) and use
`settings.<name>` in the node.

`applies` says when a change takes effect: LIVE ones are applied at once in any state
(status rate, query defaults, keyframe thresholds); CONFIGURE ones are read at the next
configure, so `ros2 param set` takes them only while the node is unconfigured; START ones are
read when the node starts (read-only afterwards).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spatial_ttt_ros.data.rectify import MODES as RECTIFY_MODES
from spatial_ttt_ros.ros.keyframe_gate import GateConfig
from spatial_ttt_ros.ros.param_table import (
    LIVE,
    START,
    ParamSpec,
    SettingsBase,
    params_yaml,
    require,
    settings_class,
    table_defaults,
)

NODE_NAME = "spatial_ttt_perception"

IMAGE_TRANSPORTS = ("raw", "compressed")
POSE_TYPES = ("pose_stamped", "odometry", "none")
MAX_TOKENS = 4096  # ceiling of max_new_tokens_limit
MAX_TIMEOUT_S = 3600.0  # the longest timeout a request (or query_timeout_s) may ask for [s]

_MODEL, _INPUTS, _KEYFRAMES = "model / engine", "inputs", "keyframes and ingest"
_QUERIES, _FILES = "queries", "status and memory files"

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_preset", "demo", str, "model preset name in models/ (demo, spatial_ttt_2b, tiny) or a YAML path",
              section=_MODEL),
    ParamSpec("checkpoint", "", str, "Spatial-TTT model.safetensors (file or directory); empty for none",
              section=_MODEL),
    ParamSpec("base_model", "", str, "local Qwen3-VL-2B-Instruct directory; empty for the preset's", section=_MODEL),
    ParamSpec("device", "auto", str, "torch device: auto, cpu, cuda, cuda:N", section=_MODEL),
    ParamSpec("anchor_kv_budget_tokens", 0, int, "anchor-KV budget per anchor layer [tokens]: the anchors keep "
              "the chat prefix and the newest whole frame groups that fit and evict older groups (the TTT "
              "layers' fast weights keep the past; config/profiles/ has values per device); 0 = unbounded",
              minimum=0, maximum=1 << 40, section=_MODEL),
    ParamSpec("autostart", True, bool, "configure and activate at start-up (no lifecycle manager needed)",
              applies=START, section=_MODEL),
    ParamSpec("image_transport", "raw", str, "camera input: raw (sensor_msgs/Image on `image`) or compressed "
              "(sensor_msgs/CompressedImage on `image`/compressed)", choices=IMAGE_TRANSPORTS, section=_INPUTS),
    ParamSpec("pose_type", "pose_stamped", str, "pose input on `pose`", choices=POSE_TYPES, section=_INPUTS),
    ParamSpec("use_camera_info", False, bool, "subscribe sensor_msgs/CameraInfo on `camera_info` (intrinsics "
              "reported in diagnostics)", section=_INPUTS),
    ParamSpec("rectify", "none", str, "undistort frames before they enter the memory, with K, D, R, P of "
              "CameraInfo on `camera_info` (subscribed whenever this is not none): pinhole (plumb_bob, "
              "rational_polynomial), fisheye (equidistant), auto (from distortion_model; an uncalibrated "
              "camera passes unrectified) or none; frames wait for the first CameraInfo",
              choices=RECTIFY_MODES, section=_INPUTS),
    ParamSpec("sync_queue_size", 10, int, "approximate-time synchroniser: messages kept per input",
              minimum=1, maximum=1000, section=_INPUTS),
    ParamSpec("sync_slop_s", 0.05, float, "approximate-time synchroniser: max stamp difference of a pair [s]",
              minimum=0.0, maximum=10.0, section=_INPUTS),
    ParamSpec("max_image_pixels", 4096 * 4096, int, "images with more pixels (width x height) are refused; "
              "compressed ones from their header, before decoding", minimum=1, maximum=16384 * 16384,
              section=_INPUTS),
    ParamSpec("max_stamp_ahead_s", 60.0, float, "frames stamped more than this ahead of the node's clock are "
              "refused (a bad stamp would block every later frame); 0 = no check", minimum=0.0, section=_INPUTS),
    ParamSpec("stamp_rewind_s", 10.0, float, "a frame stamped this much before the last keyframe (a restarted "
              "clock, a looped bag) starts a new segment of the memory instead of being refused; 0 = never",
              minimum=0.0, section=_INPUTS),
    ParamSpec("keyframe_max_rate_hz", 2.0, float, "at most this many keyframes per second of stamps; 0 = no limit",
              minimum=0.0, applies=LIVE, section=_KEYFRAMES),
    ParamSpec("keyframe_min_translation_m", 0.1, float, "with a pose: min camera travel since the last "
              "keyframe [m]", minimum=0.0, applies=LIVE, section=_KEYFRAMES),
    ParamSpec("keyframe_min_rotation_deg", 10.0, float, "with a pose: min camera turn since the last "
              "keyframe [deg]", minimum=0.0, maximum=180.0, applies=LIVE, section=_KEYFRAMES),
    ParamSpec("ingest_queue_size", 8, int, "keyframes waiting for the model; when full the oldest is dropped",
              minimum=1, maximum=10000, section=_KEYFRAMES),
    ParamSpec("prepare_when_idle", True, bool, "when the queue runs empty, finish the held-back frame groups on "
              "a kept fork so the next query only runs its question (one more TTT-state copy in memory)",
              section=_KEYFRAMES),
    ParamSpec("max_concurrent_queries", 4, int, "queries admitted at once; more get success=false 'busy'",
              minimum=1, maximum=256, section=_QUERIES),
    ParamSpec("query_timeout_s", 30.0, float, "default query timeout when the request's timeout_s is 0 [s]",
              minimum=0.001, maximum=MAX_TIMEOUT_S,
              applies=LIVE, section=_QUERIES),
    ParamSpec("max_new_tokens", 16, int, "default decoding budget when the request's max_new_tokens is 0",
              minimum=1, maximum=MAX_TOKENS, applies=LIVE, section=_QUERIES),
    ParamSpec("max_new_tokens_limit", 256, int, "largest max_new_tokens a request may ask for",
              minimum=1, maximum=MAX_TOKENS, applies=LIVE, section=_QUERIES),
    ParamSpec("append_many_rooms", True, bool, "append the evaluation wrapper's many-rooms sentence to prompts",
              applies=LIVE, section=_QUERIES),
    ParamSpec("map_frame", "map", str, "frame_id reported with locate positions when the pose messages carry "
              "none (otherwise theirs: positions are in the frame of the poses the memory was built from)",
              applies=LIVE, section=_QUERIES),
    ParamSpec("status_rate_hz", 1.0, float, "memory_status and /diagnostics publishing rate [Hz]",
              minimum=0.01, maximum=100.0, applies=LIVE, section=_FILES),
    ParamSpec("memory_dir", "", str, "the only directory memory files are saved to and loaded from; empty = "
              "$XDG_STATE_HOME/spatial_ttt_ros/memory (~/.local/state/spatial_ttt_ros/memory)", section=_FILES),
    ParamSpec("memory_path", "", str, "memory file inside memory_dir for save/load requests with an empty path, "
              "autosave and load_on_start; empty = none", section=_FILES),
    ParamSpec("autosave_period_s", 0.0, float, "save memory to memory_path this often while active [s]; 0 = off",
              minimum=0.0, section=_FILES),
    ParamSpec("load_on_start", False, bool, "load memory_path (if it exists) when configuring", section=_FILES),
)

DEFAULTS: dict[str, Any] = table_defaults(PARAMETERS)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def default_memory_dir() -> Path:
    """$XDG_STATE_HOME/spatial_ttt_ros/memory, else ~/.local/state/spatial_ttt_ros/memory."""
    state = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "spatial_ttt_ros" / "memory"


class _NodeRules(SettingsBase):
    """The perception node's settings: one field per row of `params.PARAMETERS`."""

    def check_together(self) -> None:
        require(self.model_preset.strip() != "", "model_preset must not be empty")
        require(self.max_new_tokens <= self.max_new_tokens_limit,
                f"max_new_tokens ({self.max_new_tokens}) must not exceed max_new_tokens_limit "
                f"({self.max_new_tokens_limit})")
        require(not (self.autosave_period_s > 0 and not self.memory_path),
                "autosave_period_s > 0 needs a memory_path")
        require(not (self.load_on_start and not self.memory_path), "load_on_start needs a memory_path")
        self.gate_config()  # validates the keyframe thresholds

    @classmethod
    def lenient(cls, values: dict[str, Any]) -> Any:
        """Settings keeping every value that is valid on its own, defaults for the rest (what the node
        starts with: autostart, status rate, threads; configure then reports what is wrong)."""
        try:
            return cls.from_values(values)
        except ValueError:
            pass
        valid = {}
        for name, value in values.items():
            try:
                cls.from_values({name: value})
            except ValueError:
                continue
            valid[name] = value
        try:
            return cls.from_values(valid)
        except ValueError:  # valid alone but not together (e.g. max_new_tokens vs its limit)
            return cls()

    def gate_config(self) -> GateConfig:
        return GateConfig(max_rate_hz=self.keyframe_max_rate_hz,
                          min_translation_m=self.keyframe_min_translation_m,
                          min_rotation_deg=self.keyframe_min_rotation_deg)

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `StreamingEngine.from_preset` (empty paths -> None)."""
        return {"preset": self.model_preset, "checkpoint": self.checkpoint or None,
                "base_model": self.base_model or None, "device": self.device,
                "overrides": {"anchor_kv_budget_tokens": self.anchor_kv_budget_tokens}}

    def memory_root(self) -> Path:
        """The directory memory files are confined to (memory_dir, or the per-user default)."""
        return Path(os.path.expanduser(self.memory_dir)) if self.memory_dir.strip() else default_memory_dir()


NodeSettings = settings_class("NodeSettings", PARAMETERS, _NodeRules)

YAML_HEADER = """\
Parameters of the spatial_ttt_ros perception node: every default, with its meaning and limits.
GENERATED from spatial_ttt_ros/ros/params.py (python -m spatial_ttt_ros.ros.params): edit the table there.
Keyed `/**` so it applies under any namespace (launch namespace:=robot1, -r __ns:=/robot1).
Used by launch/perception.launch.py (params_file) and `spatial-ttt node --params-file`."""


def config_yaml() -> str:
    """The text of config/perception.yaml."""
    return params_yaml(PARAMETERS, YAML_HEADER)


def write_config(root: Path) -> list[Path]:
    """(Re)write the params YAML of every node under `root`/config; returns the files."""
    from spatial_ttt_ros.ros import recorder_params

    written = []
    for name, text in (("perception.yaml", config_yaml()), ("recorder.yaml", recorder_params.config_yaml())):
        path = root / "config" / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_config(Path(__file__).resolve().parents[2]):
        print(f"wrote {written_path}")
