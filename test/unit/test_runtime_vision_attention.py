"""The vision tower with packed_sdpa (one attention call for all frame groups) equals stock sdpa."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.model import build_model, tiny_qwen3_vl_config
from spatial_ttt_ros.runtime.tokens import patchify_pair
from spatial_ttt_ros.runtime.vision_attention import NAME, packed_sdpa


def _pixels(n_pairs: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    pairs = [patchify_pair(rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)) for _ in range(n_pairs)]
    return torch.cat([p for p, _ in pairs]), (n_pairs, *pairs[0][1][1:])


@pytest.fixture(scope="module")
def models():
    config = load_config("tiny")
    packed, _ = build_model(config, torch.device("cpu"))
    stock = Qwen3VLForConditionalGeneration(tiny_qwen3_vl_config(config)).eval()
    stock.model.visual.load_state_dict(packed.model.visual.state_dict())
    stock.model.visual.config._attn_implementation = "sdpa"
    return packed.model.visual, stock.model.visual


@pytest.mark.parametrize("layout", ["one video, equal groups (batched call)", "two sizes (one call per sequence)"])
def test_packed_vision_attention_equals_stock_sdpa(models, layout):
    packed, stock = models
    assert packed.config._attn_implementation == NAME and stock.config._attn_implementation == "sdpa"
    a, grid_a = _pixels(3, 64, 96, seed=1)
    if layout.startswith("one"):
        pixels, grid = a, [grid_a]
    else:
        b, grid_b = _pixels(1, 32, 64, seed=2)
        pixels, grid = torch.cat([a, b]), [grid_a, grid_b]
    with torch.no_grad():
        ours = packed(pixels, grid_thw=torch.tensor(grid), return_dict=True)
        ref = stock(pixels, grid_thw=torch.tensor(grid), return_dict=True)
    torch.testing.assert_close(ours.pooler_output, ref.pooler_output, rtol=1e-5, atol=1e-5)
    for x, y in zip(ours.deepstack_features, ref.deepstack_features, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_packed_sdpa_refuses_what_the_vision_tower_never_asks_for():
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="vision tower only"):
        packed_sdpa(None, q, q, q, attention_mask=None, is_causal=True)
