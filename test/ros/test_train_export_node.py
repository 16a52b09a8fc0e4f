"""The perception node loads a checkpoint exported by `spatial-ttt train export` (the preset YAML
beside it as model_preset, the directory as checkpoint) and runs exactly the trained weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from spatial_ttt_ros.train.checkpoint import export

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from train_helpers import run, tiny_recipe  # noqa: E402


def test_node_loads_a_trained_export(perception, tmp_path):
    torch.set_num_threads(1)
    run(tiny_recipe(2, lr=1e-2), tmp_path / "run", "single")
    path = export(tmp_path / "run", tmp_path / "release", dtype="float16")
    node = perception({"model_preset": str(tmp_path / "release" / "tiny.yaml"), "checkpoint": str(tmp_path / "release")})
    assert node.state == "active" and node.model_id == "tiny:release"
    own = node._engine.model.state_dict()
    for name, tensor in load_file(str(path)).items():
        assert own[name].dtype == torch.float32  # fp16 storage cast up to the preset's dtype on load
        torch.testing.assert_close(own[name], tensor.float(), rtol=0, atol=0, msg=name)
