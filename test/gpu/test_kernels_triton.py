"""Triton fast-weight kernels vs the PyTorch reference: outputs and final states, NaN-poisoned outputs.

Every comparison is against the reference run in float64 on the same (already rounded) inputs, as a
relative Frobenius error ||got - ref|| / ||ref||. Tolerances per tensor and precision mode:

* fp32 modes (fp32 tokens; GEMMs through cuBLAS fp32 = the default, or Triton with exact "ieee"
  or "tf32x3" products): sums of <= 2648 fp32 products with fp32 accumulation land near 1e-6;
  2e-5 leaves room for the longest chunk and still catches a plain tf32 product (~3e-4) or a
  wrong index (O(1)).
* bf16 mode (bf16 tokens): GEMM inputs are rounded to bf16 (2^-9 relative per element) and the
  gated hidden quantities are stored in bf16 before the second GEMM: about 3e-3 expected, 2e-2
  bound (a missing term or tile is O(1)).
* Updated states move by a small fraction of the weights, so they are judged on the movement:
  ||got - ref|| <= tol * ||ref - W_init|| + 1e-6 * ||ref||, the second term being a few fp32 ulps
  of the state itself (the fp32 state cannot be closer to a float64 one than its own rounding).
* Muon: Newton-Schulz is bf16 in every backend and rounds differently in each (all scale the Gram
  matrix first, as the official (c A) A; the Triton epilogue then rounds P = (c A) A + b A once, the
  reference three times more). The quintic multiplies small singular
  values by ~490 over five steps, so for a rank-deficient update (L < D; L = 1 is rank one) the
  output's near-null space is amplified rounding noise, different for every implementation. Hence:
  Newton-Schulz itself is tested on full-rank inputs against a float64 iteration (no further than
  1.5x the reference's own distance); the fused update step against the reference step given the
  same directions and the same Newton-Schulz (tight); end-to-end Muon updates with one Newton-Schulz
  on both sides in fp32 mode for every L, each step from the same (reference) state: fp32 and float64
  directions round to bf16 differently in a few hundred elements, which moves Newton-Schulz's output
  by up to ~4e-2 for L = 63-100 (measured on the CPU), so 0.1; chaining two Muon updates would compare two
  independent noise patterns from the second step on. In bf16 mode the directions carry ~3e-3 of
  error relative to their dominant (token-mean) component, a large fraction of the small bulk
  singular values that Muon scales up to ~1: the bf16-mode Muon update is judged against the
  official bf16 autocast path (no more than 1.5x its distance to float64), at L = 2648.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from spatial_ttt_ros import kernels as K  # noqa: E402
from spatial_ttt_ros.kernels import triton_common  # noqa: E402
from spatial_ttt_ros.kernels.newton_schulz import naive as ns_naive  # noqa: E402
from spatial_ttt_ros.kernels.newton_schulz import triton as ns_triton  # noqa: E402

DEV = torch.device("cuda")
LENGTHS = [1, 63, 100, 2648]
HEADS = [3, 4, 5]
MODES = ["fp32", "fp32_ieee", "fp32_tf32x3", "bf16"]  # fp32 = the default fp32 route (cuBLAS GEMMs)
TOL = {"fp32": 2e-5, "fp32_ieee": 2e-5, "fp32_tf32x3": 2e-5, "bf16": 2e-2, "muon": 0.1}
TOKEN_DTYPE = {"fp32": torch.float32, "fp32_ieee": torch.float32, "fp32_tf32x3": torch.float32,
               "bf16": torch.bfloat16}  # fmt: skip


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every kernel output starts as NaN, so an unwritten element fails the comparison."""
    monkeypatch.setenv(triton_common.POISON_ENV, "1")
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture
def mode(request):
    """Token precision, and for fp32 tokens the GEMM route (the ops' fp32_dot argument: see dot())."""
    return request.param


def dot(mode):
    """The fp32_dot argument of a precision mode: "fp32_ieee" -> "ieee"; "fp32" and "bf16" the default."""
    return mode.removeprefix("fp32_") if mode.startswith("fp32_") else "cublas"


