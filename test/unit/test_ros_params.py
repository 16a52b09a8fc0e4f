"""Parameters: one table; the settings dataclass, the YAML and the launch's model arguments come
from it; values are checked against each row."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from spatial_ttt_ros.ros import params as params_module
from spatial_ttt_ros.ros.param_table import CONFIGURE, LIVE, START, ParamSpec, clip
from spatial_ttt_ros.ros.params import DEFAULTS, PARAMETERS, NodeSettings, default_memory_dir

YAML = Path(__file__).resolve().parents[2] / "config" / "perception.yaml"


def test_settings_dataclass_is_made_from_the_table():
    assert [f.name for f in dataclasses.fields(NodeSettings)] == [p.name for p in PARAMETERS]
    assert [f.default for f in dataclasses.fields(NodeSettings)] == [p.default for p in PARAMETERS]
    assert len(DEFAULTS) == len(PARAMETERS)
    assert all(p.description for p in PARAMETERS)
    assert all(isinstance(p.default, p.type) for p in PARAMETERS)


def test_config_yaml_is_rendered_from_the_table_under_the_wildcard_key():
    text = YAML.read_text()
    assert text == params_module.config_yaml(), "config/perception.yaml is stale: python -m spatial_ttt_ros.ros.params"
    loaded = yaml.safe_load(text)
    assert list(loaded) == ["/**"]  # any node name, any namespace
    values = loaded["/**"]["ros__parameters"]
    assert values == DEFAULTS
    assert all(type(values[name]) is type(default) for name, default in DEFAULTS.items())


def test_defaults_build_and_map_to_the_engine():
    settings = NodeSettings.from_values(DEFAULTS)
    assert settings == NodeSettings()
    assert settings.engine_kwargs() == {"preset": "demo", "checkpoint": None, "base_model": None, "device": "auto",
                                        "overrides": {"anchor_kv_budget_tokens": 0}}
    bounded = NodeSettings.from_values({"anchor_kv_budget_tokens": 65536})
    assert bounded.engine_kwargs()["overrides"] == {"anchor_kv_budget_tokens": 65536}
    with pytest.raises(ValueError, match="anchor_kv_budget_tokens"):
        NodeSettings.from_values({"anchor_kv_budget_tokens": -1})
    with_ckpt = NodeSettings(checkpoint="/w/model.safetensors", base_model="/w/qwen", device="cuda:1")
    assert with_ckpt.engine_kwargs()["checkpoint"] == "/w/model.safetensors"
    assert with_ckpt.engine_kwargs()["device"] == "cuda:1"
    gate = settings.gate_config()
    assert (gate.max_rate_hz, gate.min_translation_m, gate.min_rotation_deg) == (2.0, 0.1, 10.0)


def test_ints_are_taken_for_floats_like_the_command_line_gives_them():
    settings = NodeSettings.from_values({"status_rate_hz": 5, "sync_queue_size": 20, "sync_slop_s": 0})
    assert settings.status_rate_hz == 5.0 and isinstance(settings.status_rate_hz, float)
    assert settings.sync_slop_s == 0.0


@pytest.mark.parametrize("values, message", [
    ({"pose_type": "lidar"}, "pose_type must be one of"),
    ({"image_transport": "theora"}, "image_transport"),
    ({"ingest_queue_size": 0}, "ingest_queue_size must be >= 1"),
    ({"max_concurrent_queries": 0}, "max_concurrent_queries"),
    ({"status_rate_hz": 0.0}, "status_rate_hz must be >= 0.01"),
    ({"sync_slop_s": -0.1}, "sync_slop_s must be >= 0"),
    ({"sync_slop_s": float("nan")}, "sync_slop_s must be a finite number"),
    ({"keyframe_min_rotation_deg": -5.0}, "keyframe_min_rotation_deg"),
    ({"max_new_tokens": 300}, "max_new_tokens_limit"),
    ({"autosave_period_s": 10.0}, "memory_path"),
    ({"load_on_start": True}, "memory_path"),
    ({"autostart": "yes"}, "autostart must be a bool"),
    ({"sync_slop_s": "fast"}, "sync_slop_s must be a float"),
    ({"sync_queue_size": 2.5}, "sync_queue_size must be a int"),
    ({"frame_rate": 3}, "unknown parameters"),
    ({"model_preset": " "}, "model_preset"),
    ({"query_timeout_s": 1e10}, "query_timeout_s must be <= 3600"),
])
def test_bad_values_name_the_parameter(values, message):
    with pytest.raises(ValueError, match=message):
        NodeSettings.from_values(values)


def test_a_huge_bad_value_is_not_echoed_whole():
    with pytest.raises(ValueError) as info:
        NodeSettings.from_values({"pose_type": "x" * 1_000_000})
    assert len(str(info.value)) < 400
    assert len(clip("y" * 10_000)) < 250


def test_lenient_keeps_what_is_valid_for_start_up():
    settings = NodeSettings.lenient({"autostart": False, "pose_type": "lidar", "status_rate_hz": 4})
    assert settings.autostart is False and settings.status_rate_hz == 4.0
    assert settings.pose_type == "pose_stamped"  # the bad value falls back; configure reports it
    assert NodeSettings.lenient({"max_new_tokens": 200, "max_new_tokens_limit": 100}) == NodeSettings()


def test_every_row_says_when_it_applies_and_its_limits():
    assert {p.applies for p in PARAMETERS} <= {START, CONFIGURE, LIVE}
    assert params_module.SPECS["status_rate_hz"].applies == LIVE
    assert params_module.SPECS["autostart"].applies == START
    assert "0.01 to 100" in params_module.SPECS["status_rate_hz"].constraints()
    assert "one of: pose_stamped, odometry, none" in params_module.SPECS["pose_type"].constraints()
    with pytest.raises(ValueError, match="must be >= 1"):
        ParamSpec("bad_default", 0, int, "a row whose default breaks its own range", minimum=1)


def test_memory_dir_defaults_to_the_users_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_memory_dir() == tmp_path / "spatial_ttt_ros" / "memory"
    assert NodeSettings().memory_root() == tmp_path / "spatial_ttt_ros" / "memory"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_memory_dir() == Path.home() / ".local" / "state" / "spatial_ttt_ros" / "memory"
    assert NodeSettings(memory_dir=str(tmp_path)).memory_root() == tmp_path
