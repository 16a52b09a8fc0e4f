"""Sliding-window attention of one query block, masked SDPA vs runtime/band_attention.py, same run.

    python -m benchmarks.bench_band [--device cuda] [--out benchmarks/results]

The streaming decoder's block at the Qwen3-VL-2B shape (16 heads of 128, W = C = 2648, a block of
W/2 = 1324 queries against its W + 1323 keys), fp32 and bf16: time per call (median of 5 after a
warm-up; synchronised on CUDA) and the largest difference between the two. Writes
band_attention_<device>.json / .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.stamp import stamp, stamp_line
from spatial_ttt_ros.runtime.band_attention import band_attention, band_supported

HEADS, HEAD_DIM, WINDOW = 16, 128, 2648


def masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The streaming decoder's form before band_attention: SDPA under the boolean band mask."""
    n, m = q.shape[1], k.shape[1]
    qi = torch.arange(m - n, m, device=q.device)[:, None]
    ki = torch.arange(m, device=q.device)[None]
    mask = ((ki <= qi) & (ki > qi - WINDOW))[None, None]
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, scale=scale)
    return out[0].transpose(0, 1).reshape(n, -1)


def band(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    return band_attention(q, k, v, WINDOW, scale)


def _timed(fn, device: torch.device) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n = WINDOW // 2
    m = WINDOW + n - 1
    scale = HEAD_DIM ** -0.5
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(HEADS, rows_, HEAD_DIM, generator=g).to(device, dtype) for rows_ in (n, m, m))
        if not band_supported(q):
            rows.append({"dtype": str(dtype), "supported": False})
            continue
        args_ = (q, k, v, scale)
        diff = (masked(*args_).float() - band(*args_).float()).abs().max().item()
        rows.append({"dtype": str(dtype), "supported": True, "masked_ms": 1000 * _timed(partial(masked, *args_), device),
                     "band_ms": 1000 * _timed(partial(band, *args_), device), "max_abs_diff": diff})
        print(json.dumps(rows[-1]), flush=True)
    result = {**stamp(" ".join(["python -m benchmarks.bench_band", *(argv if argv is not None else sys.argv[1:])]),
                      device), "heads": HEADS, "head_dim": HEAD_DIM, "window": WINDOW, "queries": n, "rows": rows}
    table = [stamp_line(result), "", f"One query block: {n} queries, {m} keys, {HEADS} heads of {HEAD_DIM}, window {WINDOW}.",
             "", "| dtype | masked SDPA ms | band (flash parts) ms | speed-up | max abs difference |",
             "|---|---:|---:|---:|---:|"]
    table += [f"| {r['dtype']} | not supported here | | | |" if not r["supported"] else
              f"| {r['dtype']} | {r['masked_ms']:.2f} | {r['band_ms']:.2f} | {r['masked_ms'] / r['band_ms']:.2f}x | "
              f"{r['max_abs_diff']:.1e} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"band_attention_{device.type}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
