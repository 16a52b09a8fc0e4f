"""Parameters: declared once, the YAML defaults equal the declared ones, settings validate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from spatial_ttt_ros.ros.params import DEFAULTS, NODE_NAME, PARAMETERS, NodeSettings

YAML = Path(__file__).resolve().parents[2] / "config" / "perception.yaml"


def test_settings_dataclass_and_table_list_the_same_parameters():
    assert [f.name for f in dataclasses.fields(NodeSettings)] == [p.name for p in PARAMETERS]
    assert len(DEFAULTS) == len(PARAMETERS)
    assert all(p.description for p in PARAMETERS)
    assert all(isinstance(p.default, p.type) for p in PARAMETERS)


def test_config_yaml_holds_exactly_the_declared_defaults():
    params = yaml.safe_load(YAML.read_text())[NODE_NAME]["ros__parameters"]
    assert params == DEFAULTS
    assert all(type(params[name]) is type(default) for name, default in DEFAULTS.items())


def test_defaults_build_and_map_to_the_engine():
    settings = NodeSettings.from_values(DEFAULTS)
    assert settings == NodeSettings()
    assert settings.engine_kwargs() == {"preset": "tiny", "checkpoint": None, "base_model": None, "device": "auto"}
    with_ckpt = NodeSettings(checkpoint="/w/model.safetensors", base_model="/w/qwen", device="cuda:1")
    assert with_ckpt.engine_kwargs()["checkpoint"] == "/w/model.safetensors"
    assert with_ckpt.engine_kwargs()["device"] == "cuda:1"
    gate = settings.gate_config()
    assert (gate.max_rate_hz, gate.min_translation_m, gate.min_rotation_deg) == (2.0, 0.1, 10.0)


def test_values_are_coerced_like_the_command_line_gives_them():
    settings = NodeSettings.from_values({"status_rate_hz": 5, "sync_queue_size": 20, "sync_slop_s": 0})
    assert settings.status_rate_hz == 5.0 and isinstance(settings.status_rate_hz, float)
    assert settings.sync_slop_s == 0.0


@pytest.mark.parametrize("values, message", [
    ({"pose_type": "lidar"}, "pose_type"),
    ({"image_transport": "theora"}, "image_transport"),
    ({"ingest_queue_size": 0}, "ingest_queue_size"),
    ({"max_concurrent_queries": 0}, "max_concurrent_queries"),
    ({"status_rate_hz": 0.0}, "status_rate_hz"),
    ({"sync_slop_s": -0.1}, "sync_slop_s"),
    ({"keyframe_min_rotation_deg": -5.0}, "min_rotation_deg"),
    ({"max_new_tokens": 300}, "max_new_tokens_limit"),
    ({"autosave_period_s": 10.0}, "memory_path"),
    ({"autostart": "yes"}, "autostart"),
    ({"frame_rate": 3}, "unknown parameters"),
    ({"model_preset": " "}, "model_preset"),
])
def test_bad_values_name_the_parameter(values, message):
    with pytest.raises(ValueError, match=message):
        NodeSettings.from_values(values)


def test_lenient_keeps_what_is_valid_for_start_up():
    settings = NodeSettings.lenient({"autostart": False, "pose_type": "lidar", "status_rate_hz": 4})
    assert settings.autostart is False and settings.status_rate_hz == 4.0
    assert settings.pose_type == "pose_stamped"  # the bad value falls back; configure reports it
    assert NodeSettings.lenient({"max_new_tokens": 200, "max_new_tokens_limit": 100}) == NodeSettings()
