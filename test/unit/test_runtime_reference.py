"""The one-pass side of the streaming invariant runs the PyTorch kernels whatever the configured
backend (so that on CUDA, where the engine runs Triton, the invariant checks the Triton path), and
the decode-graph default (`auto`) leaves a CPU engine exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime import one_pass, reference
from spatial_ttt_ros.runtime.config import SpatialTTTConfig, load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine

pytestmark = pytest.mark.unit

QUESTION = "how many chairs?"


def _frames(n: int) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(3)
    return [(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.2 * i) for i in range(n)]


def test_reference_passes_the_torch_backend_whatever_the_config(monkeypatch):
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu", overrides={"chunk_size": 40})
    frames = _frames(6)
    ids = engine.tokenizer.encode(QUESTION, add_special_tokens=False) + list(engine.layout.suffix)
    want = reference.one_pass_logits(engine, [frames], ids)
    seen = []
    for name in ("fw_apply", "fw_update"):
        real = getattr(one_pass, name)

        def spy(*args, _real=real, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.append(kwargs["backend"])
            return _real(*args, **kwargs)

        monkeypatch.setattr(one_pass, name, spy)
    # A config asking for Triton: on CPU the Triton kernels cannot run (select_backend raises), so
    # this only passes when the reference ignores the configured backend.
    engine.config = engine.config.replace(kernel_backend="triton")
    got = reference.one_pass_logits(engine, [frames], ids)
    assert seen and set(seen) == {"torch"}, seen
    assert seen.count("torch") > len(engine.config.ttt_layers)  # apply and update per TTT layer and block
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_decode_graph_auto_by_default_and_eager_on_cpu():
    assert SpatialTTTConfig().decode_graph == "auto"
    assert load_config("tiny").decode_graph == "auto"
    torch.set_num_threads(1)
    default = StreamingEngine.from_preset("tiny", device="cpu", overrides={"chunk_size": 4096})
    off = StreamingEngine.from_preset("tiny", device="cpu", overrides={"chunk_size": 4096, "decode_graph": "off"})
    assert default._static is None  # auto on CPU = the eager decode, as before
    for engine in (default, off):
        for image, stamp in _frames(4):
            engine.push_frame(image, stamp)
    a = default.ask(QUESTION, 6, return_logits=True)
    b = off.ask(QUESTION, 6, return_logits=True)
    assert a.decode_path == b.decode_path == "eager"
    assert a.token_ids == b.token_ids
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
