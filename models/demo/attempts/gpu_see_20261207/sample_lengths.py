"""How long the demo model's training samples are, per task: renders SCENES training scenes (seeds
0..SCENES-1, as tools/demo_gpu.sh's data phase does) into a temporary directory and writes
sample_lengths.json beside this file (tokens of the whole sample, bytes of the answer; 24 samples per
task and clip length). From the repo root, with the package importable:
`PYTHONPATH=. python models/demo/attempts/gpu_see_20261207/sample_lengths.py`"""
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

import torch

from benchmarks.stamp import stamp
from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.model import build_model
from spatial_ttt_ros.runtime.tokens import ChatLayout
from spatial_ttt_ros.train.dataset import build_source

SCENES, SAMPLES = 4, 24
here = pathlib.Path(__file__).parent
config = load_config("demo")
_, tokenizer = build_model(config, torch.device("cpu"))
layout = ChatLayout.from_tokenizer(tokenizer, config.system_prompt)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "spatial_ttt_ros.train.demo_data", "--seeds", f"0:{SCENES}", "--out", tmp,
                    "--preset", "demo", "--frames", "480", "--stride", "5", "--tour", "oneway", "--workers", "2"],
                   check=True)
    rows = []
    for max_frames in (96, 32):
        for task in ("qa", "summary", "describe"):
            data = {"shards": [f"{tmp}/*"], "max_frames": max_frames,
                    "stages": [{"name": task, "steps": 1, "mix": {task: 1.0}}]}
            source = build_source(data, config, tokenizer, layout, seed=0)
            samples = [source.sample(i, 0) for i in range(SAMPLES)]
            tokens = [int(s.input_ids.numel()) for s in samples]
            answer = [len(s.meta["answer"].encode()) for s in samples]
            rows.append({"max_frames": max_frames, "task": task, "tokens_mean": statistics.mean(tokens),
                         "tokens_max": max(tokens), "answer_bytes_mean": statistics.mean(answer),
                         "answer_bytes_max": max(answer)})
            print(rows[-1])
result = {**stamp("PYTHONPATH=. python models/demo/attempts/gpu_see_20261207/sample_lengths.py", "cpu"),
          "scenes": SCENES, "samples_per_row": SAMPLES, "rows": rows}
(here / "sample_lengths.json").write_text(json.dumps(result, indent=2) + "\n")
