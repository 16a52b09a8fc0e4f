"""Micro benchmark of the fast-weight kernels: one chunk of one TTT layer, apply + update.

Run on a GPU machine from the repository root:

    python benchmarks/bench_kernels.py [--out-dir benchmarks/results] [--chunk 2648] [--heads 4] [--dim 512]

Per chunk (C tokens, H heads of width D = Dh) it times fw_apply on the queries plus fw_update on
the keys/values, for
  * torch_fp32           the PyTorch reference in fp32, tf32 off: the official inference numerics;
  * torch_bf16_autocast  the same code under bf16 autocast: the official training numerics;
  * triton_bf16          Triton kernels, bf16 GEMM inputs, fp32 accumulation and fp32 state;
  * triton_fp32          Triton backend, fp32 tokens, default route: cuBLAS fp32 GEMMs (the
                         reference's numerics) plus the fused update step;
  * triton_fp32_ieee     Triton kernels with exact fp32 products (fp32_dot="ieee");
  * triton_fp32_tf32x3   Triton kernels with three tf32 products per product (fp32_dot="tf32x3");
in the released inference configuration (momentum, no Muon, post-norm) and the training one
(momentum, Muon, pre-norm). FLOPs: 18 * D * Dh per token and head for apply + update directions
(spec 10.4), plus 3 * H * 5 * (4 m^2 n + 2 m^3) for Newton-Schulz with Muon. It also times the parts,
sweeps a few tilings of the two hot Triton kernels, and measures every path's error against float64.
Writes kernels.json and kernels.md into --out-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stamp import stamp  # noqa: E402

BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense bf16, SXM datasheets
MODES = {  # path -> (token dtype, backend, autocast, fp32 dot precision)
    "torch_fp32": (torch.float32, "torch", False, None),
    "torch_bf16_autocast": (torch.bfloat16, "torch", True, None),
    "triton_bf16": (torch.bfloat16, "triton", False, None),
    "triton_fp32": (torch.float32, "triton", False, "cublas"),
    "triton_fp32_ieee": (torch.float32, "triton", False, "ieee"),
    "triton_fp32_tf32x3": (torch.float32, "triton", False, "tf32x3"),
}
CONFIGS = {  # (use_momentum, use_muon, prenorm)
    "inference": (True, False, False),
    "training": (True, True, True),
}


def bench(fn: Callable[[], object]) -> float:
    """Median milliseconds of fn over ~200 ms after warm-up (CUDA events, triton.testing.do_bench)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=50, rep=200, return_mode="median"))


def bench_graph(fn: Callable[[], object]) -> float:
    """Median milliseconds of replaying fn captured in a CUDA graph: GPU time without launch overhead."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # compile, fit configs, warm the allocator outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return bench(graph.replay)


def profile_kernels(fn: Callable[[], object], reps: int = 5) -> list[tuple[str, float]]:
    """GPU time per kernel name (ms per call), largest first, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        if t > 0:
            rows.append((e.key[:90], t / 1e3 / reps))
    return sorted(rows, key=lambda r: -r[1])[:14]


def make_inputs(H, L, D, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    # learned parameters are bf16; the state is their fp32 copy
    w = tuple((torch.randn(H, D, D, generator=gen, device="cuda") / D**0.5).to(torch.bfloat16) for _ in range(3))
    q = F.normalize(F.silu(torch.randn(H, L, D, generator=gen, device="cuda")), dim=-1).to(torch.bfloat16)
    k = F.normalize(F.silu(torch.randn(H, L, D, generator=gen, device="cuda")), dim=-1).to(torch.bfloat16)
    v = F.silu(torch.randn(H, L, D, generator=gen, device="cuda")).to(torch.bfloat16)
    lr = 2e-3 * torch.rand(H, L, 3, generator=gen, device="cuda")  # softplus(.) ~ 1e-3 at initialisation
    mu = torch.sigmoid(torch.randn(H, L, 1, generator=gen, device="cuda"))
    return w, q, k, v, lr, mu


class Precision:
    """Context for one path: autocast on or off; its fp32_dot (an argument of the ops) and whether
    the path's states carry bf16 copies of their weights (bf16 tokens on the Triton backend)."""

    def __init__(self, mode):
        self.dtype, self.backend, self.autocast, fp32_dot = MODES[mode]
        self.fp32_dot = fp32_dot or "cublas"
        self.keep_bf16 = self.backend == "triton" and self.dtype == torch.bfloat16

    def __enter__(self):
        self._ac = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False)
        self._ac.__enter__()
        return self

    def __exit__(self, *exc):
        self._ac.__exit__(*exc)


