"""A training sample is laid out exactly as the engine streams the same frames and question."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.reference import build_sequence
from spatial_ttt_ros.train.samples import IGNORE, layout_sample

pytestmark = pytest.mark.unit
QUESTION = "How many chairs are in this room?"


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine.from_preset("tiny", device="cpu")


@pytest.mark.parametrize("n_frames", [1, 4, 7])
def test_sample_ids_equal_the_streamed_sequence(engine, n_frames):
    rng = np.random.default_rng(n_frames)
    frames = [(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 3.0 + 0.4 * i) for i in range(n_frames)]
    sample = layout_sample(engine.config, engine.tokenizer, engine.layout, [f for f, _ in frames],
                           [s for _, s in frames], QUESTION, "2")
    q = engine.tokenizer.encode(QUESTION, add_special_tokens=False) + list(engine.layout.suffix)
    answer = engine.tokenizer.encode("2", add_special_tokens=False) + [engine.layout.eos]
    ids = build_sequence(engine, [frames], q + answer)[0]
    assert sample.input_ids.tolist() == ids.tolist()
    n_label = int((sample.labels != IGNORE).sum())
    assert n_label == len(answer)
    assert sample.labels[-n_label:].tolist() == answer
    assert sample.frames.shape == (n_frames + n_frames % 2, 64, 96, 3) and sample.frames.dtype == torch.uint8


def test_bad_input_names_the_value(engine):
    img = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in length"):
        layout_sample(engine.config, engine.tokenizer, engine.layout, [img, img], [0.0], QUESTION, "1")
    with pytest.raises(ValueError, match="non-decreasing"):
        layout_sample(engine.config, engine.tokenizer, engine.layout, [img, img], [1.0, 0.5], QUESTION, "1")
    with pytest.raises(ValueError, match="answer"):
        layout_sample(engine.config, engine.tokenizer, engine.layout, [img], [0.0], QUESTION, " ")
