"""tools/demo_model_card.py: the model card of a chain of runs (each started from the previous
one's export) lists every run with its own recipes, resumes and end step, read from its files."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("demo_model_card", ROOT / "tools" / "demo_model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_dir(path: Path, losses: list[float], elapsed: list[float]) -> Path:
    path.mkdir(parents=True)
    rows = [{"step": 10 * (i + 1), "loss": loss, "step_s": 2.0, "elapsed_s": t, "stage": "qa"}
            for i, (loss, t) in enumerate(zip(losses, elapsed))]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "run.json").write_text(json.dumps({"strategy": "single", "world": 1}))
    return path


def _recipe(path: Path, init: str, steps: int) -> Path:
    path.write_text(f"preset: demo\ninit: {init!r}\nseed: 0\n"
                    "data: {shards: [s/*], max_frames: 96, stages: [{name: qa, steps: %d, mix: {qa: 1.0}}]}\n"
                    "optim: {lr: 0.001}\ntrain: {batch_size: 8}\n" % steps)
    return path


def test_a_chain_of_runs_is_listed_run_by_run(tmp_path):
    demo = tmp_path / "demo"
    (demo / "eval").mkdir(parents=True)
    save_file({"w": torch.zeros(10, 3, dtype=torch.float16)}, str(demo / "model.safetensors"))
    (demo / "eval" / "eval.json").write_text(json.dumps({"source": "200 scenes"}))
    (demo / "eval" / "eval.md").write_text("# title\n\n| task | full |\n")
    shutil.copy(ROOT / "models" / "demo.yaml", tmp_path / "demo.yaml")
    first = _run_dir(demo / "train", [3.0, 2.0, 1.5], [10.0, 20.0, 5.0])  # resumed once: elapsed restarts
    second = _run_dir(tmp_path / "second", [1.2, 0.9], [30.0, 60.0])
    r1 = _recipe(tmp_path / "r1.yaml", "", 30)
    r2 = _recipe(tmp_path / "r2.yaml", "models/demo/model.safetensors", 20)

    assert _tool().main(["--demo", str(demo), "--preset", str(tmp_path / "demo.yaml"), "--run", str(first),
                         "--recipe", str(r1), "--run", str(second), "--recipe", str(r2)]) == 0
    card = (demo / "MODEL_CARD.md").read_text()
    assert f"### Run 1 of 2 (`{first}`), from random initialisation" in card
    assert f"### Run 2 of 2 (`{second}`), from models/demo/model.safetensors" in card
    run1, run2 = card.split("### Run 1 of 2")[1].split("### Run 2 of 2")
    assert "Stretch 2: logged steps 30-30" in run1 and "Reached step 30 of 30 planned" in run1
    assert "Stretch 1: logged steps 10-20" in run2 and "Reached step 20 of 20 planned; last logged loss 0.900" in run2


def test_without_runs_the_single_run_beside_the_model_is_used(tmp_path):
    demo = tmp_path / "demo"
    (demo / "eval").mkdir(parents=True)
    save_file({"w": torch.zeros(4, dtype=torch.float16)}, str(demo / "model.safetensors"))
    (demo / "eval" / "eval.json").write_text(json.dumps({"source": "s"}))
    (demo / "eval" / "eval.md").write_text("# t\n\nbody\n")
    _run_dir(demo / "train", [2.0], [1.0])
    _tool().main(["--demo", str(demo), "--preset", str(ROOT / "models" / "demo.yaml"),
                  "--recipe", str(_recipe(tmp_path / "r.yaml", "", 10))])
    card = (demo / "MODEL_CARD.md").read_text()
    assert "### Run" not in card and "Reached step 10 of 10 planned" in card
