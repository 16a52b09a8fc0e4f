"""GPU: training throughput, peak memory and MFU at the 2B shape (random weights) through the real loop.

    python -m benchmarks.bench_train --out benchmarks/results          # ~3 min on one H100/H200

Qwen3-VL-2B's text and vision dimensions (bench_engine's QWEN3_VL_2B_TEXT / _VISION) built locally
with random weights, the trained TTT semantics (preset spatial_ttt_2b_train: Muon + pre-norm,
C = W = 2648), 128 frames at 352x480 per sample (~11k tokens), batch 1, vision frozen, AdamW with
fp32 master weights. Each configuration runs in its own process through `loop.train` (the same
code as `spatial-ttt train run`; checkpoints off): single process with bf16 autocast, and FSDP2
on one GPU (bf16 parameters, fp32 reduction), per-chunk TTT checkpointing and HF decoder-layer
checkpointing (the official run's --gradient_checkpointing) on and off.
Steps after the first (warm-up) are timed from the loop's own per-step wall clock.
MFU counts model FLOPs only (no recompute): 3 x the decoder forward (bench_engine's counted
formula: 2 x non-embedding parameters per token + attention + fast weights) + the frozen vision
tower's forward (2 x its parameters per patch), over the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_engine import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, counted_tflop
from spatial_ttt_ros.provenance import source_commit

FRAMES, H, W = 128, 352, 480
QUESTION = "How many chair(s) are in this room?"
# dense bf16 tensor-core peaks (vendor datasheets, no sparsity)
PEAK_TFLOPS = {"H200": 989.4, "H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
               "A100": 312.0}
# (strategy, per-chunk TTT checkpointing, decoder-layer checkpointing)
CONFIGS = [("single", True, True), ("single", False, True), ("single", True, False), ("fsdp2", True, True)]


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def recipe_dict(steps: int, checkpoint_chunks: bool, checkpoint_layers: bool, preset: Path) -> dict:
    return {"preset": str(preset), "seed": 0, "data": {"stages": [{"name": "qa", "steps": steps, "mix": {"qa": 1.0}}]},
            "optim": {"lr": 1e-6, "ttt_lr": 1e-5, "weight_decay": 0.01, "warmup": 0.0, "min_lr_ratio": 0.1},
            "train": {"batch_size": 1, "grad_accum": 1, "precision": "bf16", "checkpoint_chunks": checkpoint_chunks,
                      "checkpoint_layers": checkpoint_layers, "freeze_vision": True, "save_every": 10_000, "log_every": 1}}


def write_preset(path: Path, smoke: bool = False) -> Path:
    """The 2B training preset with the tiny (local, random) backbone at Qwen3-VL-2B's dimensions
    (`smoke`: the tiny preset with Muon + pre-norm, to check this script on a CPU)."""
    import yaml

    from spatial_ttt_ros.runtime.config import load_config

    if smoke:
        cfg = load_config("tiny", use_muon=True, prenorm=True)
    else:
        cfg = load_config("spatial_ttt_2b_train", backbone="tiny", name="qwen3_vl_2b_random_train",
                          tiny_text=QWEN3_VL_2B_TEXT, tiny_vision=QWEN3_VL_2B_VISION)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


class OneSample:
    """The same random sample (all frames at the config's size) for every index (drawn once)."""

    def __init__(self, config, tokenizer, layout, frames: int = FRAMES) -> None:  # noqa: ANN001
        from spatial_ttt_ros.train.samples import layout_sample

        rng = np.random.default_rng(0)
        images = list(rng.integers(0, 256, (frames, config.frame_height, config.frame_width, 3), dtype=np.uint8))
        self._sample = layout_sample(config, tokenizer, layout, images, [i / 2 for i in range(frames)], QUESTION, "3")

    def sample(self, index: int, step: int):  # noqa: ANN201
        return self._sample


def vision_tflop(tokens_visual: int) -> float:
    v = QWEN3_VL_2B_VISION
    d, mlp, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
    params = depth * (4 * d * d + 2 * d * mlp)
    patches = tokens_visual * 4  # 2x2 merge
    return 2 * params * patches / 1e12


def one(args: argparse.Namespace) -> dict:
    """One configuration in this process; prints one JSON line."""
    from spatial_ttt_ros.runtime.config import load_config
    from spatial_ttt_ros.train.loop import train
    from spatial_ttt_ros.train.progress import read_metrics
    from spatial_ttt_ros.train.recipe import parse_recipe

    out = Path(args.work) / f"{args.strategy}_chunks{args.ckpt}_layers{args.layers}"
    preset = write_preset(Path(args.work) / "preset.yaml", args.smoke)
    recipe = parse_recipe(recipe_dict(args.steps, bool(args.ckpt), bool(args.layers), preset), "bench")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    frames = 4 if args.smoke else FRAMES
    row = {"strategy": args.strategy, "checkpoint_chunks": bool(args.ckpt), "checkpoint_layers": bool(args.layers),
           "frames": frames}

    def source(config, tokenizer, layout):  # noqa: ANN001, ANN202
        return OneSample(config, tokenizer, layout, frames)

    try:
        result = train(recipe, out, strategy=args.strategy, source_factory=source, progress_bar=False,
                       checkpoints=False)
    except torch.OutOfMemoryError as exc:
        return {**row, "oom": True, "error": str(exc).splitlines()[0]}
    rows = read_metrics(out)
    timed = rows[1:]
    step_s = sorted(r["step_s"] for r in timed)[len(timed) // 2]
    tokens = rows[0]["tokens"]
    config = load_config(preset)
    visual = frames // 2 * (config.frame_height // 32) * (config.frame_width // 32)
    model_tflop = 3 * counted_tflop(config, tokens)["spatial_ttt_tflop"] + vision_tflop(visual)
    peak = peak_tflops(torch.cuda.get_device_name()) if cuda else None
    achieved = model_tflop / step_s
    row.update({"tokens": tokens, "visual_tokens": visual, "steps_timed": len(timed), "step_s_median": step_s,
                "step_s_all": [r["step_s"] for r in rows], "tokens_per_s": tokens / step_s,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
                "model_tflop_per_step": model_tflop, "achieved_tflops": achieved,
                "mfu": achieved / peak if peak else None, "losses": [r["loss"] for r in rows],
                "fsdp_layer_units": result.fsdp_layer_units})
    if args.profile:
        row["profile"] = profile_step(result.model, config, source)
    return row


def profile_step(model: torch.nn.Module, config: object, source_cls: type) -> list[dict]:
    """Top CUDA-time ops of one forward + backward (bf16 autocast, checkpointing on)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    from spatial_ttt_ros.runtime.tokens import ChatLayout, build_byte_tokenizer
    from spatial_ttt_ros.train.forward import sample_loss

    tok = build_byte_tokenizer(model.config.text_config.vocab_size)
    sample = source_cls(config, tok, ChatLayout.from_tokenizer(tok, config.system_prompt)).sample(0, 0)
    model.train()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, _ = sample_loss(model, config, [sample], checkpoint_chunks=True)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)[:20]
    total = sum(e.self_device_time_total for e in prof.key_averages())
    return [{"op": e.key[:80], "cuda_ms_total": e.device_time_total / 1e3, "self_cuda_ms": e.self_device_time_total / 1e3,
             "self_share": e.self_device_time_total / total if total else None, "calls": e.count} for e in events]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--work", default="/tmp/bench_train")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per configuration (first = warm-up)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="single")
    parser.add_argument("--ckpt", type=int, default=1)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 4 frames, CPU allowed: checks this script")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("bench_train needs a CUDA GPU", file=sys.stderr)
        return 2
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.one:
        print("BENCH_ROW " + json.dumps(one(args)), flush=True)
        return 0
    import transformers

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'cpu'})"
    result = {"command": "python -m benchmarks.bench_train " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": source_commit(), "gpu": name, "peak_bf16_tflops": peak_tflops(name), "torch": torch.__version__,
              "transformers": transformers.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "frames": FRAMES, "frame": f"{H}x{W}",
              "model": "Qwen3-VL-2B dimensions, random weights, spatial_ttt_2b_train semantics (Muon, pre-norm, C=W=2648)",
              "flops_formula": __doc__.split("MFU counts")[1].strip(), "rows": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "train_smoke" if args.smoke else "train_2b"
    for i, (strategy, ckpt, layers) in enumerate(CONFIGS):
        cmd = [sys.executable, "-m", "benchmarks.bench_train", "--one", "--strategy", strategy, "--ckpt", str(int(ckpt)),
               "--layers", str(int(layers)),
               "--steps", str(args.steps), "--work", args.work] + (["--profile"] if i == 0 else []) + (
                   ["--smoke"] if args.smoke else [])
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_ROW ")]
        row = json.loads(found[-1][len("BENCH_ROW "):]) if found else {
            "strategy": strategy, "checkpoint_chunks": ckpt, "checkpoint_layers": layers, "failed": True,
            "returncode": proc.returncode, "stderr_tail": proc.stderr[-3000:]}
        row["process_s"] = time.time() - t0
        result["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("profile",)}), flush=True)
        # written after every configuration, so a run cut short still leaves its rows
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [f"Training at the 2B shape: {result['gpu']} (bf16 peak {result['peak_bf16_tflops']} TFLOP/s), "
             f"torch {result['torch']}, transformers {result['transformers']}, commit {result['commit']}, "
             f"{result['date']}, `{result['command']}`", "",
             f"{result['model']}; {result['frames']} frames at {result['frame']}, batch 1, vision frozen, AdamW fp32 master.",
             *([f"Provenance: {result['commit_note']}."] if result.get("commit_note") else []), "", "| strategy | TTT per-chunk checkpointing | decoder-layer checkpointing | tokens | step s (median) | tokens/s | peak GiB | model TFLOP/s | MFU |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        label = (f"| {r['strategy']} | {'on' if r['checkpoint_chunks'] else 'off'} | "
                 f"{'on' if r.get('checkpoint_layers') else 'off'} |")
        if r.get("oom") or r.get("failed"):
            lines.append(f"{label} {'OOM' if r.get('oom') else 'failed'} | | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "n/a"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "n/a"
        lines.append(f"{label} {r['tokens']:,} | {r['step_s_median']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{peak} | {r['achieved_tflops']:.0f} | {mfu} |")
    prof = next((r["profile"] for r in result["rows"] if r.get("profile")), None)
    if prof:
        lines += ["", "Where the time goes (one forward + backward, single, both checkpointings on; top ops by CUDA time):", "",
                  "| op | CUDA ms (incl. children) | self CUDA ms | self share | calls |", "|---|---:|---:|---:|---:|"]
        lines += [f"| `{p['op']}` | {p['cuda_ms_total']:.1f} | {p['self_cuda_ms']:.1f} | "
                  f"{100 * (p['self_share'] or 0):.1f} % | {p['calls']} |" for p in prof]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
