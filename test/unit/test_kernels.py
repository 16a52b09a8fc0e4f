"""Fast-weight maths (kernels/): closed forms vs autograd, explicit loops and hand-written updates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spatial_ttt_ros import kernels as K

SHAPES = [(3, 16, 24), (4, 64, 64)]  # (H, D, Dh)
LENGTHS = [1, 7, 63, 100]
NS5_COEFFS = [
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
]


def make_weights(H, D, Dh, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(H, Dh, D, generator=gen, dtype=dtype) / D**0.5
    w1 = torch.randn(H, D, Dh, generator=gen, dtype=dtype) / Dh**0.5
    w2 = torch.randn(H, Dh, D, generator=gen, dtype=dtype) / D**0.5
    return w0, w1, w2


def make_chunk(H, L, D, dtype=torch.float64, seed=1, lr_scale=0.05):
    """Keys and values shaped like the TTT branch's (silu, L2-normalised keys), per-token lr and mu."""
    gen = torch.Generator().manual_seed(seed)
    k = F.normalize(F.silu(torch.randn(H, L, D, generator=gen, dtype=dtype)), dim=-1)
    v = F.silu(torch.randn(H, L, D, generator=gen, dtype=dtype))
    lr = lr_scale * torch.rand(H, L, 3, generator=gen, dtype=torch.float32)
    mu = torch.sigmoid(torch.randn(H, L, 1, generator=gen, dtype=torch.float32))
    return k, v, lr, mu


def apply_einsum(w0, w1, w2, x):
    """f_S written independently of the kernels: W1 (silu(W0 x) * (W2 x))."""
    a = torch.einsum("hid,hld->hli", w0, x)
    b = torch.einsum("hid,hld->hli", w2, x)
    return torch.einsum("hdi,hli->hld", w1, F.silu(a) * b)


def renorm_by_hand(w, r):
    return w / (w.norm(dim=-1, keepdim=True) + 1e-5) * r


@pytest.mark.parametrize("H,D,Dh", SHAPES)
@pytest.mark.parametrize("L", LENGTHS)
def test_fw_grad_is_negative_autograd_of_lr_weighted_loss(H, D, Dh, L):
    w = make_weights(H, D, Dh)
    k, v, lr, _ = make_chunk(H, L, D)
    got = K.fw_grad(*w, k, v, lr)
    for j in range(3):
        # Differentiating loss_j only w.r.t. W_j gives W_j its own per-token step lr[..., j].
        params = [t.clone().requires_grad_(i == j) for i, t in enumerate(w)]
        out = apply_einsum(*params, k)  # [H, L, D]
        loss_j = -(lr[..., j : j + 1].double() * (v * out)).sum()
        (grad,) = torch.autograd.grad(loss_j, params[j])
        assert got[j].shape == w[j].shape and got[j].dtype == torch.float64
        torch.testing.assert_close(got[j], -grad, rtol=1e-10, atol=1e-12)


def test_fw_grad_is_a_plain_sum_over_tokens():
    w = make_weights(3, 16, 24)
    k, v, lr, _ = make_chunk(3, 10, 16)
    whole = K.fw_grad(*w, k, v, lr)
    parts = [K.fw_grad(*w, k[:, s], v[:, s], lr[:, s]) for s in (slice(0, 4), slice(4, 10))]
    for j in range(3):
        torch.testing.assert_close(whole[j], parts[0][j] + parts[1][j], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,D,Dh", SHAPES)
@pytest.mark.parametrize("L", LENGTHS)
def test_fw_apply_matches_per_token_loop(H, D, Dh, L):
    w0, w1, w2 = make_weights(H, D, Dh)
    x, *_ = make_chunk(H, L, D, seed=2)
    got = K.fw_apply(w0, w1, w2, x)
    want = torch.empty(H, L, D, dtype=torch.float64)
    for h in range(H):
        for t in range(L):
            xt = x[h, t]
            want[h, t] = w1[h] @ (F.silu(w0[h] @ xt) * (w2[h] @ xt))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_fw_apply_casts_inputs_to_the_state_dtype():
    w = make_weights(3, 16, 24, dtype=torch.float32)
    x, *_ = make_chunk(3, 7, 16, dtype=torch.bfloat16)
    got = K.fw_apply(*w, x)
    assert got.dtype == torch.float32
    # against the independent einsum form on x cast to fp32 (not fw_apply against itself)
    torch.testing.assert_close(got, apply_einsum(*w, x.float()), rtol=1e-5, atol=1e-6)


def test_momentum_two_updates_by_hand():
    H, D, Dh = 3, 16, 24
    w = make_weights(H, D, Dh)
    chunks = [make_chunk(H, L, D, seed=s) for s, L in ((10, 7), (11, 13))]
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=False, dtype=torch.float64)
    assert all(torch.count_nonzero(m) == 0 for m in state.momentum)

    weights, buffers, norms = (
        list(w),
        [torch.zeros_like(t) for t in w],
        [t.norm(dim=-1, keepdim=True) for t in w],
    )
    for k, v, lr, mu in chunks:
        state = K.fw_update(state, k, v, lr, mu, use_momentum=True, use_muon=False, prenorm=False)
        beta = mu.double().mean(dim=1, keepdim=True)  # [H, 1, 1], the chunk mean
        grads = K.fw_grad(*weights, k, v, lr)
        buffers = [g + beta * m for g, m in zip(grads, buffers)]
        weights = [renorm_by_hand(x + u, r) for x, u, r in zip(weights, buffers, norms)]
        for j in range(3):
            torch.testing.assert_close(state.momentum[j], buffers[j], rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(state.w[j], weights[j], rtol=1e-12, atol=1e-14)


def test_muon_update_keeps_pre_orthogonalisation_momentum():
    H, D, Dh = 3, 16, 24
    w = make_weights(H, D, Dh, dtype=torch.float32)
    k, v, lr, mu = make_chunk(H, 7, D, dtype=torch.float32)
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=False)
    new = K.fw_update(state, k, v, lr, mu, use_momentum=True, use_muon=True, prenorm=False)
    grads = K.fw_grad(*w, k, v, lr)
    for j in range(3):
        torch.testing.assert_close(new.momentum[j], grads[j])
        want = renorm_by_hand(w[j] + K.newton_schulz5(grads[j]).float(), state.norms[j])
        torch.testing.assert_close(new.w[j], want)
        assert new.w[j].dtype == torch.float32


