"""Write models/demo/MODEL_CARD.md from the committed files (no number is typed by hand):
the preset (models/demo.yaml), the recipes, the training logs (metrics.jsonl + run.json of each run)
and the evaluation (models/demo/eval/eval.json + eval.md).

    python tools/demo_model_card.py [--demo models/demo] [--run models/demo/train --recipe A.yaml ...] ...

A model may come from a chain of runs, each started (`init:`) from the previous one's export: give
each run as `--run DIR` (its metrics.jsonl and run.json) followed by the `--recipe` file(s) it was
trained under, in order (several: the run was resumed under each in turn; the last one's schedule
is the one it finished). Without --run: one run, models/demo/train.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _param_count(weights: Path) -> tuple[int, int]:
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights), framework="numpy") as f:
        for k in f.keys():  # noqa: SIM118
            n = 1
            for d in f.get_slice(k).get_shape():
                n *= d
            total += n
    return total, weights.stat().st_size


def _resumes(metrics: list[dict]) -> list[str]:
    """One line per stretch of the run between resumes (elapsed_s restarts at each resume)."""
    parts: list[list[dict]] = []
    for row in metrics:
        if not parts or row["elapsed_s"] < parts[-1][-1]["elapsed_s"]:
            parts.append([])
        parts[-1].append(row)
    return [f"- Stretch {k}: logged steps {p[0]['step']}-{p[-1]['step']} in {p[-1]['elapsed_s']:.0f} s "
            f"(median {sorted(r['step_s'] for r in p)[len(p) // 2]:.2f} s/step), loss {p[0]['loss']:.3f} -> "
            f"{p[-1]['loss']:.3f} (stage {p[-1]['stage']})" for k, p in enumerate(parts, 1)]


class _RunChain(argparse.Action):
    """--run DIR starts a run; --recipe FILE belongs to the run before it (the first run is the
    default one when --recipe comes first): namespace.runs = [(run dir, [recipe paths]), ...] in order."""

    def __call__(self, parser, namespace, value, option_string=None):  # noqa: ANN001
        runs = namespace.runs
        if self.dest == "run":
            runs.append((value, []))
        else:
            if not runs:
                runs.append((namespace.demo / "train", []))
            runs[-1][1].append(value)


def _training(run_dir: Path, recipe_paths: list[Path], k: int, n_runs: int) -> list[str]:
    recipes = [yaml.safe_load(p.read_text()) for p in recipe_paths]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    last = metrics[-1] if metrics else {}
    total_steps = sum(int(s["steps"]) for s in recipes[-1]["data"]["stages"])
    init = recipes[0].get("init") or "random initialisation"
    head = [f"### Run {k} of {n_runs} (`{run_dir}`), from {init}", ""] if n_runs > 1 else []
    return [
        *head,
        *(f"- Recipe `{p}`: optim {r['optim']}, train {r['train']}." for p, r in zip(recipe_paths, recipes)),
        *_resumes(metrics),
        f"- Reached step {last.get('step', '?')} of {total_steps} planned; last logged loss "
        f"{last.get('loss', float('nan')):.3f} at stage {last.get('stage', '?')}, "
        f"{last.get('elapsed_s', float('nan')):.0f} s of training.",
        f"- Run: {json.dumps({k: run[k] for k in sorted(run) if k in ('device', 'strategy', 'world', 'torch', 'commit')})}",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("models/demo"))
    parser.add_argument("--preset", type=Path, default=Path("models/demo.yaml"))
    parser.add_argument("--run", type=Path, action=_RunChain, dest="run",
                        help="a run directory (metrics.jsonl, run.json); repeat for a chain of runs, in order")
    parser.add_argument("--recipe", type=Path, action=_RunChain, dest="recipe",
                        help="recipe(s) the preceding --run was trained under, in order (default: config/train/demo.yaml)")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended as 'Limitations and analysis'")
    parser.set_defaults(runs=[])
    args = parser.parse_args(argv)
    runs = args.runs or [(args.demo / "train", [])]
    for run_dir, recipes in runs:
        if not recipes:
            recipes.append(Path("config/train/demo.yaml"))
        if not (run_dir / "metrics.jsonl").is_file():
            raise ValueError(f"--run {run_dir}: no metrics.jsonl there")
    preset = yaml.safe_load(args.preset.read_text())
    ev = json.loads((args.demo / "eval" / "eval.json").read_text())
    n_params, size = _param_count(args.demo / "model.safetensors")
    t, v = preset["tiny_text"], preset["tiny_vision"]
    lines = [
        "# Model card: `demo` (Spatial-TTT demo model, trained from scratch on synthetic scenes)", "",
        f"Generated by `{' '.join(['python tools/demo_model_card.py', *(sys.argv[1:] if argv is None else argv)])}` "
        "from the files beside it; every number below is read "
        "from them.", "",
        "## Architecture", "",
        f"- Real HF `Qwen3VLForConditionalGeneration` through the `tiny` backbone path (models/demo.yaml): text "
        f"{t['num_hidden_layers']} layers x {t['hidden_size']} ({t['num_attention_heads']} heads x {t['head_dim']}, "
        f"{t['num_key_value_heads']} KV heads, MLP {t['intermediate_size']}), vision {v['depth']} x {v['hidden_size']} "
        f"(MLP {v['intermediate_size']}, DeepStack {v['deepstack_visual_indexes']}), byte-level tokenizer "
        f"(vocab {t['vocab_size']}).",
        f"- Spatial-TTT layers {preset['ttt_layers']} (anchors = the others), {preset['num_fw_heads']} fast-weight heads, "
        f"chunk C = {preset['chunk_size']}, window W = {preset['window_size']} tokens, SP conv on, momentum on, no Muon, "
        f"post-norm; frames {preset['frame_height']}x{preset['frame_width']}.",
        f"- {n_params / 1e6:.2f} M parameters, stored as float16 in `model.safetensors` ({size / 1e6:.1f} MB); the "
        "engine casts them to float32 on load.",
        "- CPU speed: benchmarks/results/cpu_ingest_demo.md (`python -m benchmarks.cpu_ingest --preset demo`).", "",
        "## Data", "",
        "- Synthetic homes of 1-3 rooms (`spatial-ttt synth`), one-way tours (`--tour oneway`: the camera never "
        "comes back, so the first rooms' evidence leaves the sliding window), every 5th frame of the 10 Hz "
        "trajectory (2 Hz keyframes), rendered at the preset's frame size by `python -m spatial_ttt_ros.train.demo_data` "
        "(the same frames and items as `synth -> annotate -> bake --stride 5`: test_train_demo_data.py).",
        *(f"- Recipe `{p}`: shards {r['data']['shards']}, clips of <= {r['data']['max_frames']} frames; stages: "
          + "; ".join(f"{s['name']} {s['steps']} steps, mix {s.get('mix')}" for s in r["data"]["stages"]) + "."
          for _, paths in runs for p, r in ((p, yaml.safe_load(p.read_text())) for p in paths)),
        f"- Evaluation: {ev['source']} — seeds disjoint from the training seeds (see Commands).", "",
        "## Training", "",
        *(line for k, (run_dir, paths) in enumerate(runs, 1) for line in _training(run_dir, paths, k, len(runs))),
        "## Evaluation (streaming engine, held-out scenes)", "",
        (args.demo / "eval" / "eval.md").read_text().split("\n", 1)[1].strip(), "",
    ]
    if args.notes and args.notes.is_file():
        lines += ["## Limitations and analysis", "", args.notes.read_text().strip(), ""]
    (args.demo / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.demo / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