def make_weights(H, D=512, Dh=512, seed=0):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    w0 = torch.randn(H, Dh, D, generator=gen, device=DEV) / D**0.5
    w1 = torch.randn(H, D, Dh, generator=gen, device=DEV) / Dh**0.5
    w2 = torch.randn(H, Dh, D, generator=gen, device=DEV) / D**0.5
    return w0, w1, w2


def make_chunk(H, L, D=512, dtype=torch.float32, seed=1, lr_scale=0.02):
    """Keys/values shaped like the TTT branch's (silu; keys L2-normalised), per-token lr and mu."""
    gen = torch.Generator(device=DEV).manual_seed(seed)
    k = F.normalize(F.silu(torch.randn(H, L, D, generator=gen, device=DEV)), dim=-1).to(dtype)
    v = F.silu(torch.randn(H, L, D, generator=gen, device=DEV)).to(dtype)
    lr = lr_scale * torch.rand(H, L, 3, generator=gen, device=DEV)
    mu = torch.sigmoid(torch.randn(H, L, 1, generator=gen, device=DEV))
    return k, v, lr, mu


def rel_err(got, want):
    assert got.shape == want.shape
    assert torch.isfinite(got).all(), "non-finite values (an unwritten NaN-poisoned element?)"
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def f64(ts):
    return tuple(t.double() for t in ts)


def assert_moved_like(got, want, w_init, tol, name):
    """The state moved from w_init like the reference did (see the module docstring)."""
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    err = (got.double() - want).norm().item()
    bound = tol * (want - w_init.double()).norm().item() + 1e-6 * want.norm().item()
    assert err <= bound, f"{name}: error {err:.3e} > bound {bound:.3e}"


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("H", HEADS)
def test_fw_apply_matches_reference(H, L, mode):
    w = make_weights(H, seed=H)
    x, *_ = make_chunk(H, L, dtype=TOKEN_DTYPE[mode], seed=L)
    got = K.fw_apply(*w, x, backend="triton")
    assert got.dtype == torch.float32
    want = K.fw_apply(*f64(w), x.double(), backend="torch")
    assert rel_err(got, want) < TOL[mode]


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("H", HEADS)
def test_fw_grad_matches_reference(H, L, mode):
    w = make_weights(H, seed=H)
    k, v, lr, _ = make_chunk(H, L, dtype=TOKEN_DTYPE[mode], seed=L)
    got = K.fw_grad(*w, k, v, lr, backend="triton", fp32_dot=dot(mode))
    want = K.fw_grad(*f64(w), k.double(), v.double(), lr, backend="torch")
    for j in range(3):
        assert got[j].dtype == torch.float32 and got[j].is_contiguous()
        assert rel_err(got[j], want[j]) < TOL[mode], f"dW{j}"


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_non_square_and_ragged_shapes(mode):
    """D, Dh and L that are no multiple of any tile: masks on every axis, Newton-Schulz per matrix."""
    H, L, D, Dh = 3, 37, 80, 48
    w = make_weights(H, D, Dh)
    k, v, lr, mu = make_chunk(H, L, D, dtype=TOKEN_DTYPE[mode])
    want = K.fw_apply(*f64(w), k.double(), backend="torch")
    assert rel_err(K.fw_apply(*w, k, backend="triton", fp32_dot=dot(mode)), want) < TOL[mode]
    want = K.fw_grad(*f64(w), k.double(), v.double(), lr, backend="torch")
    for got, ref in zip(K.fw_grad(*w, k, v, lr, backend="triton", fp32_dot=dot(mode)), want):
        assert rel_err(got, ref) < TOL[mode]
    flags = dict(use_momentum=True, use_muon=False, prenorm=True)
    got = K.fw_update(K.init_fast_weight_state(*w, use_momentum=True, prenorm=True), k, v, lr, mu,
                      backend="triton", fp32_dot=dot(mode), **flags)  # fmt: skip
    want = K.fw_update(K.init_fast_weight_state(*w, use_momentum=True, prenorm=True, dtype=torch.float64),
                       k.double(), v.double(), lr, mu, backend="torch", **flags)  # fmt: skip
    for j in range(3):
        assert rel_err(got.momentum[j], want.momentum[j]) < TOL[mode]
        assert_moved_like(got.w[j], want.w[j], w[j], TOL[mode], f"w{j}")
        assert_moved_like(got.w_main[j], want.w_main[j], w[j], TOL[mode], f"w_main{j}")


