"""Recipe validation, optimiser groups and the LR schedule (pure, fast)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.model import build_model, ttt_parameter_names
from spatial_ttt_ros.train.curriculum import parse_stages, total_steps
from spatial_ttt_ros.train.optim import param_groups, set_trainable
from spatial_ttt_ros.train.recipe import OptimSettings, load_recipe, lr_factor, parse_recipe, warmup_steps

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
GOOD = {"preset": "tiny", "data": {"stages": [{"name": "describe", "steps": 20, "mix": {"describe": 1.0}},
                                              {"name": "qa", "steps": 80, "mix": {"qa": 1.0}}]}}


def _with(section: str | None, key: str, value: object) -> dict:
    raw = {**GOOD, "optim": {}, "train": {}}
    if section:
        raw[section] = {key: value}
    else:
        raw[key] = value
    return raw


@pytest.mark.parametrize("section,key,value,match", [
    ("optim", "lr", -1.0, r"optim\.lr must be > 0.0, got -1.0"),
    ("optim", "lr", "fast", r"optim\.lr must be a finite number, got 'fast'"),
    ("optim", "warmup", 1.5, r"optim\.warmup must be <= 1.0, got 1.5"),
    ("optim", "betas", [0.9], r"optim\.betas must be two numbers"),
    ("optim", "betas", [0.9, 1.0], r"optim\.betas\[1\] must be < 1, got 1.0"),
    ("optim", "momentum", 0.9, r"unknown field\(s\) optim\.momentum"),
    ("train", "batch_size", 0, r"train\.batch_size must be >= 1, got 0"),
    ("train", "grad_accum", 1.5, r"train\.grad_accum must be an integer, got 1.5"),
    ("train", "precision", "fp8", r"train\.precision must be one of \('bf16', 'fp32'\), got 'fp8'"),
    ("train", "freeze_vision", "yes", r"train\.freeze_vision must be true or false, got 'yes'"),
    (None, "preset", "", r"preset must name"),
    (None, "seed", -3, r"seed must be >= 0, got -3"),
    (None, "epochs", 1, r"unknown field\(s\) epochs"),
    (None, "data", {"stages": []}, r"data: stage field stages: expected a non-empty list of stages, got \[\]"),
    (None, "data", {"stages": [{"name": "a", "mix": {"qa": 1}}]}, r"data: .*stages\[0\]\.steps: expected an integer >= 1, got None"),
    (None, "data", {"stages": [{"steps": 0, "mix": {"qa": 1}}]}, r"stages\[0\]\.steps: expected an integer >= 1, got 0"),
    (None, "data", {"stages": [{"steps": 3, "mix": {"walk": 1}}]}, r"stages\[0\]\.mix: expected tasks among .*got 'walk'"),
])
def test_bad_fields_are_named_with_their_value(section, key, value, match):
    with pytest.raises(ValueError, match=match):
        parse_recipe(_with(section, key, value), "r.yaml")


def test_defaults_and_total_steps():
    recipe = parse_recipe(GOOD)
    assert recipe.total_steps == 100 and recipe.train.freeze_vision and recipe.train.precision == "bf16"
    assert parse_recipe(recipe.to_dict()) == recipe


def test_shipped_recipes_parse():
    official = load_recipe(ROOT / "config/train/spatial_ttt_2b.yaml")
    assert official.preset == "spatial_ttt_2b_train"
    o, t = official.optim, official.train
    assert (o.lr, o.ttt_lr, o.weight_decay, o.warmup, o.min_lr_ratio) == (1e-6, 1e-5, 0.01, 0.01, 0.1)
    assert t.precision == "bf16" and t.freeze_vision and official.data["max_frames"] == 128
    cfg = load_config(official.preset)
    assert (cfg.chunk_size, cfg.window_size, cfg.use_muon, cfg.prenorm) == (2648, 2648, True, True)
    assert (cfg.frame_height, cfg.frame_width) == (352, 480)
    for path in sorted((ROOT / "config/train").glob("*.yaml")):  # every shipped recipe, stages included
        recipe = load_recipe(path)
        stages = parse_stages(recipe.data["stages"])
        assert recipe.total_steps == total_steps(stages) > 0, path.name


def test_schedule_warmup_then_cosine_to_min_ratio():
    total, warm, low = 200, 0.05, 0.1
    assert warmup_steps(total, warm) == 10
    assert lr_factor(0, total, warm, low) == 0.0
    assert lr_factor(5, total, warm, low) == pytest.approx(0.5)
    assert lr_factor(10, total, warm, low) == pytest.approx(1.0)
    mid = 10 + (total - 10) // 2
    assert lr_factor(mid, total, warm, low) == pytest.approx(low + (1 - low) * 0.5, abs=1e-2)
    assert lr_factor(total, total, warm, low) == pytest.approx(low)
    values = [lr_factor(s, total, warm, low) for s in range(10, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert math.isclose(lr_factor(0, 100, 0.0, 0.1), 1.0)


def test_param_groups_ttt_and_conv_at_ttt_lr_no_decay_for_vectors_vision_frozen():
    torch.manual_seed(0)
    model, _ = build_model(load_config("tiny"), torch.device("cpu"))
    frozen = set_trainable(model, freeze_vision=True)
    assert frozen and all(n.startswith("model.visual.") for n in frozen)
    groups = param_groups(model, OptimSettings(lr=1e-6, ttt_lr=1e-5, weight_decay=0.01))
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
    ttt = set(ttt_parameter_names(model))
    assert by_group["ttt_decay"] | by_group["ttt_no_decay"] == ttt
    assert any(n.endswith("conv_q.weight") for n in by_group["ttt_decay"])  # the SP conv trains at ttt_lr
    assert {n.rsplit(".", 1)[-1] for n in by_group["ttt_decay"]} >= {"w0", "w1", "w2"}
    no_decay = by_group["base_no_decay"] | by_group["ttt_no_decay"]
    assert any("layernorm" in n for n in no_decay) and any(n.endswith("q_scale") for n in no_decay)
    assert any(n.endswith("lr_proj.bias") for n in no_decay)
    assert not any(n.startswith("model.visual.") for g in by_group.values() for n in g)
    lrs = {g["name"]: (g["peak_lr"], g["weight_decay"]) for g in groups}
    assert lrs == {"base_decay": (1e-6, 0.01), "base_no_decay": (1e-6, 0.0),
                   "ttt_decay": (1e-5, 0.01), "ttt_no_decay": (1e-5, 0.0)}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set().union(*by_group.values()) == trainable
    set_trainable(model, freeze_vision=False)
    assert not any(n.startswith("model.visual.") for n, p in model.named_parameters() if not p.requires_grad)
