"""Writes README.md beside this file from the JSON files there: `python benchmarks/results/band_ingest_h100_20261207/make_readme.py`."""
import json
import pathlib

d = pathlib.Path("benchmarks/results/band_ingest_h100_20261207")
rows = [("band_first", "band attention (943de0d as committed), first compare on the machine"),
        ("band_second", "band attention (943de0d as committed), second compare"),
        ("mask", "masked SDPA: `band_works` patched to return False (the wrapper below)")]
out = []
for name, what in rows:
    r = json.loads((d / name / "engine_compare_bf16_b32.json").read_text())
    ing, q = r["ours"]["ingest"][0], r["ours"]["query"]
    out.append(f"| {name} | {what} | {r['date']} | {ing['frames_per_s']:.1f} | {ing['peak_gib']:.2f} | "
               f"{q['count_answer_s'] * 1e3:.0f} / {q['prepared_count_answer_s'] * 1e3:.0f} | {r['peer'][0]['frames_per_s']:.1f} |")
r = json.loads((d / "mask" / "engine_compare_bf16_b32.json").read_text())
text = f"""# Window attention as flash bands vs one masked SDPA call, whole ingest on an H100

{r['device']}, torch {r['torch']}, transformers {r['transformers']}, triton {r['triton']}, commit {r['commit'][:7]}, one warm machine.
Each row one process of `python -m benchmarks.bench_engine compare --fw-precision bf16 --batch-groups 32 --frames 1024`
(the JSON's `command`); the `mask` row ran it through a wrapper that turned the band path off:

```
import runpy, sys
import spatial_ttt_ros.runtime.band_attention as b, spatial_ttt_ros.runtime.streaming as s
b.band_works = s.band_works = lambda *a, **k: False
sys.argv = ["bench_engine", *sys.argv[1:]]
runpy.run_module("benchmarks.bench_engine", run_name="__main__")
```

| row | window attention | date | ingest frames/s | peak GiB | count answer ms, cold / prepared | KV-cache peer frames/s |
|---|---|---|---:|---:|---:|---:|
""" + "\n".join(out) + """

Generated from the JSON files beside this one by `make_readme.py`. Per block the bands also lost (`../band_attention_cuda.md`); so `band_works` now keeps the mask
off the CPU, where the bands win 1.31x per block (`../band_attention_cpu.md`).
"""
(d / "README.md").write_text(text)
print(text)
