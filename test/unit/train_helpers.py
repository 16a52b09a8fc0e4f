"""Test-local training data: a deterministic source of TrainSamples from random frames (laid out by
the real `layout_sample`), and the recipe the loop tests share. Also runnable under torchrun:
`torchrun --nproc-per-node 2 test/unit/train_helpers.py OUT STRATEGY [STRATEGY ...]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from spatial_ttt_ros.train.recipe import parse_recipe
from spatial_ttt_ros.train.samples import layout_sample

OBJECTS = ["chair", "table", "lamp", "sofa", "plant", "bed", "door", "tv"]


class RandomSource:
    """sample(index, step): `frames` random frames seeded by (seed, index % distinct) and a count
    question whose answer is a digit of the index (`long_answers`: that digit repeated 1 + 3 x
    (index % 3) times, so samples hold different numbers of label tokens). Deterministic in (seed, index)."""

    def __init__(self, config, tokenizer, layout, *, seed: int = 0, frames: int = 2, distinct: int = 1000,  # noqa: ANN001
                 long_answers: bool = False) -> None:
        self.config, self.tokenizer, self.layout = config, tokenizer, layout
        self.seed, self.frames, self.distinct, self.long_answers = seed, frames, distinct, long_answers

    def __len__(self) -> int:
        return self.distinct

    def sample(self, index: int, step: int):  # noqa: ANN201
        i = index % self.distinct
        rng = np.random.default_rng([self.seed, i])
        frames = list(rng.integers(0, 256, (self.frames, self.config.frame_height, self.config.frame_width, 3),
                                   dtype=np.uint8))
        stamps = [0.5 * k for k in range(self.frames)]
        question = f"How many are in this room: {OBJECTS[i % len(OBJECTS)]}?"
        answer = str(i % 7) * (1 + 3 * (i % 3) if self.long_answers else 1)
        return layout_sample(self.config, self.tokenizer, self.layout, frames, stamps, question, answer,
                             {"index": index})


def tiny_recipe(steps: int = 3, *, lr: float = 1e-3, batch_size: int = 1, grad_accum: int = 1, warmup: float = 0.0,
                save_every: int = 100, **train: object):  # noqa: ANN201
    return parse_recipe({
        "preset": "tiny", "seed": 0,
        "data": {"stages": [{"name": "qa", "steps": steps, "mix": {"qa": 1.0}}]},
        "optim": {"lr": lr, "ttt_lr": lr * 10, "weight_decay": 0.01, "warmup": warmup, "min_lr_ratio": 0.1,
                  "grad_clip": 1.0, "betas": [0.9, 0.95]},
        "train": {"batch_size": batch_size, "grad_accum": grad_accum, "precision": "fp32",
                  "save_every": save_every, "log_every": 1, **{"checkpoint_chunks": False, **train}}}, "test")


def run(recipe, out: Path, strategy: str, *, long_answers: bool = False, **kw: object):  # noqa: ANN001, ANN201
    """Train with the RandomSource (built from the same config/tokenizer the loop builds)."""
    from spatial_ttt_ros.train import loop

    def make_source(config, tokenizer, layout):  # noqa: ANN001, ANN202
        return RandomSource(config, tokenizer, layout, seed=recipe.seed, long_answers=long_answers)

    return loop.train(recipe, out, strategy=strategy, source_factory=make_source, progress_bar=False, **kw)


def final_params(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from spatial_ttt_ros.train.checkpoint import export

    return load_file(str(export(out, out / "export", dtype="float32")))


if __name__ == "__main__":
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # once for all strategies (the loop then leaves it alone)
    out, strategies = Path(sys.argv[1]), sys.argv[2:]
    for strategy in strategies:
        res = run(tiny_recipe(3, grad_accum=1), out / strategy, strategy)
        if not dist.is_initialized() or dist.get_rank() == 0:
            (out / f"{strategy}.json").write_text(json.dumps({"losses": res.losses, "step": res.step,
                                                               "fsdp_layer_units": res.fsdp_layer_units}))
    dist.destroy_process_group()
