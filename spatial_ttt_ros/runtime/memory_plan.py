"""Memory arithmetic of a deployment: what the engine's state parts take, from the config and the
decoder's widths (no model needed), and the deployment profiles in config/profiles/*.yaml.

The per-part formulas are those of `MemoryState.nbytes_by_part` (tests compare them with the
engine's own counters on tiny models of several widths and dtypes); `plan` adds the weights, the
anchor buffer's headroom (`anchor_budget.capacity_limit`), the transient GQA-expanded K/V of one
anchor layer's attention over its cache, an activation allowance and, where CPU and GPU share the
memory, the host copy a save makes, for a profile to be checked against its device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .anchor_budget import capacity_limit
from .config import SpatialTTTConfig, load_config

GIB = 1 << 30
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class TextShape:
    """The decoder widths the state depends on (Qwen3-VL text config)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    @classmethod
    def of(cls, text: Any) -> TextShape:
        get = (lambda k: text[k]) if isinstance(text, dict) else (lambda k: getattr(text, k))
        return cls(*(int(get(f)) for f in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "num_key_value_heads", "head_dim")))


def state_bytes(config: SpatialTTTConfig, text: TextShape) -> dict[str, int]:
    """Bytes of each memory part at its largest (full window, a chunk short of an update, a frame
    group held per conv layer) except the anchor KV, given per token (`anchor_kv_per_token`)."""
    act = _BYTES[config.dtype]
    fw_act = 2 if config.fw_precision == "bf16" else 4
    n_ttt = len([i for i in config.ttt_layers if i < text.num_hidden_layers])
    channels = text.num_attention_heads * text.head_dim
    heads, d = config.num_fw_heads, channels // config.num_fw_heads
    dh = int(d * config.inter_multi)
    fast = 3 * heads * d * dh * 4
    hw = (config.frame_height // 32) * (config.frame_width // 32)
    group = hw + 2 + 12  # visual tokens, vision start/end, timestamp text (~12 tokens)
    held = group * (text.hidden_size * act + 3 * 8 + 1 + 2 * text.head_dim * act) + hw * (8 + 3 * text.hidden_size * act)
    per_layer = {
        "fast_weights": fast * (2 if config.prenorm else 1),
        "momentum": fast if config.use_momentum else 0,
        "row_norms": heads * (2 * dh + d) * 4,
        "pending": (config.chunk_size - 1) * heads * (2 * d * fw_act + 4 * 4),
        "window_kv": 2 * text.num_key_value_heads * config.window_size * text.head_dim * act,
        "conv_carry": (3 * hw * channels * act + held) if config.use_conv else 0,
    }
    parts = {k: n_ttt * v for k, v in per_layer.items()}
    parts["frame_buffer"] = (2 * config.ingest_batch_groups - 1) * config.frame_height * config.frame_width * 3
    return parts


def anchor_kv_per_token(config: SpatialTTTConfig, text: TextShape) -> int:
    n_anchor = text.num_hidden_layers - len([i for i in config.ttt_layers if i < text.num_hidden_layers])
    return n_anchor * 2 * text.num_key_value_heads * text.head_dim * _BYTES[config.dtype]


def attention_transient_bytes(config: SpatialTTTConfig, text: TextShape, keys: int) -> int:
    """One anchor layer attending a multi-token unit over `keys` cached keys: K and V expanded to
    every query head (GQA repeat) for the attention call."""
    return 2 * text.num_attention_heads * keys * text.head_dim * _BYTES[config.dtype]


# ---------------------------------------------------------------- deployment profiles
def profiles_dir() -> Path:
    """config/profiles in a source checkout, else share/spatial_ttt_ros/config/profiles."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / "profiles"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "spatial_ttt_ros" / "config" / "profiles")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    raise FileNotFoundError(f"no deployment profiles found (looked in {[str(c) for c in candidates]})")


@dataclass(frozen=True)
class Profile:
    name: str
    preset: str
    overrides: dict[str, Any]
    device_gib: float
    text: TextShape
    params: float                      # model parameters (weights in config.dtype)
    reserved_gib: float                # OS, ROS, CUDA context: what the device's memory must also hold
    activations_gib: float             # ingest/query activation allowance (see the profile's comment)
    shared_memory: bool                # CPU and GPU share the device memory (Jetson): host copies count
    stated: dict[str, float]           # the profile's own arithmetic, GiB per line

    def config(self) -> SpatialTTTConfig:
        return load_config(self.preset, **self.overrides)


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    path = Path(name_or_path)
    if not path.is_file():
        path = profiles_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown deployment profile {str(name_or_path)!r}")
    data = yaml.safe_load(path.read_text())
    mem = data["memory"]
    return Profile(name=path.stem, preset=data["preset"], overrides=dict(data["config"]),
                   device_gib=float(mem["device_gib"]), text=TextShape.of(data["text"]), params=float(data["params"]),
                   reserved_gib=float(mem["reserved_gib"]), activations_gib=float(mem["activations_gib"]),
                   shared_memory=bool(mem["shared_memory"]),
                   stated={k: float(v) for k, v in mem["arithmetic_gib"].items()})


def plan(profile: Profile) -> dict[str, float]:
    """The profile's memory lines in GiB, computed (compare with `profile.stated`)."""
    config = profile.config()
    cap = capacity_limit(config.anchor_kv_budget_tokens)
    state = state_bytes(config, profile.text)
    lines = {
        "weights": profile.params * _BYTES[config.dtype] / GIB,
        "ttt_state": sum(v for k, v in state.items() if k != "frame_buffer") / GIB,
        "frame_buffer": state["frame_buffer"] / GIB,
        "anchor_kv": cap * anchor_kv_per_token(config, profile.text) / GIB,
        "anchor_attention_transient": attention_transient_bytes(config, profile.text, cap) / GIB,
        "activations": profile.activations_gib,
        "reserved": profile.reserved_gib,
    }
    # A save or autosave copies the memory to host RAM (engine.snapshot()) before writing it; on a
    # shared-memory device that copy takes from the same memory.
    used = sum(v for k, v in state.items() if k != "frame_buffer") + \
        config.anchor_kv_budget_tokens * anchor_kv_per_token(config, profile.text)
    lines["save_snapshot"] = used / GIB if profile.shared_memory else 0.0
    lines["total"] = sum(lines.values())
    lines["headroom"] = profile.device_gib - lines["total"]
    return lines
