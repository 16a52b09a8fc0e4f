"""Every parameter of the perception node, declared once (no rclpy).

`PARAMETERS` is the single table: name, default, type, description. The node declares exactly
these (with the description as its ParameterDescriptor), `config/perception.yaml` holds the same
defaults (a unit test compares them), and `NodeSettings.from_values` turns a name -> value mapping
into the frozen settings dataclass that the node, the CLI and the tests share. `engine_kwargs`
maps it onto `StreamingEngine.from_preset`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from spatial_ttt_ros.ros.keyframe_gate import GateConfig

NODE_NAME = "spatial_ttt_perception"

IMAGE_TRANSPORTS = ("raw", "compressed")
POSE_TYPES = ("pose_stamped", "odometry", "none")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    type: type
    description: str


PARAMETERS: tuple[ParamSpec, ...] = (
    # model / engine
    ParamSpec("model_preset", "tiny", str, "model preset name in models/ (spatial_ttt_2b, tiny) or a YAML path"),
    ParamSpec("checkpoint", "", str, "Spatial-TTT model.safetensors (file or directory); empty for none"),
    ParamSpec("base_model", "", str, "local Qwen3-VL-2B-Instruct directory; empty for the preset's"),
    ParamSpec("device", "auto", str, "torch device: auto, cpu, cuda, cuda:N"),
    ParamSpec("autostart", True, bool, "configure and activate at start-up (no lifecycle manager needed)"),
    # inputs
    ParamSpec("image_transport", "raw", str, "camera input: raw (sensor_msgs/Image on `image`) or "
              "compressed (sensor_msgs/CompressedImage on `image`/compressed)"),
    ParamSpec("pose_type", "pose_stamped", str, "pose input on `pose`: pose_stamped, odometry or none"),
    ParamSpec("use_camera_info", False, bool, "subscribe sensor_msgs/CameraInfo on `camera_info` (intrinsics "
              "reported in diagnostics)"),
    ParamSpec("sync_queue_size", 10, int, "approximate-time synchroniser: messages kept per input"),
    ParamSpec("sync_slop_s", 0.05, float, "approximate-time synchroniser: max stamp difference of a pair [s]"),
    # keyframes and ingest
    ParamSpec("keyframe_max_rate_hz", 2.0, float, "at most this many keyframes per second of stamps; 0 = no limit"),
    ParamSpec("keyframe_min_translation_m", 0.1, float, "with a pose: min camera travel since the last keyframe [m]"),
    ParamSpec("keyframe_min_rotation_deg", 10.0, float, "with a pose: min camera turn since the last keyframe [deg]"),
    ParamSpec("ingest_queue_size", 8, int, "keyframes waiting for the model; when full the oldest is dropped"),
    ParamSpec("prepare_when_idle", True, bool, "when the queue runs empty, finish the held-back frame groups on a "
              "kept fork so the next query only runs its question (one more TTT-state copy in memory)"),
    # queries
    ParamSpec("max_concurrent_queries", 4, int, "queries admitted at once; more get success=false 'busy'"),
    ParamSpec("query_timeout_s", 30.0, float, "default query timeout when the request's timeout_s is 0 [s]"),
    ParamSpec("max_new_tokens", 16, int, "default decoding budget when the request's max_new_tokens is 0"),
    ParamSpec("max_new_tokens_limit", 256, int, "largest max_new_tokens a request may ask for"),
    ParamSpec("append_many_rooms", True, bool, "append the evaluation wrapper's many-rooms sentence to prompts"),
    # status and memory files
    ParamSpec("status_rate_hz", 1.0, float, "memory_status and /diagnostics publishing rate [Hz]"),
    ParamSpec("memory_path", "", str, "memory file for save/load requests with an empty path, autosave "
              "and load_on_start; empty = none"),
    ParamSpec("autosave_period_s", 0.0, float, "save memory to memory_path this often while active [s]; 0 = off"),
    ParamSpec("load_on_start", False, bool, "load memory_path (if it exists) when configuring"),
)

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}


def require(condition: bool, message: str) -> None:
    """ValueError(message) unless condition holds (parameter validation)."""
    if not condition:
        raise ValueError(message)


def coerce_values(parameters: tuple[ParamSpec, ...], values: dict[str, Any]) -> dict[str, Any]:
    """Parameter values checked against a table: unknown names and non-bool bools are a
    ValueError, other values are converted to the declared type."""
    unknown = set(values) - {p.name for p in parameters}
    require(not unknown, f"unknown parameters: {sorted(unknown)}")
    kwargs = {}
    for spec in parameters:
        if spec.name in values:
            value = values[spec.name]
            if spec.type is bool and not isinstance(value, bool):
                raise ValueError(f"parameter {spec.name} must be a bool, got {value!r}")
            kwargs[spec.name] = spec.type(value)
    return kwargs


@dataclass(frozen=True)
class NodeSettings:
    model_preset: str = DEFAULTS["model_preset"]
    checkpoint: str = DEFAULTS["checkpoint"]
    base_model: str = DEFAULTS["base_model"]
    device: str = DEFAULTS["device"]
    autostart: bool = DEFAULTS["autostart"]
    image_transport: str = DEFAULTS["image_transport"]
    pose_type: str = DEFAULTS["pose_type"]
    use_camera_info: bool = DEFAULTS["use_camera_info"]
    sync_queue_size: int = DEFAULTS["sync_queue_size"]
    sync_slop_s: float = DEFAULTS["sync_slop_s"]
    keyframe_max_rate_hz: float = DEFAULTS["keyframe_max_rate_hz"]
    keyframe_min_translation_m: float = DEFAULTS["keyframe_min_translation_m"]
    keyframe_min_rotation_deg: float = DEFAULTS["keyframe_min_rotation_deg"]
    ingest_queue_size: int = DEFAULTS["ingest_queue_size"]
    prepare_when_idle: bool = DEFAULTS["prepare_when_idle"]
    max_concurrent_queries: int = DEFAULTS["max_concurrent_queries"]
    query_timeout_s: float = DEFAULTS["query_timeout_s"]
    max_new_tokens: int = DEFAULTS["max_new_tokens"]
    max_new_tokens_limit: int = DEFAULTS["max_new_tokens_limit"]
    append_many_rooms: bool = DEFAULTS["append_many_rooms"]
    status_rate_hz: float = DEFAULTS["status_rate_hz"]
    memory_path: str = DEFAULTS["memory_path"]
    autosave_period_s: float = DEFAULTS["autosave_period_s"]
    load_on_start: bool = DEFAULTS["load_on_start"]

    def __post_init__(self) -> None:
        require(self.model_preset.strip() != "", "model_preset must not be empty")
        require(self.image_transport in IMAGE_TRANSPORTS,
               f"image_transport must be one of {IMAGE_TRANSPORTS}, got {self.image_transport!r}")
        require(self.pose_type in POSE_TYPES, f"pose_type must be one of {POSE_TYPES}, got {self.pose_type!r}")
        for name in ("sync_queue_size", "ingest_queue_size", "max_concurrent_queries", "max_new_tokens",
                     "max_new_tokens_limit"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.max_new_tokens <= self.max_new_tokens_limit,
               f"max_new_tokens ({self.max_new_tokens}) must not exceed max_new_tokens_limit "
               f"({self.max_new_tokens_limit})")
        for name in ("sync_slop_s", "autosave_period_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0, got {value}")
        for name in ("query_timeout_s", "status_rate_hz"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, f"{name} must be a finite number > 0, got {value}")
        require(not (self.autosave_period_s > 0 and not self.memory_path),
               "autosave_period_s > 0 needs a memory_path")
        self.gate_config()  # validates the keyframe thresholds

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeSettings:
        """Settings from parameter values; unknown names are a ValueError, types are coerced."""
        return cls(**coerce_values(PARAMETERS, values))

    @classmethod
    def lenient(cls, values: dict[str, Any]) -> NodeSettings:
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
                "base_model": self.base_model or None, "device": self.device}

