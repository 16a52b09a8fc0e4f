"""runtime/band_attention.py: the sliding-window band as three flash calls merged by log-sum-exp
equals masked SDPA over the same keys, for every block size the streaming decoder uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spatial_ttt_ros.runtime.band_attention import band_attention, band_supported

pytestmark = pytest.mark.unit


def masked(q, k, v, window, scaling):
    """Reference: row r (position n_keys - n + r) sees keys (pos - window, pos]."""
    n, m = q.shape[1], k.shape[1]
    qi = torch.arange(m - n, m)[:, None]
    ki = torch.arange(m)[None, :]
    mask = (ki <= qi) & (ki > qi - window)
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask[None, None], scale=scaling)
    return out[0].transpose(0, 1).reshape(n, -1)


@pytest.mark.parametrize("window, n", [(8, 1), (8, 4), (8, 7), (40, 20), (40, 13), (64, 32), (5, 4)])
def test_band_equals_the_masked_window(window, n):
    g = torch.Generator().manual_seed(window * 100 + n)
    h, hd = 3, 16
    q, k, v = (torch.randn(h, rows, hd, generator=g, dtype=torch.float64).float()
               for rows in (n, window + n - 1, window + n - 1))
    k = k * 3  # spread the scores so a wrong mask shows
    got, want = band_attention(q, k, v, window, 0.25), masked(q, k, v, window, 0.25)
    assert got.shape == (n, h * hd)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=2e-5)


def test_band_in_bf16_matches_to_bf16_rounding():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, rows, 32, generator=g) for rows in (12, 35, 35))
    want = masked(q, k, v, 24, 32 ** -0.5)
    got = band_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 24, 32 ** -0.5)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=3e-2)


def test_wrong_key_count_is_refused_by_value():
    q, k = torch.zeros(1, 4, 8), torch.zeros(1, 10, 8)
    with pytest.raises(ValueError, match="4 queries need 11 keys for window 8, got 10"):
        band_attention(q, k, k, 8, 1.0)
    with pytest.raises(ValueError, match="need"):
        band_attention(torch.zeros(1, 8, 8), torch.zeros(1, 15, 8), torch.zeros(1, 15, 8), 8, 1.0)


def test_supported_on_cpu_and_not_for_integer_tensors():
    assert band_supported(torch.zeros(1, 2, 8)) and band_supported(torch.zeros(1, 2, 8, dtype=torch.bfloat16))
    assert not band_supported(torch.zeros(1, 2, 8, dtype=torch.int32))


def test_band_works_probes_the_kernels_and_refuses_a_broken_build(monkeypatch, caplog):
    from spatial_ttt_ros.runtime import band_attention as ba

    q = torch.zeros(4, 2, 16)
    assert ba.band_works(q) and ba.band_works(q.bfloat16())
    assert not ba.band_works(torch.zeros(4, 2, 16, dtype=torch.int64))

    def missing(*args, **kwargs):
        raise RuntimeError("no such op")

    monkeypatch.setattr(ba, "_flash", missing)
    with caplog.at_level("WARNING"):
        assert not ba.band_works(q)
    assert "no such op" in caplog.text

    def wrong(q, k, v, causal, scaling):
        return torch.zeros_like(q), torch.zeros(q.shape[:2])

    monkeypatch.setattr(ba, "_flash", wrong)
    assert not ba.band_works(q)


def test_band_is_used_on_the_cpu_only(monkeypatch):
    """Off a CPU the masked form is kept without probing, even where the flash kernels exist: on an
    H100 the bands were slower (band_attention.py's docstring)."""
    from spatial_ttt_ros.runtime import band_attention as ba

    calls = []
    monkeypatch.setattr(ba, "band_supported", lambda q: True)
    monkeypatch.setattr(ba, "_flash", lambda *args: calls.append(args))
    assert not ba.band_works(torch.zeros(4, 2, 16, device="meta"))
    assert calls == []


def test_streaming_keeps_the_mask_where_the_band_does_not_work(monkeypatch):
    """A Decoder whose probe failed takes the masked path for every block, with the same output."""
    from spatial_ttt_ros.runtime import streaming
    from spatial_ttt_ros.runtime.engine import StreamingEngine

    engine = StreamingEngine.from_preset("tiny", device="cpu")
    g = torch.Generator().manual_seed(3)
    window, n = 16, 40
    h, d = 2, 8
    q = torch.randn(h, n, d, generator=g)
    k, v = (torch.randn(h, n + 30, d, generator=g) for _ in range(2))
    fast = engine.decoder._attend(q, k, v, 30, 0, window, d ** -0.5)
    calls = []
    monkeypatch.setattr(streaming, "band_attention", lambda *a: calls.append(a) or band_attention(*a))
    engine.decoder._band.clear()
    monkeypatch.setattr(streaming, "band_works", lambda q: False)
    slow = engine.decoder._attend(q, k, v, 30, 0, window, d ** -0.5)
    assert calls == []
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=2e-5)
    engine.decoder._band.clear()
    monkeypatch.setattr(streaming, "band_works", lambda q: True)
    engine.decoder._attend(q, k, v, 30, 0, window, d ** -0.5)
    assert len(calls) == 40 // (window // 2)
