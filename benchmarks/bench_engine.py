"""GPU: streaming ingest, memory and query latency of the engine vs the stock Qwen3-VL-2B peers.

    python -m benchmarks.bench_engine ingest --batch-groups 8 --out benchmarks/results    # ~2 min
    python -m benchmarks.bench_engine baseline --out benchmarks/results                   # ~1.5 min
    python -m benchmarks.bench_engine compare --fw-precision bf16 --batch-groups 32 --frames 1024 4096
    python -m benchmarks.plot                                                             # on any machine

Uses the real Qwen3-VL-2B architecture (its dimensions, REFERENCE_SPEC §1.1) built locally with
random weights: quality is irrelevant for speed and memory. Frames are 352x480.
* ingest: frames/s sustained and peak GPU memory while pushing N frames (N = 128 ... 4096) into a
  fresh engine, and the TTT-layer / anchor-KV bytes after them. At `--query-at` frames (1024) it
  also times a count question: time to the first answer token (finishing the conv wavefront on a
  fork + question prefill), decode per token, and a whole count answer of 3 new tokens, cold and
  after `engine.prepare()` (what the node's worker runs when idle) (Qwen's
  tokenizer writes numbers digit by digit: up to two digits + the end token; random weights never
  stop early, so every answer has exactly the tokens asked for).
* baseline: stock HF Qwen3VLForConditionalGeneration (full causal attention, SDPA), one forward
  over the same frames + question (prefill only: a lower bound of re-running the video for a
  question), until it runs out of memory.
* compare: in one process, at each of `--frames`, our engine (ingest, peak memory with and without
  questions, count answer cold and prepared), the fair peer (benchmarks/kv_peer.py: stock
  Qwen3-VL-2B streamed into its KV cache with `--batch-groups` pairs per pass, the count answer from
  the cache, cropped back after each) and the one-pass baseline; ratios against both peers.
Every phase warms up before it is timed; every result is stamped (benchmarks/stamp.py).
TFLOPs are counted, not measured: 2 * (non-embedding decoder parameters) per token, plus attention
4 * d * (keys attended) per token per layer (full causal: N/2 on average; SWA: min(W, N)), plus the
fast weights 18 * D * Dh per token per fast head per TTT layer (spec §10.4); the vision tower is
excluded from both sides (it is identical).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.kv_peer import KVCachePeer
from benchmarks.stamp import stamp, stamp_line, write_result
from spatial_ttt_ros.runtime.config import SpatialTTTConfig, load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.runtime.model import tiny_qwen3_vl_config
from spatial_ttt_ros.runtime.tokens import ChatLayout, build_byte_tokenizer, patchify_pair

QWEN3_VL_2B_TEXT = {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                    "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
                    "mrope_section": [24, 20, 20], "tie_word_embeddings": True}
QWEN3_VL_2B_VISION = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                      "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]}
QUESTION = "These are frames of a video.\nHow many chair(s) are in this room?\nPlease answer the question using a single word or phrase."
COUNT_ANSWER_TOKENS = 3
DEVICE = "cuda"  # every part runs here (a CPU smoke run of the code paths may point it elsewhere)
FRAMES = [128, 256, 512, 1024, 2048, 4096]


def decoder_flops(n_tokens: int, *, params: int, layers: int, d: int, keys_per_token: float,
                  ttt_layers: int = 0, fw_per_token: int = 0) -> float:
    return n_tokens * (2 * params + 4 * d * keys_per_token * layers + ttt_layers * fw_per_token)


def counted_tflop(config: SpatialTTTConfig, tokens: int) -> dict[str, float]:
    """Decoder TFLOP of the hybrid stack and of full attention over `tokens` (formula: module doc)."""
    d, layers, ttt = 2048, 28, len(config.ttt_layers)
    params = layers * (2 * d * d + 2 * d * 1024 + 3 * d * 6144)  # q, o: d*d; k, v: d*1024; MLP: 3*d*6144
    fw = 4 * 18 * 512 * 512
    anchor = decoder_flops(tokens, params=0, layers=layers - ttt, d=d, keys_per_token=tokens / 2)
    ours = decoder_flops(tokens, params=params, layers=ttt, d=d, keys_per_token=min(config.window_size, tokens),
                         ttt_layers=ttt, fw_per_token=fw) + anchor
    full = decoder_flops(tokens, params=params, layers=layers, d=d, keys_per_token=tokens / 2)
    return {"spatial_ttt_tflop": ours / 1e12, "full_attention_tflop": full / 1e12, "anchor_attention_tflop": anchor / 1e12}


def gpu_peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def bench_config(args: argparse.Namespace) -> SpatialTTTConfig:
    return load_config("spatial_ttt_2b", backbone="tiny", name="qwen3_vl_2b_random", tiny_text=QWEN3_VL_2B_TEXT,
                       tiny_vision=QWEN3_VL_2B_VISION, dtype="bfloat16", fw_precision=args.fw_precision,
                       ingest_batch_groups=args.batch_groups)


def test_frames(config: SpatialTTTConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (config.frame_height, config.frame_width, 3), dtype=np.uint8) for _ in range(64)]


def time_query(engine: StreamingEngine) -> dict:
    """Count question against the memory, cold (the ask finishes the held-back frame groups itself)
    and prepared (engine.prepare() ran first, as the node's worker does when idle): first token,
    decode rate, whole count answer (medians of 3); prepared also with the question pass eager (the
    default before the question graph), in the same run."""
    def timed(runs: int = 3) -> tuple[float, float, str]:
        total, first = [], []
        for _ in range(runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            answer = engine.ask(QUESTION, max_new_tokens=COUNT_ANSWER_TOKENS)
            torch.cuda.synchronize()
            total.append(time.perf_counter() - t0)
            first.append(answer.prefill_s)
        return statistics.median(total), statistics.median(first), answer.question_path

    engine.ask(QUESTION, max_new_tokens=2)  # warm-up
    cold_total, cold_first, question_path = timed()
    long = engine.ask(QUESTION, max_new_tokens=16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    engine.prepare()
    torch.cuda.synchronize()
    prepare_s = time.perf_counter() - t0
    warm_total, warm_first, _ = timed()
    row = {"frames": engine.frames_in_memory, "pending_frames": len(engine.state.pending_frames),
           "count_answer_tokens": COUNT_ANSWER_TOKENS, "count_answer_s": cold_total, "first_token_s": cold_first,
           "question_path": question_path,
           "decode_ms_per_token": 1000 * long.decode_s / (len(long.token_ids) - 1), "decode_path": long.decode_path,
           "prepare_s": prepare_s,
           "prepared_count_answer_s": warm_total, "prepared_first_token_s": warm_first}
    static = engine._static
    if static is not None and question_path != "eager":
        buckets, static.question_buckets = static.question_buckets, ()
        engine.ask(QUESTION, max_new_tokens=2)  # warm-up of the eager question
        row["eager_question_count_answer_s"], row["eager_question_first_token_s"], _ = timed()
        static.question_buckets = buckets
    return row


def warm_engine(config: SpatialTTTConfig, frames: list[np.ndarray], device: str, **overrides: object) -> StreamingEngine:
    """The benchmark's engine (the spatial_ttt_2b preset at `config`'s shape and settings, plus
    `overrides`) after a warm-up (CUDA/cuBLAS set-up, Triton compiles, a question); the caller resets it."""
    engine = StreamingEngine.from_preset("spatial_ttt_2b", device=device, overrides={
        **{k: getattr(config, k) for k in ("backbone", "name", "tiny_text", "tiny_vision", "dtype", "fw_precision",
                                           "ingest_batch_groups")}, **overrides})
    for i in range(4 * config.ingest_batch_groups + 2):
        engine.push_frame(frames[i % len(frames)], i / 16.0)
    engine.ask(QUESTION, max_new_tokens=2)
    return engine


def run_ingest(args: argparse.Namespace, config: SpatialTTTConfig, query_frames: tuple[int, ...] = ()) -> dict:
    frames = test_frames(config)
    engine = warm_engine(config, frames, DEVICE)
    rows, queries = [], []
    query_frames = query_frames or (args.query_at,)
    for n in args.frames:
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
                     "ttt_state_mib": sum(v for k, v in parts.items() if k not in ("anchor_kv", "frame_buffer")) / 2**20,
                     "anchor_kv_mib": parts["anchor_kv"] / 2**20, **counted_tflop(config, engine.counters.tokens)})
        print(json.dumps(rows[-1]), flush=True)
        if n in query_frames:
            queries.append(time_query(engine))
            rows[-1]["peak_after_questions_gib"] = gpu_peak_gib()
            print(json.dumps({"query": queries[-1]}), flush=True)
    engine.close()
    return {"ingest": rows, "query": queries[0] if queries else {}, "queries": queries}


def stock_model(config: SpatialTTTConfig) -> tuple[torch.nn.Module, object]:
    """Stock HF Qwen3VLForConditionalGeneration of the config's shape (random weights, bf16, SDPA) on
    the GPU, and the byte tokenizer of the same vocabulary."""
    from transformers import Qwen3VLForConditionalGeneration

    hf_config = tiny_qwen3_vl_config(config)
    hf_config._attn_implementation = "sdpa"
    with torch.device(DEVICE):
        model = Qwen3VLForConditionalGeneration(hf_config).to(torch.bfloat16).eval()
    return model, build_byte_tokenizer(hf_config.text_config.vocab_size)


def run_peer(args: argparse.Namespace, config: SpatialTTTConfig) -> list[dict]:
    """The fair peer (benchmarks/kv_peer.py) over the same frames: ingest rate, peak memory, count
    answer from the cache (medians of 3; the cache is cropped back after each)."""
    model, tokenizer = stock_model(config)
    layout = ChatLayout.from_tokenizer(tokenizer, config.system_prompt)
    question = tokenizer.encode(QUESTION, add_special_tokens=False)
    frames = test_frames(config)

    def new_peer() -> KVCachePeer:
        return KVCachePeer(model, tokenizer, layout, (config.frame_height, config.frame_width), args.batch_groups)

    peer = new_peer()
    for i in range(2 * args.batch_groups + 2):  # warm-up: cuBLAS/SDPA set-up, a pass, a question
        peer.push_frame(frames[i % len(frames)], i / 16.0)
    peer.ask(question, 2)

    def timed(peer: KVCachePeer, max_new: int) -> float:
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            peer.ask(question, max_new)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    rows = []
    for n in args.frames:
        peer = None
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        peer = new_peer()
        start = time.perf_counter()
        for i in range(n):
            peer.push_frame(frames[i % len(frames)], i / 16.0)
        peer.flush()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        row = {"frames": n, "tokens": len(peer.ids), "seconds": elapsed, "frames_per_s": n / elapsed,
               "peak_gib": gpu_peak_gib(), "kv_cache_gib": sum(t.numel() * t.element_size() for layer in peer.cache.layers
                                                               for t in (layer.keys, layer.values)) / 2**30}
        row["first_token_s"] = timed(peer, 1)
        row["count_answer_s"] = timed(peer, COUNT_ANSWER_TOKENS)
        row["count_answer_tokens"] = COUNT_ANSWER_TOKENS
        row["peak_after_questions_gib"] = gpu_peak_gib()
        rows.append(row)
        print(json.dumps({"peer": row}), flush=True)
    peer = model = None
    gc.collect()
    torch.cuda.empty_cache()
    return rows


def run_baseline(args: argparse.Namespace, config: SpatialTTTConfig) -> dict:
    frames = test_frames(config)
    dtype = torch.bfloat16
    model, _ = stock_model(config)
    hf_config = model.config
    pairs = [patchify_pair(np.stack([frames[(2 * g) % len(frames)], frames[(2 * g + 1) % len(frames)]]))[0]
             for g in range(len(frames) // 2)]
    gh, gw = config.frame_height // 16, config.frame_width // 16
    per_group = gh * gw // 4
    rows = []
    for n in [FRAMES[0], *args.frames]:  # the first run warms up (cuBLAS/SDPA set-up), not recorded
        groups = n // 2
        ids = [1] * 20
        for _ in range(groups):
            ids += [2] * 6 + [hf_config.vision_start_token_id] + [hf_config.video_token_id] * per_group
            ids += [hf_config.vision_end_token_id]
        ids += [3] * 40
        input_ids = torch.tensor([ids], device=DEVICE)
        token_type = (input_ids == hf_config.video_token_id).int() * 2
        pixels = torch.cat([pairs[g % len(pairs)] for g in range(groups)]).to(DEVICE, dtype)
        grid = torch.tensor([[groups, gh, gw]], device=DEVICE)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():
                start = time.perf_counter()
                model(input_ids=input_ids, pixel_values_videos=pixels, video_grid_thw=grid, mm_token_type_ids=token_type,
                      logits_to_keep=1, use_cache=True)
                torch.cuda.synchronize()
            row = {"frames": n, "tokens": len(ids), "seconds": time.perf_counter() - start, "peak_gib": gpu_peak_gib(),
                   **counted_tflop(config, len(ids))}
        except torch.OutOfMemoryError:
            row = {"frames": n, "tokens": len(ids), "oom": True}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if row.get("oom") and len(rows) > 1:
            break
    del model
    torch.cuda.empty_cache()
    return {"baseline": rows[1:]}


def write(out: Path, stem: str, result: dict, table: list[str]) -> None:
    write_result(out, stem, result, [stamp_line(result), "", *table])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("ingest", "baseline", "compare"))
    parser.add_argument("--frames", type=int, nargs="+", default=FRAMES)
    parser.add_argument("--fw-precision", choices=("fp32", "bf16"), default="fp32",
                        help="fast-weight activations: fp32 = reference numerics, bf16 = fast route")
    parser.add_argument("--batch-groups", type=int, default=8,
                        help="ingest_batch_groups: frame pairs fed to the decoder together")
    parser.add_argument("--query-at", type=int, default=1024, help="time a count question at this many frames")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_engine needs a CUDA GPU", file=sys.stderr)
        return 2
    config = bench_config(args)
    meta = {**stamp(" ".join(["python -m benchmarks.bench_engine", *(argv if argv is not None else sys.argv[1:])]), "cuda"),
            "frame": f"{config.frame_height}x{config.frame_width}", "flops_formula": __doc__.split("TFLOPs are counted")[1].strip()}
    if args.part == "compare":
        from benchmarks.compare_table import compare_table

        result = {**meta, "kernel_backend": config.kernel_backend, "fw_precision": config.fw_precision,
                  "ingest_batch_groups": config.ingest_batch_groups, "decode_graph": config.decode_graph,
                  "ours": run_ingest(args, config, tuple(args.frames)), "peer": run_peer(args, config),
                  **run_baseline(args, config)}
        write(Path(args.out), f"engine_compare_{config.fw_precision}_b{config.ingest_batch_groups}", result,
              compare_table(result))
        return 0
    if args.part == "baseline":
        result = {**meta, **run_baseline(args, config)}
        table = ["| frames | tokens | prefill s | peak GiB | decoder TFLOP (counted) |", "|---:|---:|---:|---:|---:|"]
        table += [f"| {r['frames']} | {r['tokens']:,} | OOM | OOM | |" if r.get("oom") else
                  f"| {r['frames']} | {r['tokens']:,} | {r['seconds']:.2f} | {r['peak_gib']:.1f} | {r['full_attention_tflop']:.0f} |"
                  for r in result["baseline"]]
        write(Path(args.out), "engine_baseline", result, table)
        return 0
    result = {**meta, "kernel_backend": config.kernel_backend, "fw_precision": config.fw_precision,
              "ingest_batch_groups": config.ingest_batch_groups, **run_ingest(args, config)}
    table = [f"{config.fw_precision} fast weights, {config.ingest_batch_groups} frame pairs per decoder pass", "",
             "| frames | tokens | ingest frames/s | peak GiB | TTT-layer state MiB | anchor KV MiB | decoder TFLOP (counted) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['frames']} | {r['tokens']:,} | {r['frames_per_s']:.1f} | {r['peak_gib']:.1f} | {r['ttt_state_mib']:.0f} | "
              f"{r['anchor_kv_mib']:.0f} | {r['spatial_ttt_tflop']:.0f} |" for r in result["ingest"]]
    q = result["query"]
    if q:
        table += ["", f"Count question at {q['frames']} frames: first token {1000 * q['first_token_s']:.0f} ms, "
                      f"decode {q['decode_ms_per_token']:.1f} ms/token, whole answer ({q['count_answer_tokens']} tokens) "
                      f"{1000 * q['count_answer_s']:.0f} ms; after prepare() ({1000 * q['prepare_s']:.0f} ms, idle time): "
                      f"first token {1000 * q['prepared_first_token_s']:.0f} ms, whole answer "
                      f"{1000 * q['prepared_count_answer_s']:.0f} ms"]
    write(Path(args.out), f"engine_ingest_{config.fw_precision}_b{config.ingest_batch_groups}", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
