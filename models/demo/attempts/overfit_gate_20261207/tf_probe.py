"""Teacher-forced probe of the overfit gate: for each count item of the gate's scenes, the first
answer digit the training forward predicts (argmax) over the item's whole stream, with the real
frames and with grey frames, next to the truth. Run from the repo root:

    python models/demo/attempts/overfit_gate_20261207/tf_probe.py <model.safetensors>

If these agree with the streaming evaluation (`spatial-ttt train eval --shards ...`), the engine and
the training forward see the same thing and a miss is the model's, not a train/serve mismatch.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from spatial_ttt_ros.spatial.qa import item_prompt
from spatial_ttt_ros.train.dataset import answer_text
from spatial_ttt_ros.train.forward import forward_logits
from spatial_ttt_ros.train.loop import default_source_factory, setup_model
from spatial_ttt_ros.train.recipe import load_recipe
from spatial_ttt_ros.train.samples import IGNORE
from spatial_ttt_ros.train.strategy import init_dist

GREY = 128


def first_digit(model: torch.nn.Module, config: object, sample: object, tokenizer: object) -> tuple[str, float]:
    """(argmax of the first answer position, probability of the true token there)."""
    with torch.no_grad():
        logits = forward_logits(model, config, [sample], window_size=config.window_size, checkpoint_chunks=False)[0]
    at = int((sample.labels[1:] != IGNORE).nonzero().flatten()[0])
    probs = logits[at].softmax(-1)
    return tokenizer.decode([int(probs.argmax())]), float(probs[int(sample.labels[at + 1])])


def main(checkpoint: str) -> None:
    torch.set_num_threads(2)
    recipe = dataclasses.replace(load_recipe("config/train/demo_overfit_gate.yaml"), init=checkpoint)
    _, config, model, tokenizer, layout = setup_model(recipe, init_dist("single", "cpu"))
    model.eval()
    source = default_source_factory(recipe)(config, tokenizer, layout)
    hits = {"frames": 0, "grey": 0}
    items = source.qa["count"]
    for si, ii in items:
        shard = source.shards[si]
        item = shard.episode.items[ii]
        question = item_prompt(item, append_many_rooms=config.append_many_rooms).text
        truth = answer_text(item)
        row = [shard.episode.episode, item["question"], truth]
        for arm in hits:
            sample = source._finish(shard, 0, shard.episode.num_frames - 1, question, truth, "count", dict(item),
                                    item["objects"])
            if arm == "grey":
                sample.frames[:] = GREY
            digit, p_true = first_digit(model, config, sample, tokenizer)
            hits[arm] += digit == truth[0]
            row += [digit, round(p_true, 3)]
        print(*row, sep="\t", flush=True)
    print(f"teacher-forced first-digit exact: frames {hits['frames']}/{len(items)}, grey {hits['grey']}/{len(items)}")


if __name__ == "__main__":
    main(sys.argv[1])
