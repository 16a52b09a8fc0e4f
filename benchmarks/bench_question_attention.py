"""A question's anchor attention against the whole KV cache, four ways, same run (CPU or GPU).

    python -m benchmarks.bench_question_attention [--device cuda] [--keys 27000 92600 370000]
                                                  [--queries 48 135] [--out benchmarks/results]

An anchor layer of the Qwen3-VL-2B shape (16 query heads sharing 8 KV heads of 128) attends from a
question of n tokens to every key of the cache (the last n keys are the question's own, causal):
- `repeat`: the KV cache repeated for the query heads, then SDPA (flash) with lower-right causal —
  the engine's form up to 0f67975 (fast on an H100, but 2 x the cache per call);
- `gqa`: SDPA sharing the KV heads (enable_gqa) — 4717cda;
- `engine`: what `streaming.Decoder._attend` does now (the query heads folded into rows of one
  masked call per KV head, 98aa4d1) — the eager question pass that became ~30 ms slower on an H100
  (benchmarks/results/h100_20261207_evening/README.md);
- `split`: a candidate, not used by the engine: the cache before the question in segments of
  `--segment` keys run as one batched flash call (the segments give the GPU many blocks where a few
  query rows give it few), the question's own keys causal, merged by their log-sum-exps
  (band_attention.flash_lse / merge_lse) — no copy of the cache.
Per variant: median ms of 10 calls after 2 warm-ups (synchronised on CUDA), bytes allocated on top of
the inputs (CUDA), and the largest difference from fp32 softmax attention. bf16 on CUDA, fp32 on the
CPU. Writes question_attention_<device>.json / .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from benchmarks.stamp import stamp, stamp_line, write_result
from spatial_ttt_ros.runtime.band_attention import flash_lse, merge_lse
from spatial_ttt_ros.runtime.streaming import Decoder

HQ, HKV, HEAD_DIM = 16, 8, 128


def repeat(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    rep = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=causal_lower_right(q.shape[1], k.shape[1]),
                                         scale=scale)
    return out[0].transpose(0, 1).reshape(q.shape[1], -1)


def gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=causal_lower_right(q.shape[1], k.shape[1]),
                                         scale=scale, enable_gqa=True)
    return out[0].transpose(0, 1).reshape(q.shape[1], -1)


def engine(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    # Decoder._attend reads nothing from the decoder on this path but its band-probe cache
    return Decoder._attend(SimpleNamespace(_band={}), q, k, v, k.shape[1] - q.shape[1], 0, None, scale)


def split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, segment: int = 8192) -> torch.Tensor:
    """q [Hq, n, hd] at the last n of the m positions of k/v [Hkv, m, hd] -> [n, Hq*hd]."""
    hq, n, hd = q.shape
    hkv, m = k.shape[:2]
    rep, prefix = hq // hkv, m - n
    rows = q.reshape(hkv, rep * n, hd)  # query head kv*rep + i -> rows i*n .. i*n + n - 1 of KV head kv
    parts = []
    whole = prefix // segment
    if whole:  # segments as the batch: [S, Hkv, G, hd] views of the cache
        ks = k[:, :whole * segment].reshape(hkv, whole, segment, hd).transpose(0, 1)
        vs = v[:, :whole * segment].reshape(hkv, whole, segment, hd).transpose(0, 1)
        out, lse = flash_lse(rows[None].expand(whole, -1, -1, -1).contiguous(), ks, vs, False, scale)
        parts += list(zip(out.unbind(0), lse.unbind(0)))
    if prefix > whole * segment:
        out, lse = flash_lse(rows[None], k[None, :, whole * segment:prefix], v[None, :, whole * segment:prefix], False, scale)
        parts.append((out[0], lse[0]))
    own_k, own_v = k[:, prefix:].repeat_interleave(rep, dim=0), v[:, prefix:].repeat_interleave(rep, dim=0)
    out, lse = flash_lse(q[None], own_k[None], own_v[None], True, scale)  # n x n, top-left = lower-right
    parts.append((out[0].reshape(hkv, rep * n, hd), lse[0].reshape(hkv, rep * n)))
    merged = merge_lse(parts).to(q.dtype)
    return merged.reshape(hq, n, hd).transpose(0, 1).reshape(n, hq * hd)


VARIANTS = {"repeat": repeat, "gqa": gqa, "engine": engine, "split": split}


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """fp32 softmax attention over repeated heads, lower-right causal."""
    rep, n, m = q.shape[0] // k.shape[0], q.shape[1], k.shape[1]
    k, v = k.float().repeat_interleave(rep, dim=0), v.float().repeat_interleave(rep, dim=0)
    scores = q.float() @ k.transpose(1, 2) * scale
    allowed = torch.arange(m, device=q.device)[None] <= torch.arange(m - n, m, device=q.device)[:, None]
    out = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v
    return out.transpose(0, 1).reshape(n, -1)


def measure(device: str, keys: int, queries: int, segment: int) -> dict:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(HQ, queries, HEAD_DIM, generator=g, device=device, dtype=dtype)
    k = torch.randn(HKV, keys, HEAD_DIM, generator=g, device=device, dtype=dtype)
    v = torch.randn(HKV, keys, HEAD_DIM, generator=g, device=device, dtype=dtype)
    scale = HEAD_DIM ** -0.5
    want = reference(q, k, v, scale) if keys * queries <= 135 * 100_000 else None
    cuda = device.startswith("cuda")
    row = {"keys": keys, "queries": queries}
    for name, fn in VARIANTS.items():
        call = partial(fn, q, k, v, scale, segment) if name == "split" else partial(fn, q, k, v, scale)
        try:
            got = call()
            for _ in range(2):
                call()
        except (RuntimeError, NotImplementedError) as exc:  # a kernel this torch build lacks
            row[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            continue
        times = []
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(10):
            t0 = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        row[name] = {"ms": 1000 * statistics.median(times),
                     "extra_mib": (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None,
                     "max_abs_diff": None if want is None else float((got.float() - want).abs().max())}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--keys", type=int, nargs="+", default=[27000, 92600, 370000])
    parser.add_argument("--queries", type=int, nargs="+", default=[48, 135])
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    rows = [measure(args.device, m, n, args.segment) for m in args.keys for n in args.queries]
    result = {**stamp(" ".join(["python -m benchmarks.bench_question_attention", *(argv if argv is not None else sys.argv[1:])]),
                      args.device), "segment": args.segment, "rows": rows}

    def cell(v: dict) -> str:
        if "error" in v:
            return "n/a"
        extra = "" if v["extra_mib"] is None else f", +{v['extra_mib']:.0f} MiB"
        diff = "" if v["max_abs_diff"] is None else f", diff {v['max_abs_diff']:.1e}"
        return f"{v['ms']:.2f}{extra}{diff}"

    lines = [stamp_line(result), "", "ms per call (median of 10), memory on top of the inputs, largest difference "
             "from fp32 attention:", "", "| keys | question tokens | " + " | ".join(VARIANTS) + " |",
             "|---:|---:|" + "---|" * len(VARIANTS)]
    lines += [f"| {r['keys']:,} | {r['queries']} | " + " | ".join(cell(r[v]) for v in VARIANTS) + " |" for r in rows]
    write_result(args.out, f"question_attention_{args.device.split(':')[0]}", result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
