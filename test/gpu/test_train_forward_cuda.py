"""The training forward and its gradients on CUDA equal the CPU's: the GPU takes its own routes
(one masked SDPA for the sliding window instead of the CPU's query blocks, ids and mRoPE positions
made on the host and moved once, every video's SP conv in one grouped call) and they must not change
the maths. A padded batch of unequal lengths, fp32 (TF32 off), long enough for the CPU's block path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.train.forward import sample_loss
from spatial_ttt_ros.train.samples import layout_sample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _samples(engine: StreamingEngine) -> list:
    rng = np.random.default_rng(0)
    out = []
    for n, answer in ((9, "3"), (4, "12"), (7, "0.5")):
        frames = list(rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8))
        out.append(layout_sample(engine.config, engine.tokenizer, engine.layout, frames, [0.5 * i for i in range(n)],
                                 "How many chairs are in this room?", answer))
    return out


def test_training_forward_and_gradients_on_cuda_equal_the_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    engine = StreamingEngine.from_preset("tiny", device="cpu")
    model, config = engine.model, engine.config
    model.requires_grad_(True)  # the engine froze it for inference
    samples = _samples(engine)
    assert max(len(s) for s in samples) > config.window_size * 3 // 2  # the CPU takes its block path
    results = []
    for device in ("cpu", "cuda"):
        model.to(device)
        model.zero_grad()
        loss, n = sample_loss(model, config, samples, checkpoint_chunks=False, per_sample_mean=True)
        loss.backward()
        results.append((loss.item(), n, {k: p.grad.detach().cpu() for k, p in model.named_parameters()
                                         if p.grad is not None}))
    (cpu_loss, cpu_n, cpu_grads), (gpu_loss, gpu_n, gpu_grads) = results
    assert gpu_n == cpu_n
    assert abs(gpu_loss - cpu_loss) <= 1e-4 * max(1.0, abs(cpu_loss)), (gpu_loss, cpu_loss)
    assert cpu_grads.keys() == gpu_grads.keys()
    assert any("conv_q" in k for k in cpu_grads)
    for k, g in cpu_grads.items():
        err = (gpu_grads[k] - g).abs().max().item()
        assert err <= 1e-3 * max(1e-3, g.abs().max().item()), (k, err)
