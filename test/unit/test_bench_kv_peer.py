"""The fair peer of benchmarks/bench_engine.py (benchmarks/kv_peer.py) on CPU with the tiny preset:
stock HF Qwen3-VL streamed into its KV cache in passes of frame pairs answers exactly what one fresh
forward over the same frames + question + answer gives, and after the cache is cropped back it
answers the next question (with more frames pushed in between) as a fresh forward would."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.model import tiny_qwen3_vl_config
from spatial_ttt_ros.runtime.tokens import (
    ChatLayout,
    build_byte_tokenizer,
    patchify_pair,
    resize_frame,
    timestamp_text,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("kv_peer", ROOT / "benchmarks" / "kv_peer.py")
kv_peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kv_peer)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    config = load_config("tiny")
    hf_config = tiny_qwen3_vl_config(config)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(hf_config).eval()
    tokenizer = build_byte_tokenizer(hf_config.text_config.vocab_size)
    layout = ChatLayout.from_tokenizer(tokenizer, config.system_prompt)
    rng = np.random.default_rng(0)
    frames = [(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.5 * i) for i in range(12)]
    return config, model, tokenizer, layout, frames


@torch.no_grad()
def fresh_logits(setup, frames, text_ids):
    """One forward of the stock model over prefix + frames + text (HF computes the rope positions)."""
    config, model, tokenizer, layout, _ = setup
    ids, pixels = list(layout.prefix), []
    for g in range(0, len(frames), 2):
        pair = [resize_frame(f, config.frame_height, config.frame_width) for f, _ in frames[g:g + 2]]
        pix, (_, gh, gw) = patchify_pair(np.stack(pair))
        pixels.append(pix)
        t_rel = (frames[g][1] + frames[g + 1][1]) / 2 - frames[0][1]
        ids += tokenizer.encode(timestamp_text(t_rel), add_special_tokens=False) + [layout.vision_start]
        ids += [layout.video_pad] * (gh * gw // 4) + [layout.vision_end]
    ids += text_ids
    input_ids = torch.tensor([ids])
    out = model(input_ids=input_ids, pixel_values_videos=torch.cat(pixels),
                video_grid_thw=torch.tensor([[len(pixels), gh, gw]]),
                mm_token_type_ids=(input_ids == layout.video_pad).int() * 2, use_cache=False)
    return out.logits[0].float()


def _check(setup, frames, peer, question):
    _, _, tokenizer, layout, _ = setup
    q = tokenizer.encode(question, add_special_tokens=False)
    tokens, logits = peer.ask(q, 4)
    assert len(tokens) == 4  # random weights: no early end token with this seed
    want = fresh_logits(setup, frames, q + list(layout.suffix) + tokens[:-1])[-len(tokens):]
    assert tokens == [int(t) for t in want.argmax(-1)]
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)
    return tokens, logits


def test_streamed_kv_cache_answers_as_a_fresh_forward(setup):
    config, model, tokenizer, layout, frames = setup
    peer = kv_peer.KVCachePeer(model, tokenizer, layout, (config.frame_height, config.frame_width), pairs_per_pass=2)
    for image, stamp in frames[:8]:
        peer.push_frame(image, stamp)
    assert not peer.pending  # two passes of two pairs
    video_len = len(peer.ids)
    first = _check(setup, frames[:8], peer, "how many chairs?")
    assert len(peer.ids) == video_len == peer.cache.get_seq_length()  # cropped back to the video
    again = peer.ask(tokenizer.encode("how many chairs?", add_special_tokens=False), 4)
    assert again[0] == first[0]
    torch.testing.assert_close(again[1], first[1], rtol=0, atol=1e-6)
    for image, stamp in frames[8:]:
        peer.push_frame(image, stamp)  # the video continues after a question
    _check(setup, frames, peer, "where is the bed?")