@pytest.fixture
def shared_newton_schulz(monkeypatch):
    """The reference path orthogonalises with the Triton backend's Newton-Schulz too (module docstring)."""
    from spatial_ttt_ros.kernels import ops

    monkeypatch.setitem(ops._NEWTON_SCHULZ5, "torch", ns_triton.newton_schulz5)


def cast_state(state, dtype):
    def cast(group):
        return None if group is None else tuple(t.to(dtype) for t in group)

    return K.FastWeightState(cast(state.w), cast(state.w_main), cast(state.momentum), cast(state.norms))


def run_two_chunks(H, L, flags, mode, resync=False):
    """Two updates (momentum and the pre-norm accumulator carry over) on both backends.

    Returns the reference state the last update started from (float64), and both results. With
    resync the Triton update of chunk 2 starts from the reference's state after chunk 1 (see the
    module docstring on Muon); without, each backend carries its own state.
    """
    use_momentum, use_muon, prenorm = flags
    kw = dict(use_momentum=use_momentum, use_muon=use_muon, prenorm=prenorm)
    w = make_weights(H, seed=H)
    got = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm)
    want = start = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm, dtype=torch.float64)
    for step in range(2):
        k, v, lr, mu = make_chunk(H, L, dtype=TOKEN_DTYPE[mode], seed=10 * L + step)
        if resync:
            start, got = want, cast_state(want, torch.float32)
        # bf16 mode: the state carries the bf16 copies the update writes into the next chunk
        got = K.fw_update(got, k, v, lr, mu, backend="triton", fp32_dot=dot(mode),
                          keep_bf16_weights=mode == "bf16", **kw)
        want = K.fw_update(want, k.double(), v.double(), lr, mu, backend="torch", **kw)
    return start, got, want


def check_states(start, got, want, tol_w, tol_m):
    for j in range(3):
        assert got.w[j].dtype == torch.float32
        assert_moved_like(got.w[j], want.w[j], start.w[j], tol_w, f"w{j}")
        torch.testing.assert_close(K.row_norms(got.w[j]), got.norms[j], rtol=1e-4, atol=1e-6)
        if want.w_main is not None:
            assert_moved_like(got.w_main[j], want.w_main[j], start.w_main[j], tol_w, f"w_main{j}")
        if want.momentum is not None:
            assert rel_err(got.momentum[j], want.momentum[j]) < tol_m, f"momentum{j}"
    assert (got.w_main is None) == (want.w_main is None)
    assert (got.momentum is None) == (want.momentum is None)


@pytest.mark.parametrize("mode", ["fp32", "fp32_ieee", "bf16"], indirect=True)
@pytest.mark.parametrize("flags", [(True, False, False), (False, False, True), (True, False, True)],
                         ids=["inference-mom-postnorm", "prenorm", "mom-prenorm"])  # fmt: skip
@pytest.mark.parametrize("H,L", [(3, 1), (5, 63), (4, 100), (3, 2648)])
def test_fw_update_two_chunks_matches_reference(H, L, flags, mode):
    check_states(*run_two_chunks(H, L, flags, mode), TOL[mode], TOL[mode])


MUON_FLAGS = [(True, True, True), (False, True, False)]
MUON_IDS = ["training", "muon-postnorm"]


@pytest.mark.parametrize("flags", MUON_FLAGS, ids=MUON_IDS)
@pytest.mark.parametrize("H,L", [(3, 1), (5, 63), (4, 100), (3, 2648)])
def test_fw_update_with_muon_matches_reference(H, L, flags, shared_newton_schulz):
    # The momentum buffer is pre-Muon: fp32 tolerance. The weights carry Newton-Schulz's sensitivity.
    check_states(*run_two_chunks(H, L, flags, "fp32", resync=True), TOL["muon"], TOL["fp32"])