def steady_state(state, p):
    """In a stream every state comes from the previous Triton update, which also wrote its bf16 copies
    (FastWeightState.w_low) when the path's GEMMs run in bf16: the benchmark's reused state gets them."""
    if not p.keep_bf16:
        return state
    return dataclasses.replace(state, w_low=tuple(t.to(torch.bfloat16) for t in state.w))


def chunk_step(K, state, q, k, v, lr, mu, backend, flags, p=None):
    """What a TTT layer does per chunk: apply the current state to the queries, then update it."""
    kw = {} if p is None else dict(fp32_dot=p.fp32_dot)
    o = K.fw_apply(*state.w, q, backend=backend, bf16_weights=state.w_low, **kw)
    keep = {} if p is None else dict(keep_bf16_weights=p.keep_bf16)
    return o, K.fw_update(state, k, v, lr, mu, backend=backend, **flags, **kw, **keep)


def rel(got, want):
    return float((got.double() - want.double()).norm() / want.double().norm())


REPEATS = 3  # eager timings are host-bound and vary between machines: interleave and keep the spread


def time_chunks(K, inputs, modes, H, L, D):
    w, q, k, v, lr, mu = inputs
    flops_fw = 18 * D * D * L * H
    flops_ns = 3 * H * 5 * (4 * D**3 + 2 * D**3)
    out = {}
    for cfg, (use_momentum, use_muon, prenorm) in CONFIGS.items():
        flags = dict(use_momentum=use_momentum, use_muon=use_muon, prenorm=prenorm)
        state = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm)
        # one update first, so the momentum buffers are non-zero as in steady state
        state = K.fw_update(state, k.float(), v.float(), lr, mu, backend="torch", **flags)
        flops = flops_fw + (flops_ns if use_muon else 0)
        steps, runs, graph = {}, {mode: [] for mode in modes}, {}
        for mode in modes:
            with Precision(mode) as p:
                qm, km, vm = (t.to(p.dtype) for t in (q, k, v))
                steps[mode] = functools.partial(chunk_step, K, steady_state(state, p), qm, km, vm, lr, mu, p.backend,
                                                flags, p)
                try:
                    graph[mode] = bench_graph(steps[mode])
                except Exception as e:  # noqa: BLE001  (a path that cannot be captured is a result)
                    print(f"[{cfg}] {mode}: CUDA graph capture failed: {e!r}", flush=True)
                    graph[mode] = float("nan")
        for _ in range(REPEATS):
            for mode in modes:
                with Precision(mode):
                    runs[mode].append(bench(steps[mode]))
        rows = {}
        for mode in modes:
            ms = sorted(runs[mode])[len(runs[mode]) // 2]
            rows[mode] = {"ms": ms, "ms_runs": runs[mode], "tflops": flops / ms / 1e9,
                          "graph_ms": graph[mode], "graph_tflops": flops / graph[mode] / 1e9}  # fmt: skip
        base, base_graph = rows["torch_fp32"]["ms"], rows["torch_fp32"]["graph_ms"]
        for r in rows.values():
            r["speedup_vs_torch_fp32"] = base / r["ms"]
            r["speedup_range"] = (min(rows["torch_fp32"]["ms_runs"]) / max(r["ms_runs"]),
                                  max(rows["torch_fp32"]["ms_runs"]) / min(r["ms_runs"]))  # fmt: skip
            r["graph_speedup_vs_torch_fp32_graph"] = base_graph / r["graph_ms"]
        out[cfg] = {"flops": flops, "paths": rows}
        print(f"[{cfg}] " + "  ".join(f"{m}={r['ms']:.3f}/{r['graph_ms']:.3f}ms" for m, r in rows.items()), flush=True)
    return out


def profile_paths(K, inputs):
    """Per-kernel GPU time of one inference-config chunk for the fp32 reference and the Triton bf16 path."""
    w, q, k, v, lr, mu = inputs
    flags = dict(use_momentum=True, use_muon=False, prenorm=False)
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=False)
    out = {}
    for mode in ("torch_fp32", "triton_bf16"):
        with Precision(mode) as p:
            qm, km, vm = (t.to(p.dtype) for t in (q, k, v))
            out[mode] = profile_kernels(
                functools.partial(chunk_step, K, steady_state(state, p), qm, km, vm, lr, mu, p.backend, flags, p)
            )
        print(f"  profile {mode}: " + "; ".join(f"{n} {t:.3f}" for n, t in out[mode]), flush=True)
    return out


