"""GPU: streaming ingest and query latency of the engine vs stock Qwen3-VL-2B on the whole video.

    python -m benchmarks.bench_engine --out benchmarks/results

Uses the real Qwen3-VL-2B architecture (its dimensions, REFERENCE_SPEC §1.1) built locally with
random weights: quality is irrelevant for speed and memory. Frames are 352x480.
1. Streaming ingest: frames/s and peak GPU memory while pushing N frames (N = 128 ... 2048).
2. Baseline: stock HF Qwen3VLForConditionalGeneration (full causal attention, SDPA), one forward
   (prefill only, a lower bound of "re-run the video + question") over the same frames, until OOM.
3. Query latency with 1024 frames in memory (count question, 16 new tokens) vs the baseline's
   prefill at 1024 frames.
TFLOPs are counted, not measured: 2 * (non-embedding decoder parameters) per token, plus attention
4 * d * (keys attended) per token per layer (full causal: N/2 on average; SWA: min(W, N)), plus the
fast weights 18 * D * Dh per token per fast head per TTT layer (spec §10.4); the vision tower is
excluded from both sides (it is identical).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.tokens import patchify_pair

QWEN3_VL_2B_TEXT = {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                    "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
                    "mrope_section": [24, 20, 20], "tie_word_embeddings": True}
QWEN3_VL_2B_VISION = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                      "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]}
QUESTION = "These are frames of a video.\nHow many chair(s) are in this room?\nPlease answer the question using a single word or phrase."


def decoder_flops(n_tokens: int, *, params: int, layers: int, d: int, keys_per_token: float,
                  ttt_layers: int = 0, fw_per_token: int = 0) -> float:
    return n_tokens * (2 * params + 4 * d * keys_per_token * layers + ttt_layers * fw_per_token)


def gpu_peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def bench_ingest(engine: StreamingEngine, frames: list[np.ndarray], counts: list[int],
                 query_frames: int = 1024) -> tuple[list[dict], dict]:
    rows, query = [], {}
    for n in counts:
        engine.reset()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for i in range(n):
            engine.push_frame(frames[i % len(frames)], i / 16.0)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        parts = engine.counters.bytes_by_part
        rows.append({"frames": n, "seconds": elapsed, "frames_per_s": n / elapsed, "peak_gib": gpu_peak_gib(),
                     "tokens": engine.counters.tokens, "chunk_updates": engine.counters.updates,
                     "ttt_state_mib": sum(v for k, v in parts.items() if k != "anchor_kv") / 2**20,
                     "anchor_kv_mib": parts["anchor_kv"] / 2**20})
        print(json.dumps(rows[-1]), flush=True)
        if n == query_frames:
            engine.ask(QUESTION, max_new_tokens=2)  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            answer = engine.ask(QUESTION, max_new_tokens=16)
            torch.cuda.synchronize()
            query = {"frames": n, "seconds": time.perf_counter() - t0, "prefill_s": answer.prefill_s,
                     "new_tokens": len(answer.token_ids)}
            print(json.dumps({"query": query}), flush=True)
    return rows, query


def bench_baseline(config: object, frames: list[np.ndarray], counts: list[int], dtype: torch.dtype) -> list[dict]:
    from transformers import Qwen3VLForConditionalGeneration

    from spatial_ttt_ros.runtime.model import tiny_qwen3_vl_config

    hf_config = tiny_qwen3_vl_config(config)
    hf_config._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration(hf_config).to(dtype).eval()
    pairs = [patchify_pair(np.stack([frames[(2 * g) % len(frames)], frames[(2 * g + 1) % len(frames)]]))[0]
             for g in range(len(frames) // 2)]
    rows = []
    for n in counts:
        groups = n // 2
        gh, gw = config.frame_height // 16, config.frame_width // 16
        per_group = gh * gw // 4
        ids = [1] * 20
        for _ in range(groups):
            ids += [2] * 6 + [hf_config.vision_start_token_id] + [hf_config.video_token_id] * per_group
            ids += [hf_config.vision_end_token_id]
        ids += [3] * 40
        input_ids = torch.tensor([ids], device="cuda")
        token_type = (input_ids == hf_config.video_token_id).int() * 2
        pixels = torch.cat([pairs[g % len(pairs)] for g in range(groups)]).to("cuda", dtype)
        grid = torch.tensor([[groups, gh, gw]], device="cuda")
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():
                start = time.perf_counter()
                model(input_ids=input_ids, pixel_values_videos=pixels, video_grid_thw=grid, mm_token_type_ids=token_type,
                      logits_to_keep=1, use_cache=True)
                torch.cuda.synchronize()
            rows.append({"frames": n, "tokens": len(ids), "seconds": time.perf_counter() - start,
                         "peak_gib": gpu_peak_gib()})
        except torch.OutOfMemoryError:
            rows.append({"frames": n, "tokens": len(ids), "oom": True})
            print(json.dumps(rows[-1]), flush=True)
            break
        print(json.dumps(rows[-1]), flush=True)
    del model
    torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--baseline", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--fw-precision", choices=("fp32", "bf16"), default="fp32",
                        help="fast-weight activations: fp32 = reference numerics, bf16 = fast route")
    parser.add_argument("--batch-groups", type=int, default=1,
                        help="ingest_batch_groups: frame pairs fed to the decoder together")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_engine needs a CUDA GPU", file=sys.stderr)
        return 2
    config = load_config("spatial_ttt_2b", backbone="tiny", name="qwen3_vl_2b_random", tiny_text=QWEN3_VL_2B_TEXT,
                         tiny_vision=QWEN3_VL_2B_VISION, dtype="bfloat16", fw_precision=args.fw_precision,
                         ingest_batch_groups=args.batch_groups)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (config.frame_height, config.frame_width, 3), dtype=np.uint8) for _ in range(64)]
    engine = StreamingEngine.from_preset("spatial_ttt_2b", device="cuda", overrides={
        k: getattr(config, k) for k in ("backbone", "name", "tiny_text", "tiny_vision", "dtype", "fw_precision",
                                      "ingest_batch_groups")})
    ingest, query = bench_ingest(engine, frames, args.frames)
    engine.close()
    del engine
    baseline = [] if args.skip_baseline else bench_baseline(config, frames, args.baseline, torch.bfloat16)

    d, layers, ttt = 2048, 28, len(config.ttt_layers)
    params = layers * (2 * d * d + 2 * d * 1024 + 3 * d * 6144)  # q, o: d*d; k, v: d*1024; MLP: 3*d*6144
    fw = 4 * 18 * 512 * 512
    flops = []
    for row in ingest:
        n = row["tokens"]
        ours = decoder_flops(n, params=params, layers=ttt, d=d, keys_per_token=min(config.window_size, n),
                             ttt_layers=ttt, fw_per_token=fw) + decoder_flops(n, params=0, layers=layers - ttt, d=d,
                                                                               keys_per_token=n / 2)
        full = decoder_flops(n, params=params, layers=layers, d=d, keys_per_token=n / 2)
        flops.append({"frames": row["frames"], "tokens": n, "spatial_ttt_tflop": ours / 1e12, "full_attention_tflop": full / 1e12})
    result = {"command": " ".join(["python -m benchmarks.bench_engine", *(argv if argv is not None else sys.argv[1:])]),
              "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
              "python": platform.python_version(), "frame": f"{config.frame_height}x{config.frame_width}",
              "kernel_backend": config.kernel_backend, "fw_precision": config.fw_precision,
              "ingest_batch_groups": config.ingest_batch_groups, "ingest": ingest, "query_1024": query, "baseline": baseline,
              "flops_formula": __doc__.split("TFLOPs are counted")[1].strip(), "flops": flops}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"engine_{config.fw_precision}_b{config.ingest_batch_groups}.json").write_text(json.dumps(result, indent=2) + "\n")
    base = {r["frames"]: r for r in baseline}
    lines = [f"Engine ({config.fw_precision} fast weights, {config.ingest_batch_groups} frame pairs per decoder pass) vs stock Qwen3-VL-2B (random weights), {result['gpu']}, torch {torch.__version__}, "
             f"transformers {transformers.__version__}, `{result['command']}`", "",
             "| frames | ingest frames/s | peak GiB (ours) | TTT state MiB | anchor KV MiB | baseline prefill s | baseline peak GiB |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in ingest:
        b = base.get(r["frames"], {})
        bs = "OOM" if b.get("oom") else (f"{b['seconds']:.2f}" if b else "-")
        bp = "OOM" if b.get("oom") else (f"{b['peak_gib']:.1f}" if b else "-")
        lines.append(f"| {r['frames']} | {r['frames_per_s']:.1f} | {r['peak_gib']:.1f} | {r['ttt_state_mib']:.0f} | "
                     f"{r['anchor_kv_mib']:.0f} | {bs} | {bp} |")
    if query:
        lines += ["", f"Query at 1024 frames (16 new tokens): {query['seconds'] * 1000:.0f} ms "
                      f"(prefill {query['prefill_s'] * 1000:.0f} ms)"]
    (out / f"engine_{config.fw_precision}_b{config.ingest_batch_groups}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