@pytest.mark.parametrize("flags", MUON_FLAGS, ids=MUON_IDS)
def test_fw_update_with_muon_bf16_no_worse_than_autocast(flags, shared_newton_schulz):
    """One chunk from the initial state: bf16-mode Triton vs the bf16-autocast reference, both vs float64."""
    H, L = 4, 2648
    use_momentum, _, prenorm = flags
    kw = dict(use_momentum=use_momentum, use_muon=True, prenorm=prenorm)
    w = make_weights(H)
    k, v, lr, mu = make_chunk(H, L, dtype=torch.bfloat16)
    init = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm)
    got = K.fw_update(init, k, v, lr, mu, backend="triton", **kw)
    want = K.fw_update(cast_state(init, torch.float64), k.double(), v.double(), lr, mu, backend="torch", **kw)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        official = K.fw_update(init, k, v, lr, mu, backend="torch", **kw)
    for j in range(3):
        moved = (want.w[j] - w[j].double()).norm()
        ours = ((got.w[j].double() - want.w[j]).norm() / moved).item()
        theirs = ((official.w[j].double() - want.w[j]).norm() / moved).item()
        assert torch.isfinite(got.w[j]).all() and ours <= 1.5 * theirs + 1e-3, f"w{j}: {ours:.3e} vs {theirs:.3e}"


@pytest.mark.parametrize("use_muon", [False, True])
@pytest.mark.parametrize("prenorm", [False, True])
@pytest.mark.parametrize("use_momentum", [False, True])
@pytest.mark.parametrize("H,D,Dh", [(5, 512, 512), (3, 80, 48)])
def test_fused_update_step_matches_reference_step(H, D, Dh, use_momentum, prenorm, use_muon, shared_newton_schulz):
    """Steps 2-4 alone, from identical fp32 directions: only fp32 rounding order differs (1e-5)."""
    from spatial_ttt_ros.kernels.state_update import naive as upd_naive
    from spatial_ttt_ros.kernels.state_update import triton as upd_triton

    w = make_weights(H, D, Dh)
    gen = torch.Generator(device=DEV).manual_seed(7)
    dw = tuple(0.05 * torch.randn(t.shape, generator=gen, device=DEV) for t in w)
    mom = tuple(0.05 * torch.randn(t.shape, generator=gen, device=DEV) for t in w) if use_momentum else None
    main = tuple(1.1 * t for t in w) if prenorm else None
    norms = tuple(K.row_norms(t) for t in w)
    beta = torch.rand(H, 1, 1, generator=gen, device=DEV) if use_momentum else None
    args = (w, main, mom, norms, dw, beta)
    got = upd_triton.update_weights(*args, use_muon=use_muon, backend="triton")
    want = upd_naive.update_weights(*args, use_muon=use_muon, backend="torch")
    base = main if prenorm else w
    for group, (g, r) in enumerate(zip(got, want)):
        assert (g is None) == (r is None)
        for j in range(3 if g is not None else 0):
            assert g[j].dtype == r[j].dtype and g[j].shape == r[j].shape
            assert_moved_like(g[j], r[j].double(), mom[j] if group == 2 else base[j], 1e-5, f"group{group}[{j}]")


def newton_schulz_float64(g):
    x = g.double()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in ns_naive.NS5_COEFFS:
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if tall else x


@pytest.mark.parametrize("impl", ["triton", "cublas"])
@pytest.mark.parametrize("shape", [(4, 512, 512), (12, 512, 512), (3, 96, 64), (5, 64, 96), (2, 3, 40, 24)])
def test_newton_schulz5_matches_reference(shape, impl):
    g = torch.randn(shape, device=DEV)
    fn = ns_triton.newton_schulz5_triton if impl == "triton" else ns_triton.newton_schulz5_cublas
    got = fn(g)
    assert got.dtype == torch.bfloat16 and got.shape == g.shape
    # Both are bf16 throughout and differ by rounding only: measure both against float64.
    exact = newton_schulz_float64(g)
    assert rel_err(got, exact) <= 1.5 * rel_err(ns_naive.newton_schulz5(g), exact) + 1e-3
    s = torch.linalg.svdvals(got.float())
    assert s.min() > 0 and s.max() < 1.3