def time_parts(K, inputs, modes):
    from spatial_ttt_ros.kernels.newton_schulz import naive as ns_naive
    from spatial_ttt_ros.kernels.newton_schulz import triton as ns_triton

    w, q, k, v, lr, mu = inputs
    state = K.init_fast_weight_state(*w, use_momentum=True, prenorm=False)
    dw = K.fw_grad(*state.w, k.float(), v.float(), lr, backend="torch")
    beta = mu.mean(dim=1, keepdim=True)
    parts = {}
    for mode in modes:
        with Precision(mode) as p:
            qm, km, vm = (t.to(p.dtype) for t in (q, k, v))
            # steady state: the bf16 copies of the weights exist (written by the previous update)
            st = steady_state(state, p)
            parts[f"fw_apply/{mode}"] = bench(lambda p=p, qm=qm, st=st: K.fw_apply(
                *st.w, qm, backend=p.backend, bf16_weights=st.w_low, fp32_dot=p.fp32_dot))
            parts[f"fw_grad/{mode}"] = bench(lambda p=p, km=km, vm=vm, st=st: K.fw_grad(
                *st.w, km, vm, lr, backend=p.backend, bf16_weights=st.w_low, fp32_dot=p.fp32_dot))
    from spatial_ttt_ros.kernels.state_update import naive as upd_naive
    from spatial_ttt_ros.kernels.state_update import triton as upd_triton

    for name, mod in (("torch", upd_naive), ("triton", upd_triton)):
        parts[f"momentum+renorm/{name}"] = bench(
            lambda mod=mod: mod.update_weights(state.w, None, state.momentum, state.norms, dw, beta, use_muon=False)
        )
    stacked = torch.stack(dw)  # [3, H, D, D]: the batch the Triton update hands to Newton-Schulz
    for name, fn in (
        ("torch_reference", ns_naive.newton_schulz5),
        ("triton", ns_triton.newton_schulz5_triton),
        ("cublas", ns_triton.newton_schulz5_cublas),
    ):
        parts[f"newton_schulz5[3xHxDxD]/{name}"] = bench(lambda fn=fn: fn(stacked))
        parts[f"newton_schulz5[HxDxD]/{name}"] = bench(lambda fn=fn: fn(dw[0]))
    for k_, ms in parts.items():
        print(f"  {k_:45s} {ms:8.3f} ms", flush=True)
    return parts


