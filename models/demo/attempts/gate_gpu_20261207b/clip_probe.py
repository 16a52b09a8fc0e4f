"""Teacher-forced first answer digit of some gate items over clips of different extent (the
training forward, ../overfit_gate_20261207/tf_probe.py first_digit): does the model answer the
question, or the clip's end? Run from the repo root:

    python models/demo/attempts/gate_gpu_20261207b/clip_probe.py <model.safetensors> [wide|ends]

`wide`: six clips per missed item (whole episode, from 0 to the evidence, the evidence only, ...);
`ends`: the whole-episode misses of scenes 0 and 7 with clips ending at 70-95.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import torch

from spatial_ttt_ros.spatial.qa import item_prompt
from spatial_ttt_ros.train.dataset import answer_text
from spatial_ttt_ros.train.loop import default_source_factory, setup_model
from spatial_ttt_ros.train.recipe import load_recipe
from spatial_ttt_ros.train.strategy import init_dist

WIDE = {("synth_0000000", "plant"), ("synth_0000002", "shelf"), ("synth_0000004", "door"),
        ("synth_0000007", "table"), ("synth_0000003", "door"), ("synth_0000006", "plant")}
ENDS = {("synth_0000000", "plant"), ("synth_0000007", "table")}


def clips(first: int, last: int, mode: str) -> list[tuple[int, int]]:
    if mode == "ends":
        return [(0, 70), (0, 80), (0, 88), (0, 92), (0, 94), (4, 95)]
    return [(0, 95), (0, last), (first, last), (0, min(95, last + 20)), (first, min(95, first + 60)),
            (max(0, 95 - 60), 95) if first >= 35 else (first, 95)]


def main(checkpoint: str, mode: str) -> None:
    spec = importlib.util.spec_from_file_location("tf_probe", "models/demo/attempts/overfit_gate_20261207/tf_probe.py")
    tf_probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tf_probe)
    torch.set_num_threads(2)
    recipe = dataclasses.replace(load_recipe("config/train/demo_overfit_gate.yaml"), init=checkpoint)
    _, config, model, tokenizer, layout = setup_model(recipe, init_dist("single", "cpu"))
    model.eval()
    source = default_source_factory(recipe)(config, tokenizer, layout)
    want = WIDE if mode == "wide" else ENDS
    for si, ii in source.qa["count"]:
        shard = source.shards[si]
        item = shard.episode.items[ii]
        if not any(shard.episode.episode == e and o in item["question"] for e, o in want):
            continue
        first, last = item["frame_range"]
        question = item_prompt(item, append_many_rooms=config.append_many_rooms).text
        truth = answer_text(item)
        row = [shard.episode.episode, item["question"][9:20], truth, (first, last)]
        for start, end in clips(first, last, mode):
            sample = source._finish(shard, start, end, question, truth, "count", dict(item), item["objects"])
            digit, p_true = tf_probe.first_digit(model, config, sample, tokenizer)
            row.append(f"[{start},{end}]->{digit}({p_true:.2f})")
        print(*row, sep="  ", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "wide")