def test_auto_picks_triton_on_cuda_and_float64_falls_back():
    assert K.select_backend(DEV) == "triton"
    w = make_weights(3, 64, 96)
    x, *_ = make_chunk(3, 17, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(K.fw_apply(*w, x), K.fw_apply(*w, x, backend="triton"), rtol=0, atol=0)
    w64 = f64(w)
    torch.testing.assert_close(K.fw_apply(*w64, x, backend="triton"), K.fw_apply(*w64, x, backend="torch"),
                               rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("keep", [True, False])
def test_update_writes_the_bf16_copies_the_next_apply_uses(keep):
    """keep_bf16_weights: the state the update returns carries w rounded to bf16 (every element
    written: outputs are NaN-poisoned), and apply/grad given them equal apply/grad that cast."""
    w = make_weights(3, 64, 96)
    k, v, lr, mu = make_chunk(3, 50, 64, dtype=torch.bfloat16)
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=True)
    new = K.fw_update(state, k, v, lr, mu, backend="triton", use_momentum=True, use_muon=False, prenorm=True,
                      keep_bf16_weights=keep)
    if not keep:
        assert new.w_low is None
        return
    for a, b in zip(new.w_low, new.w):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b.to(torch.bfloat16))
    x, *_ = make_chunk(3, 17, 64, dtype=torch.bfloat16, seed=5)
    torch.testing.assert_close(K.fw_apply(*new.w, x, backend="triton", bf16_weights=new.w_low),
                               K.fw_apply(*new.w, x, backend="triton"), rtol=0, atol=0)
    k2, v2, lr2, _ = make_chunk(3, 40, 64, dtype=torch.bfloat16, seed=6)
    for a, b in zip(K.fw_grad(*new.w, k2, v2, lr2, backend="triton", bf16_weights=new.w_low),
                    K.fw_grad(*new.w, k2, v2, lr2, backend="triton")):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_state_between_calls():
    """An apply depends on its arguments only: the same call after other layers' calls (other
    weights, other precisions) and after an in-place edit of the weights gives what a fresh call does."""
    w = make_weights(3, 64, 96)
    x, *_ = make_chunk(3, 17, 64, dtype=torch.bfloat16)
    first = K.fw_apply(*w, x, backend="triton")
    other = make_weights(3, 64, 96, seed=9)
    K.fw_apply(*other, x, backend="triton")
    K.fw_apply(*other, x.float(), backend="triton", fp32_dot="ieee")
    torch.testing.assert_close(K.fw_apply(*w, x, backend="triton"), first, rtol=0, atol=0)
    w[0].mul_(2.0)
    got = K.fw_apply(*w, x, backend="triton")
    assert rel_err(got, K.fw_apply(*f64(w), x.double(), backend="torch")) < TOL["bf16"]


def test_update_does_not_mutate_inputs():
    H, L = 3, 50
    w = make_weights(H, 64, 96)
    k, v, lr, mu = make_chunk(H, L, 64, dtype=torch.bfloat16)
    flags = dict(use_momentum=True, use_muon=False, prenorm=True)
    state = K.fw_update(K.init_fast_weight_state(*w, use_momentum=True, prenorm=True), k, v, lr, mu,
                        backend="triton", **flags)  # fmt: skip
    before = state.clone()
    K.fw_update(state, k, v, lr, mu, backend="triton", **flags)
    for a, b in zip(state.tensors(), before.tensors()):
        assert torch.equal(a, b)


def test_poisoning_is_active():
    assert torch.isnan(triton_common.new_output((2, 3), torch.bfloat16, DEV)).all()