def sweep_tilings(K, inputs):
    """Time fw_grad / fw_apply (bf16, CUDA-graph replay) with alternative tilings of the hot kernels."""
    from spatial_ttt_ros.kernels import triton_common
    from spatial_ttt_ros.kernels.swiglu_fw import triton as sw

    w, q, k, v, lr, mu = inputs
    ws = tuple(t.float() for t in w)
    cands = {
        ("bf16", True): [(64, 128, 64, 8, 3), (128, 64, 64, 8, 3), (64, 64, 64, 4, 3), (64, 128, 32, 4, 4),
                         (128, 128, 64, 8, 2)],  # fmt: skip
        ("bf16", False): [(128, 128, 64, 8, 3), (64, 128, 64, 4, 3), (128, 64, 64, 4, 3), (64, 256, 64, 8, 3)],
    }
    bmm_cands = [(64, 128, 64, 4, 4), (128, 128, 64, 8, 3), (128, 64, 64, 4, 4), (64, 64, 64, 4, 4),
                 (128, 256, 64, 8, 3)]  # fmt: skip
    out = {}
    saved = dict(sw.HIDDEN_CONFIGS)
    saved_bmm = dict(triton_common.BMM_CONFIGS)
    try:
        for key, cs in cands.items():
            for c in cs:
                sw.HIDDEN_CONFIGS[key] = (c,)
                triton_common._FITTED.clear()
                fn = (lambda: K.fw_grad(*ws, k, v, lr, backend="triton")) if key[1] else (
                    lambda: K.fw_apply(*ws, q, backend="triton"))  # fmt: skip
                name = f"hidden[{'grad' if key[1] else 'apply'}]{c}"
                try:
                    out[name] = bench_graph(fn)
                except Exception as e:  # noqa: BLE001  (a tiling that does not fit is a result)
                    out[name] = f"failed: {type(e).__name__}"
            sw.HIDDEN_CONFIGS[key] = saved[key]
        for c in bmm_cands:
            triton_common.BMM_CONFIGS["bf16_small"] = (c,)
            triton_common.BMM_CONFIGS["bf16_large"] = (c,)
            triton_common._FITTED.clear()
            name = f"bmm[fw_grad+fw_apply]{c}"
            try:
                out[name] = bench_graph(lambda: (K.fw_grad(*ws, k, v, lr, backend="triton"),
                                                 K.fw_apply(*ws, q, backend="triton")))  # fmt: skip
            except Exception as e:  # noqa: BLE001
                out[name] = f"failed: {type(e).__name__}"
    finally:
        sw.HIDDEN_CONFIGS.update(saved)
        triton_common.BMM_CONFIGS.update(saved_bmm)
        triton_common._FITTED.clear()
    for k_, ms in out.items():
        print(f"  {k_:45s} {ms if isinstance(ms, str) else f'{ms:8.3f} ms'}", flush=True)
    return out


