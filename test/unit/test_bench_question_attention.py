"""The question-attention variants of benchmarks/bench_question_attention.py equal plain softmax
attention (the split-KV candidate included: segments as a batch, the question's own keys causal,
merged by log-sum-exp), so that its GPU timings compare equal answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the benchmarks package, as test_bench_readme

from benchmarks.bench_question_attention import VARIANTS, reference, split  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("keys,queries,segment", [(300, 7, 64), (256 + 5, 5, 64), (40, 9, 64), (513, 1, 128)])
def test_every_variant_equals_softmax_attention(keys, queries, segment):
    g = torch.Generator().manual_seed(keys)
    q = torch.randn(16, queries, 32, generator=g)
    k, v = (torch.randn(8, keys, 32, generator=g) for _ in range(2))
    want = reference(q, k, v, 32 ** -0.5)
    torch.testing.assert_close(split(q, k, v, 32 ** -0.5, segment), want, rtol=1e-5, atol=1e-5)
    for name, fn in VARIANTS.items():
        if name != "split":
            torch.testing.assert_close(fn(q, k, v, 32 ** -0.5), want, rtol=1e-5, atol=1e-5, msg=name)


def test_split_in_bf16_follows_fp32():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(16, 12, 64, generator=g)
    k, v = (torch.randn(8, 700, 64, generator=g) for _ in range(2))
    want = reference(q, k, v, 0.125)
    got = split(q.bfloat16(), k.bfloat16(), v.bfloat16(), 0.125, 256)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0, atol=3e-2)