@pytest.mark.parametrize("use_momentum", [False, True])
def test_post_norm_and_pre_norm_agree_once_then_diverge(use_momentum):
    H, D, Dh = 3, 16, 24
    w = make_weights(H, D, Dh)
    chunks = [make_chunk(H, 9, D, seed=s, lr_scale=0.5) for s in (20, 21)]
    post = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=False, dtype=torch.float64)
    pre = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=True, dtype=torch.float64)
    flags = dict(use_momentum=use_momentum, use_muon=False)
    for step, (k, v, lr, mu) in enumerate(chunks):
        post = K.fw_update(post, k, v, lr, mu, prenorm=False, **flags)
        pre_main_before = pre.w_main
        pre = K.fw_update(pre, k, v, lr, mu, prenorm=True, **flags)
        max_diff = max((a - b).abs().max().item() for a, b in zip(post.w, pre.w))
        if step == 0:
            assert max_diff < 1e-12
        else:
            assert max_diff > 1e-4
        # Pre-norm accumulates the same update U un-normalised (U was computed from identical weights).
        for j in range(3):
            u = pre.w_main[j] - pre_main_before[j]
            torch.testing.assert_close(pre.w[j], renorm_by_hand(pre.w_main[j], pre.norms[j]))
            if step == 0:
                torch.testing.assert_close(post.w[j], renorm_by_hand(w[j] + u, post.norms[j]))


def newton_schulz_loop(g):
    """One matrix at a time, straight from the spec's coefficient table."""
    out = torch.empty(g.shape, dtype=torch.bfloat16)
    for i in range(g.shape[0]):
        x = g[i].to(torch.bfloat16)
        tall = x.shape[0] > x.shape[1]
        if tall:
            x = x.T
        x = x / (x.norm() + 1e-7)
        for a, b, c in NS5_COEFFS:
            # the official zeropower_via_newtonschulz5 lines, verbatim: `c * A @ A` is `(c * A) @ A`
            A = x @ x.T  # noqa: N806
            B = b * A + c * A @ A  # noqa: N806
            x = a * x + B @ x
        out[i] = x.T if tall else x
    return out


@pytest.mark.parametrize("M,N", [(24, 16), (16, 24), (32, 32)])
def test_newton_schulz5_matches_loop_and_transposes_tall(M, N):
    g = torch.randn(3, M, N, generator=torch.Generator().manual_seed(3))
    got = K.newton_schulz5(g)
    assert got.dtype == torch.bfloat16 and got.shape == g.shape
    # Identical on CPU today; bf16 batched vs single matmuls may round differently elsewhere (~1 ulp).
    torch.testing.assert_close(got.float(), newton_schulz_loop(g).float(), rtol=2e-2, atol=2e-2)
    # The official evaluation order ((c*A) @ A, not c * (A @ A)) rounds differently in bf16: same bits.
    torch.testing.assert_close(got[:1], newton_schulz_loop(g[:1]), rtol=0, atol=0)
    if M > N:
        torch.testing.assert_close(got, K.newton_schulz5(g.mT.contiguous()).mT, rtol=0, atol=0)


def test_newton_schulz5_singular_values_near_one():
    g = torch.randn(64, 64, generator=torch.Generator().manual_seed(4))
    s = torch.linalg.svdvals(K.newton_schulz5(g).float())
    assert s.min() > 0 and s.max() < 1.3
    assert s.median() > 0.5


def test_row_renorm_restores_row_norms():
    w = make_weights(3, 16, 24)[1]
    r = K.row_norms(w)
    assert r.shape == (3, 16, 1)
    drifted = 3.0 * w + 0.1 * torch.randn_like(w)
    torch.testing.assert_close(K.row_norms(K.row_renorm(drifted, r)), r, rtol=1e-4, atol=0)


