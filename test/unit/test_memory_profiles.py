"""Deployment profiles: the memory arithmetic next to each is recomputed from its config, and the
per-part formulas behind it match the engine's own byte counters on tiny models of several widths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime import memory_plan
from spatial_ttt_ros.runtime.anchor_budget import capacity_limit
from spatial_ttt_ros.runtime.engine import StreamingEngine

pytestmark = pytest.mark.unit

PROFILES = ["agx_orin_64gb", "agx_orin_32gb", "orin_nx_16gb", "x86_gpu_24gb", "gpu_80gb"]
SCALED_TEXT = {"vocab_size": 320, "hidden_size": 1024, "intermediate_size": 128, "num_hidden_layers": 4,
               "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 1000000,
               "rms_norm_eps": 1.0e-6, "rope_theta": 5000000.0, "mrope_section": [24, 20, 20]}


@pytest.mark.parametrize("overrides", [
    {},
    {"dtype": "bfloat16", "fw_precision": "bf16", "prenorm": True, "ingest_batch_groups": 2},
    {"num_fw_heads": 4, "inter_multi": 2.0, "use_momentum": False},
    {"tiny_text": SCALED_TEXT, "dtype": "bfloat16", "anchor_kv_budget_tokens": 300},  # the 2B model's KV width
], ids=["tiny", "bf16-prenorm-batch2", "4heads-wide", "scaled-2b-kv"])
def test_state_formulas_match_the_engine_byte_counters(overrides):
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu", overrides=overrides)
    text = memory_plan.TextShape.of(engine.model.config.text_config)
    formula = memory_plan.state_bytes(engine.config, text)
    rng = np.random.default_rng(0)
    largest: dict[str, int] = {}
    for i in range(61):
        engine.push_frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.5 * i)
        for name, n in engine.counters.bytes_by_part.items():
            largest[name] = max(largest.get(name, 0), n)
        if i % 10 == 0:  # nothing beyond the parts: no kept slice pins the tensor it was cut from
            parts = engine.state.nbytes_by_part()
            assert engine.state.storage_bytes() == sum(parts.values()) - parts["anchor_kv"] + \
                engine.state.anchor_capacity_bytes(), i
    c = engine.counters
    for name in ("fast_weights", "momentum", "row_norms", "window_kv", "frame_buffer"):
        assert c.bytes_by_part[name] == formula[name] or name == "frame_buffer" and largest[name] == formula[name], name
    for name in ("pending", "conv_carry"):  # they cycle: the formula is their largest size
        assert 0.8 * formula[name] <= largest[name] <= formula[name], name
    assert c.bytes_by_part["anchor_kv"] == c.anchor_tokens * memory_plan.anchor_kv_per_token(engine.config, text)
    if engine.config.anchor_kv_budget_tokens:
        assert c.evicted_groups > 0
        assert c.anchor_capacity_bytes <= capacity_limit(engine.config.anchor_kv_budget_tokens) * \
            memory_plan.anchor_kv_per_token(engine.config, text)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_arithmetic_is_what_its_config_gives_and_fits_its_device(name):
    profile = memory_plan.load_profile(name)
    config = profile.config()  # a valid engine config
    lines = memory_plan.plan(profile)
    assert set(lines) == set(profile.stated)
    for key, value in lines.items():
        assert profile.stated[key] == pytest.approx(value, abs=0.011), key
    assert lines["headroom"] >= 0.10 * profile.device_gib
    assert config.anchor_kv_budget_tokens > 0
    if "orin" in name:  # Jetson: no Triton wheel
        assert config.kernel_backend == "torch"


def test_an_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown deployment profile"):
        memory_plan.load_profile("nope")
