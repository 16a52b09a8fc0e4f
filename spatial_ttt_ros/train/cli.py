"""`spatial-ttt train <verb>`: run (a recipe, resumable, under torchrun) and export (a release
checkpoint the engine and the node load). Other verbs (bake, eval) register themselves here."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from .loop import train
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if args.dry_run:
        from .dryrun import dry_run

        print(dry_run(recipe, world=args.world or None, probe=args.probe))
        return 0
    result = train(recipe, args.out, strategy=args.strategy, max_steps=args.max_steps, time_limit=args.time_limit,
                   progress_bar=not args.no_bar)
    return 0 if result.step > 0 or result.stopped != "done" else 1


def _export(args: argparse.Namespace) -> int:
    from .checkpoint import export

    path = export(args.run_dir, args.out, dtype=args.dtype, ckpt=args.checkpoint)
    print(f"exported {path} (+ preset YAML beside it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatial-ttt train", description="rosbag replay training")
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="train from a recipe YAML (resumes from --out when it holds a checkpoint)",
                         description="Train from a recipe; runs under `torchrun --nproc-per-node N` for ddp/fsdp2.")
    run.add_argument("recipe", help="config/train/<name>.yaml")
    run.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, loss.png)")
    run.add_argument("--strategy", choices=("single", "ddp", "fsdp2"), default="single")
    run.add_argument("--max-steps", type=int, default=None,
                     help="stop after this many optimiser steps in total (the schedule still spans the recipe)")
    run.add_argument("--time-limit", type=float, default=None,
                     help="seconds: stop (and checkpoint) before the next step would pass it")
    run.add_argument("--dry-run", action="store_true", help="print sample counts and the token budget, train nothing")
    run.add_argument("--world", type=int, default=0, help="--dry-run: number of processes to plan for")
    run.add_argument("--probe", type=int, default=8, help="--dry-run: samples drawn to estimate tokens per sample")
    run.add_argument("--no-bar", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")
    run.set_defaults(func=_run)
    exp = sub.add_parser("export", help="a run's newest checkpoint -> model.safetensors + preset YAML")
    exp.add_argument("run_dir")
    exp.add_argument("--out", required=True)
    exp.add_argument("--dtype", choices=("preset", "float32", "bfloat16", "float16"), default="preset",
                     help="storage dtype (float16 halves small models; the loader casts to the model's dtype)")
    exp.add_argument("--checkpoint", default=None, help="a checkpoints/step_* directory instead of the newest")
    exp.set_defaults(func=_export)
    from . import bake, evaluate

    bake.register(sub)
    evaluate.register(sub)
    return parser


def cli_train(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"spatial-ttt train {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_train(sys.argv[1:]))