def accuracy(K, inputs, modes):
    """Relative Frobenius errors against float64, per path, of one chunk in both configurations."""
    from spatial_ttt_ros.kernels.newton_schulz import naive as ns_naive
    from spatial_ttt_ros.kernels.newton_schulz import triton as ns_triton

    w, q, k, v, lr, mu = inputs
    out = {}
    for cfg, (use_momentum, use_muon, prenorm) in CONFIGS.items():
        flags = dict(use_momentum=use_momentum, use_muon=use_muon, prenorm=prenorm)
        s64 = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm, dtype=torch.float64)
        s32 = K.init_fast_weight_state(*w, use_momentum=use_momentum, prenorm=prenorm)
        o64, n64 = chunk_step(K, s64, q.double(), k.double(), v.double(), lr, mu, "torch", flags)
        dw64 = K.fw_grad(*s64.w, k.double(), v.double(), lr, backend="torch")
        out[cfg] = {}
        for mode in modes:
            with Precision(mode) as p:
                qm, km, vm = (t.to(p.dtype) for t in (q, k, v))
                o, new = chunk_step(K, s32, qm, km, vm, lr, mu, p.backend, flags, p)
                dw = K.fw_grad(*s32.w, km, vm, lr, backend=p.backend, fp32_dot=p.fp32_dot)
            out[cfg][mode] = {
                "apply_out": rel(o, o64),
                **{f"dW{j}": rel(dw[j], dw64[j]) for j in range(3)},
                **{f"w{j}_movement": rel(new.w[j] - s32.w[j], n64.w[j] - s64.w[j]) for j in range(3)},
            }
    g = torch.randn(12, 512, 512, device="cuda")
    x = g.double() / (g.double().norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in ns_naive.NS5_COEFFS:
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    out["newton_schulz5_vs_float64"] = {
        "torch_reference": rel(ns_naive.newton_schulz5(g), x),
        "triton": rel(ns_triton.newton_schulz5_triton(g), x),
        "cublas": rel(ns_triton.newton_schulz5_cublas(g), x),
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


def launch_overhead_us(K, n=300):
    """Host microseconds per call on tiny tensors (GPU work negligible): a torch add, fw_apply and the
    fused update step through the Triton backend. The eager per-chunk time is roughly their sum."""
    import time

    from spatial_ttt_ros.kernels.state_update import triton as upd

    w = tuple(torch.randn(1, 16, 16, device="cuda") for _ in range(3))
    x = torch.randn(1, 16, 16, device="cuda", dtype=torch.bfloat16)
    norms = tuple(t.norm(dim=-1, keepdim=True) for t in w)
    calls = {
        "torch_add": lambda: w[0] + w[1],
        "fw_apply_triton_bf16": lambda: K.fw_apply(*w, x, backend="triton"),
        "update_step_triton": lambda: upd.update_weights(w, None, None, norms, w, None, use_muon=False),
    }
    out = {}
    for name, fn in calls.items():
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t0) / n * 1e6
    print("  host us per call: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items()), flush=True)
    return out


def peak_bf16():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = bench(lambda: a @ b)
    return 2 * 8192**3 / ms / 1e9


def write_markdown(path, res):
    m = res["meta"]
    lines = [
        "# Fast-weight kernels: one chunk of one TTT layer",
        "",
        f"GPU {m['gpu']}, torch {m['torch']}, triton {m['triton']}, CUDA {m['cuda']}; {m['date']}.",
        f"Command: `{m['command']}`",
        "",
        f"Chunk C = {m['chunk']} tokens, {m['heads']} heads x {m['dim']} (D = Dh). Time = median of "
        "`triton.testing.do_bench` for fw_apply(queries) + fw_update(keys, values), called from Python "
        "as the engine does ('ms / chunk', launch overhead included) and replayed from a CUDA graph "
        "('CUDA graph ms', GPU time only). The eager times of the fast paths are bound by the host's "
        "Python and launch overhead and vary between machines; the graph times do not.",
        "FLOPs = 18 * D * Dh * C * H (apply + update directions, spec 10.4)"
        " + 3 * H * 5 * 6 * D^3 with Muon (Newton-Schulz).",
        f"bf16 peak: datasheet {m['bf16_peak_tflops_datasheet']} TFLOP/s, measured cuBLAS 8192^3 "
        f"{m['bf16_peak_tflops_measured']:.0f} TFLOP/s; '% peak' uses the measured one.",
        "",
    ]
    for cfg, r in res["per_chunk"].items():
        flags = dict(zip(("momentum", "muon", "prenorm"), CONFIGS[cfg]))
        lines += [f"## {cfg} ({', '.join(f'{k}={v}' for k, v in flags.items())}; {r['flops'] / 1e9:.1f} GFLOP)", "",
                  f"| path | ms / chunk (median of {REPEATS}; min-max) | TFLOP/s | % bf16 peak "
                  "| speed-up vs torch_fp32 (range) | CUDA graph ms | graph TFLOP/s | graph % peak | graph speed-up |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for mode, p in r["paths"].items():
            pct = 100 * p["tflops"] / m["bf16_peak_tflops_measured"]
            gpct = 100 * p["graph_tflops"] / m["bf16_peak_tflops_measured"]
            lo, hi = p["speedup_range"]
            lines.append(f"| {mode} | {p['ms']:.3f} ({min(p['ms_runs']):.3f}-{max(p['ms_runs']):.3f}) "
                         f"| {p['tflops']:.1f} | {pct:.1f} | {p['speedup_vs_torch_fp32']:.2f}x ({lo:.2f}-{hi:.2f}) "
                         f"| {p['graph_ms']:.3f} | {p['graph_tflops']:.1f} | {gpct:.1f} "
                         f"| {p['graph_speedup_vs_torch_fp32_graph']:.2f}x |")  # fmt: skip
        lines.append("")
    lines += ["## Parts (ms)", "", "| part | ms |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["parts"].items()]
    lines += ["", "## GPU time per kernel, inference chunk (torch.profiler, ms per chunk)", ""]
    for mode, rows in res["profile"].items():
        lines += [f"{mode}: total {sum(t for _, t in rows):.3f} ms in the top {len(rows)} kernels", "",
                  "| kernel | ms |", "|---|---:|"]  # fmt: skip
        lines += [f"| `{n}` | {t:.3f} |" for n, t in rows] + [""]
    lines += ["Host time per call on tiny tensors (us): "
              + ", ".join(f"{k} {v:.1f}" for k, v in res["host_us_per_call"].items()), ""]
    lines += ["", "## Tilings of the hot Triton kernels, bf16 (CUDA-graph ms)", "", "| tiling (BL/BM, BN, BK, warps, stages) | ms |",
              "|---|---:|"]  # fmt: skip
    lines += [f"| {k} | {v if isinstance(v, str) else f'{v:.3f}'} |" for k, v in res["sweep"].items()]
    lines += ["", "## Relative error vs float64 (inference config unless named)", "",
              "| config / path | apply out | dW0 | dW1 | dW2 | W0 movement | W1 movement | W2 movement |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for cfg in CONFIGS:
        for mode, e in res["accuracy"][cfg].items():
            cols = ["apply_out", "dW0", "dW1", "dW2", "w0_movement", "w1_movement", "w2_movement"]
            lines.append(f"| {cfg} / {mode} | " + " | ".join(f"{e[c]:.1e}" for c in cols) + " |")
    ns = res["accuracy"]["newton_schulz5_vs_float64"]
    lines += ["", "Newton-Schulz (12 x 512 x 512) vs float64: " + ", ".join(f"{k} {v:.2e}" for k, v in ns.items()), ""]
    path.write_text("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--chunk", type=int, default=2648)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()

    import triton

    from spatial_ttt_ros import kernels as K

    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is true fp32
    torch.backends.cudnn.allow_tf32 = False
    H, L, D = args.heads, args.chunk, args.dim
    inputs = make_inputs(H, L, D)
    gpu = torch.cuda.get_device_name()
    peak_sheet = next((v for n, v in BF16_PEAK_TFLOPS.items() if n in gpu), None)
    res = {
        "meta": {
            **stamp("python " + " ".join(shlex.quote(a) for a in sys.argv), "cuda"),
            "triton": triton.__version__,
            "cuda": torch.version.cuda,
            "chunk": L,
            "heads": H,
            "dim": D,
            "bf16_peak_tflops_datasheet": peak_sheet,
            "bf16_peak_tflops_measured": peak_bf16(),
        }
    }
    print(json.dumps(res["meta"]), flush=True)
    modes = list(MODES)
    res["per_chunk"] = time_chunks(K, inputs, modes, H, L, D)
    res["parts"] = time_parts(K, inputs, modes)
    res["profile"] = profile_paths(K, inputs)
    res["host_us_per_call"] = launch_overhead_us(K)
    res["sweep"] = {} if args.skip_sweep else sweep_tilings(K, inputs)
    res["accuracy"] = accuracy(K, inputs, modes)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels.json").write_text(json.dumps(res, indent=2))
    write_markdown(out / "kernels.md", res)
    print((out / "kernels.md").read_text())


if __name__ == "__main__":
    main()
