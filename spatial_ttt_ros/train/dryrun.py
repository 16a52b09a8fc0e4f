"""`spatial-ttt train run RECIPE --dry-run`: what a recipe will consume, without training.

Sample counts per stage (steps x global batch), tokens per sample measured on a few samples drawn
from the real source (spread over the run), the token budget and a 6·N·tokens FLOP estimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .curriculum import parse_stages
from .loop import default_source_factory, global_indices, label_tokens, setup_model, window_for_step
from .recipe import Recipe
from .strategy import Dist


def dry_run(recipe: Recipe, *, world: int | None = None, probe: int = 8, source_factory: Callable | None = None) -> str:
    world = world or int(os.environ.get("WORLD_SIZE", "1"))
    tr = recipe.train
    g = world * tr.batch_size * tr.grad_accum
    d = Dist("single", 0, 1, 0, torch.device("cpu"), False)
    preset, config, model, tokenizer, layout = setup_model(recipe, d)
    source = (source_factory or default_source_factory(recipe))(config, tokenizer, layout)
    total = recipe.total_steps
    stages = parse_stages(recipe.stages)
    lines = [f"recipe {recipe.source}: preset {preset.name}, {total} optimiser steps, global batch {g} "
             f"= {world} process(es) x batch {tr.batch_size} x accumulation {tr.grad_accum}"]
    done = 0
    for i, stage in enumerate(recipe.stages):
        steps = int(stage["steps"])
        lines.append(f"  stage {stage.get('name', i)}: steps {done}-{done + steps - 1}, {steps * g} samples")
        done += steps
    probe_steps = sorted({min(total - 1, round(k * (total - 1) / max(1, probe - 1))) for k in range(probe)})
    samples = [source.sample(global_indices(s, 0, rank=0, world=world, batch=1, accum=1)[0], s) for s in probe_steps]
    tokens = sum(len(s) for s in samples) / len(samples)
    labels = sum(label_tokens(s) for s in samples) / len(samples)
    frames = sum(s.frames.shape[0] for s in samples) / len(samples)
    n_samples = total * g
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    budget = tokens * n_samples
    passes = f" ({n_samples / len(source):.2f} passes over {len(source)} items)" if hasattr(source, "__len__") else ""
    lines += [f"samples: {n_samples} in all{passes}",
              f"per sample (mean of {len(samples)} drawn at steps {probe_steps[0]}..{probe_steps[-1]}, "
              f"stages {sorted({window_for_step(stages, s, config)[1] for s in probe_steps})}): {tokens:.0f} tokens, "
              f"{frames:.1f} frames, {labels:.1f} label tokens",
              f"token budget: {budget:.3g} tokens ({labels * n_samples:.3g} supervised)",
              f"parameters: {trainable / 1e6:.2f} M trainable of {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M; "
              f"~{6 * trainable * budget:.3g} FLOP (6 N tokens, before recompute)"]
    return "\n".join(lines)