def test_init_state_casts_copies_and_zeroes():
    w = make_weights(3, 16, 24, dtype=torch.bfloat16)
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=True)
    for j in range(3):
        assert state.w[j].dtype == torch.float32 and state.w_main[j].dtype == torch.float32
        assert torch.equal(state.w[j], w[j].float()) and torch.equal(state.w_main[j], w[j].float())
        assert state.w[j].data_ptr() != state.w_main[j].data_ptr()
        assert state.norms[j].shape == (*w[j].shape[:2], 1)
    off = K.init_fast_weight_state(*w, use_momentum=False, prenorm=False)
    assert off.momentum is None and off.w_main is None
    assert state.nbytes() == 4 * sum(3 * t.numel() + t.shape[0] * t.shape[1] for t in w)


@pytest.mark.parametrize("use_momentum,use_muon,prenorm", [(True, True, True), (False, False, False)])
def test_fw_update_does_not_mutate_inputs(use_momentum, use_muon, prenorm):
    H, D, Dh = 3, 16, 24
    w = make_weights(H, D, Dh, dtype=torch.float32)
    k, v, lr, mu = make_chunk(H, 7, D, dtype=torch.bfloat16)
    flags = dict(use_momentum=use_momentum, use_muon=use_muon, prenorm=prenorm)
    state = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm)
    # Non-zero momentum so an in-place "+=" on the buffers would show.
    state = K.fw_update(state, k, v, lr, mu, **flags)
    before, inputs = state.clone(), [t.clone() for t in (k, v, lr, mu)]
    new = K.fw_update(state, k, v, lr, mu, **flags)
    for a, b in zip(state.tensors(), before.tensors()):
        assert torch.equal(a, b)
    for a, b in zip((k, v, lr, mu), inputs):
        assert torch.equal(a, b)
    assert not any(torch.equal(a, b) for a, b in zip(new.w, state.w))


def _bad_inputs():
    w = make_weights(4, 16, 24, dtype=torch.float32)
    k, v, lr, mu = make_chunk(4, 7, 16, dtype=torch.float32)
    state = K.init_fast_weight_state(*w, use_momentum=False, prenorm=False)
    upd = dict(use_momentum=False, use_muon=False, prenorm=False)
    return [
        ("lr must be [H, L, 3]", "(4, 7, 2)", lambda: K.fw_grad(*w, k, v, lr[..., :2])),
        ("v must be [H, L, D]", "(4, 6, 16)", lambda: K.fw_grad(*w, k, v[:, :6], lr)),
        ("x must be [H, L, D]", "(4, 7, 17)", lambda: K.fw_apply(*w, torch.zeros(4, 7, 17))),
        ("x must be [H, L, D]", "(7, 16)", lambda: K.fw_apply(*w, k[0])),
        ("w1 must be [H, D, Dh]", "(4, 24, 16)", lambda: K.fw_apply(w[0], w[0], w[2], k)),
        ("w0 must be [H, Dh, D]", "(24, 16)", lambda: K.fw_apply(w[0][0], w[1], w[2], k)),
        ("mu must be [H, L, 1]", "(4, 7)", lambda: K.fw_update(state, k, v, lr, mu[..., 0], **upd)),
        (
            "k must hold at least one token",
            "(4, 0, 16)",
            lambda: K.fw_update(state, k[:, :0], v, lr, mu, **upd),
        ),
        ("use_momentum=True", "", lambda: K.fw_update(state, k, v, lr, mu, **{**upd, "use_momentum": True})),
        ("row_norms must be [H, R, 1]", "(4, 23, 1)", lambda: K.row_renorm(w[0], torch.ones(4, 23, 1))),
        ("g must be [..., M, N]", "(5,)", lambda: K.newton_schulz5(torch.ones(5))),
        ("steps must be in 1..5", "6", lambda: K.newton_schulz5(w[0], steps=6)),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_validation_names_value_and_shape(case):
    prefix, shape, call = _bad_inputs()[case]
    with pytest.raises(ValueError) as err:
        call()
    assert prefix in str(err.value) and shape in str(err.value)


def test_select_backend_on_cpu():
    assert K.select_backend("cpu") == "torch"
    assert K.select_backend(torch.device("cpu"), "auto") == "torch"
    assert K.select_backend("cpu", "torch") == "torch"
    with pytest.raises(ValueError, match="bogus"):
        K.select_backend("cpu", "bogus")
    with pytest.raises(ValueError, match="triton"):
        K.select_backend("cpu", "triton")
    w = make_weights(3, 16, 24, dtype=torch.float32)
    x = torch.randn(3, 5, 16)
    with pytest.raises(ValueError, match="triton"):
        K.fw_apply(*w, x, backend="triton")
    torch.testing.assert_close(K.fw_apply(*w, x, backend="torch"), apply_einsum(*w, x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(K.fw_apply(*w, x), apply_einsum(*w, x), rtol=1e-5, atol=1e-6)
