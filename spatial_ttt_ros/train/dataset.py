"""Training samples drawn from episode shards, deterministic in (seed, index, step).

    source = build_source(recipe["data"], config, tokenizer, layout, seed=recipe["seed"])
    sample = source.sample(index, step)        # a TrainSample (train/samples.py)

`data` keys: `shards` (glob patterns of shard directories or of their roots), `max_frames`
(frames per clip), `stages` (train/curriculum.py), `ask_at_end` (optional, default 0: the share of
QA clips asked at the end of the tour, below). For a sample, the stage at `step` picks a
task by its mix, then:

* "qa": a kind uniformly among the stage's kinds that have items (balanced per kind), an item of
  that kind uniformly, and a clip of <= max_frames frames holding the item's whole frame_range
  (every object the answer depends on is first seen inside the clip, so the answer is true of
  the clip). A share `ask_at_end` of these clips is the longest one instead: it ends as late as
  max_frames allows (the episode's last frame when the episode fits) and starts as early as that
  end allows — the question asked after the whole tour, as the node and `train eval` ask it, so
  that all items of an episode share an ask time. (Otherwise an item whose evidence runs to the
  last frames is the only one asked there, and the clip's end alone can tell its answer: the
  overfit gate of 2026-12-07 learnt that shortcut, models/demo/attempts/gate_gpu_20261207b.)
  Question = spatial.qa.item_prompt (spatial/prompts.py build_prompt, the node's call,
  with the preset's append_many_rooms); answer = `answer_text(item)`, which
  spatial.answers.parse_answer reads back as the item's answer. The robot-relative kinds
  (locate, robot_distance, robot_direction: answers relative to the camera pose when asked) take
  clips ending exactly at the item's last frame, its ask frame.
* poses: with the preset's pose_text, every clip's camera poses (the shard's `poses`) go into the
  layout (train/samples.py); a shard without poses is then an error.
* "describe": dense description of what the clip has seen, up to its last frame (the cut). With
  visibility and a scene in the shard (synth, or a bag baked with its scene file): a random clip,
  target = spatial.describe.describe_episode on the visibility table of the clip's frames
  (re-indexed from 0). Otherwise: a chunk description of the shard whose chunk ends within the
  first max_frames frames, clip = frame 0 to its last frame (its "Seen so far" counts from frame
  0, so the clip starts there).
* "summary": as "describe" with visibility and a scene, target = spatial.describe.summarize_episode
  (the rooms and the counts per category of what the clip saw: a dense count signal a few hundred
  bytes long, where a whole description of a 96-frame clip runs to ~6,000 bytes and outgrows a
  GPU batch). Shards without visibility have no summary.

`meta` of every sample: stage, task, kind ("describe", "summary" or the QA kind), episode, source, clip
[first, last] (shard frames), item (the QA item, or None), question and answer (the texts), window (the training window of this
step, curriculum.window_at), and `evidence_outside_window`: whether every frame in which an
object the answer depends on is visible lies wholly before the preset's sliding window
(config.window_size tokens) at ask time (the last prompt token), i.e. the answer needs the
memory; None when the shard has no visibility. `evidence_window` is that window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime.config import SpatialTTTConfig
from ..runtime.tokens import LONGEST_POSE, ChatLayout, group_text
from ..spatial.answers import format_position
from ..spatial.describe import describe_episode, summarize_episode
from ..spatial.prompts import ROBOT_KINDS, build_prompt
from ..spatial.qa import item_prompt
from ..spatial.scene import Scene, validate_scene
from .curriculum import Stage, parse_stages, stage_at, window_at
from .samples import IGNORE, TrainSample, layout_sample, merged_grid
from .shards import Episode, find_shards, read_episode, read_frames

SUMMARY_QUESTION = ("Summarize what you have seen in the video so far: the rooms with their floor areas, and how "
                    "many objects of each kind.")
DESCRIBE_QUESTION = ("Describe everything you have seen in the video so far: the rooms, each object with its "
                     "size and position, and the order in which the objects first appeared.")
CHUNK_QUESTION = "Describe what the latest frames show, what is new in them, and what you have seen so far."
DATA_KEYS = ("shards", "max_frames", "stages", "ask_at_end")


def answer_text(item: Mapping) -> str:
    """The target text for a QA item: the option letter, the number in the question's unit, or a
    locate item's position "x y" (answers.format_position)."""
    if item["options"]:
        return str(item["answer"])
    if item.get("kind") == "locate":
        return format_position(*item["answer"])
    value = item["answer"]
    if float(value) == int(value):
        return str(int(value))
    return np.format_float_positional(float(value), trim="-")


def last_evidence_frame(visibility: Mapping[int, Sequence[str]], first: int, last: int,
                        objects: Sequence[str]) -> int | None:
    """The last frame in [first, last] showing any of `objects` (all seen objects when empty)."""
    wanted = set(objects)
    for f in range(last, first - 1, -1):
        seen = visibility.get(f, ())
        if (wanted & set(seen)) if wanted else seen:
            return f
    return None


def evidence_outside_window(sample: TrainSample, layout: ChatLayout, frame: int, window: int) -> bool:
    """Whether clip frame `frame`'s visual tokens (its pair's video pads) all lie before the sliding
    window of the query position (the last prompt token, whose logits give the first answer
    token): key k is in the window of query q iff q - window < k <= q (runtime/reference.py)."""
    ends = (sample.input_ids == layout.vision_end).nonzero().flatten()
    last_pad = int(ends[frame // 2]) - 1
    query = int((sample.labels != IGNORE).nonzero()[0, 0]) - 1
    return last_pad <= query - window


@dataclass
class _Shard:
    episode: Episode     # read with load_frames=False
    scene: Scene | None
    visibility: dict[int, list[str]] | None


class SampleSource:
    """Deterministic samples over a set of shards; see the module doc."""

    def __init__(self, shards: list[_Shard], stages: list[Stage], max_frames: int, config: SpatialTTTConfig,
                 tokenizer: Any, layout: ChatLayout, seed: int, ask_at_end: float = 0.0) -> None:
        self.shards, self.stages, self.max_frames, self.ask_at_end = shards, stages, max_frames, float(ask_at_end)
        self.config, self.tokenizer, self.layout, self.seed = config, tokenizer, layout, int(seed)
        self.qa: dict[str, list[tuple[int, int]]] = {}
        self.describe: list[tuple[int, int | None]] = []  # (shard, chunk description index or None)
        for si, sh in enumerate(shards):
            for ii, item in enumerate(sh.episode.items):
                first, last = item["frame_range"]
                if last - first + 1 <= max_frames:
                    self.qa.setdefault(item["kind"], []).append((si, ii))
            if sh.visibility is not None and sh.scene is not None:
                self.describe.append((si, None))
            else:
                self.describe += [(si, di) for di, d in enumerate(sh.episode.descriptions)
                                  if d["type"] == "chunk_description" and d["frame_range"][1] < max_frames]
        self.summary = [(si, di) for si, di in self.describe if di is None]  # shards with visibility + scene
        robot_kinds = {k.value for k in ROBOT_KINDS}
        for stage in stages:
            if stage.weight("qa") > 0 and robot_kinds & set(stage.kinds) and not config.pose_text:
                raise ValueError(f"stage {stage.name!r} asks for the robot-relative kinds "
                                 f"{sorted(robot_kinds & set(stage.kinds))}, which need a preset with pose_text: true")
            if stage.weight("qa") > 0 and not any(self.qa.get(k) for k in stage.kinds):
                raise ValueError(f"stage {stage.name!r} asks for qa, but no shard has an item of the kinds "
                                 f"{list(stage.kinds)} spanning <= max_frames = {max_frames} frames")
            if stage.weight("summary") > 0 and not self.summary:
                raise ValueError(f"stage {stage.name!r} asks for summary, but no shard has visibility + scene")
            if stage.weight("describe") > 0 and not self.describe:
                raise ValueError(f"stage {stage.name!r} asks for describe, but no shard has visibility + scene or a "
                                 f"chunk description ending within max_frames = {max_frames} frames")
            if stage.window is not None:
                need = self.max_clip_tokens()
                if stage.window.start < need:
                    raise ValueError(f"stage {stage.name!r}: window.start {stage.window.start} is below the "
                                     f"{need} tokens of a {max_frames}-frame clip; the anneal must start "
                                     "at full attention (>= the clip length)")

    def __len__(self) -> int:
        """Distinct targets: QA items that fit a clip, plus description targets (an episode with
        visibility counts once, a chunk description once)."""
        return sum(len(v) for v in self.qa.values()) + len(self.describe)

    def max_clip_tokens(self) -> int:
        """Tokens of a max_frames clip up to the question (chat prefix, timestamps, vision tokens)."""
        h, w = merged_grid(self.config)
        widest = group_text(0.0, 2 * 9999.9, 0.0, LONGEST_POSE if self.config.pose_text else None)
        stamp = len(self.tokenizer.encode(widest, add_special_tokens=False))
        return len(self.layout.prefix) + ((self.max_frames + 1) // 2) * (stamp + h * w + 2)

    def sample(self, index: int, step: int) -> TrainSample:
        """The sample at global data index `index` and optimiser step `step` (deterministic)."""
        for name, v in (("index", index), ("step", step)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        stage, in_stage = stage_at(self.stages, int(step))
        rng = np.random.default_rng([self.seed, int(index), int(step)])
        tasks = [t for t, _ in stage.mix]
        task = tasks[int(rng.choice(len(tasks), p=[p for _, p in stage.mix]))]
        sample = self._qa(rng, stage) if task == "qa" else self._describe(rng, summary=task == "summary")
        sample.meta.update(stage=stage.name, task=task, window=window_at(stage, in_stage, self.config))
        return sample

    def _clip(self, sh: _Shard, first: int, last: int) -> tuple[list[np.ndarray], list[float], list | None]:
        frames = read_frames(sh.episode.path, first, last + 1)
        stamps = sh.episode.stamps[first:last + 1].tolist()
        poses = None if sh.episode.poses is None else list(sh.episode.poses[first:last + 1])
        return list(frames), stamps, poses

    def _finish(self, sh: _Shard, first: int, last: int, question: str, answer: str, kind: str,
                item: dict | None, objects: Sequence[str]) -> TrainSample:
        frames, stamps, poses = self._clip(sh, first, last)
        meta = {"kind": kind, "episode": sh.episode.episode, "source": sh.episode.source, "clip": [first, last],
                "item": item, "question": question, "answer": answer, "evidence_window": int(self.config.window_size), "evidence_outside_window": None}
        sample = layout_sample(self.config, self.tokenizer, self.layout, frames, stamps, question, answer, meta,
                               poses=poses)
        if sh.visibility is not None:
            f = last_evidence_frame(sh.visibility, first, last, objects)
            if f is not None:
                sample.meta["evidence_outside_window"] = evidence_outside_window(
                    sample, self.layout, f - first, int(self.config.window_size))
        return sample

    def _qa(self, rng: np.random.Generator, stage: Stage) -> TrainSample:
        kinds = [k for k in stage.kinds if self.qa.get(k)]
        pool = self.qa[kinds[int(rng.integers(len(kinds)))]]
        si, ii = pool[int(rng.integers(len(pool)))]
        sh = self.shards[si]
        item = sh.episode.items[ii]
        first, last = item["frame_range"]
        n = sh.episode.num_frames
        robot = item["kind"] in ROBOT_KINDS  # answered relative to the pose at the ask frame
        latest = min(n - 1, first + self.max_frames - 1)
        if not robot and self.ask_at_end > 0 and rng.random() < self.ask_at_end:  # after the tour (module doc)
            end = latest
            start = max(0, end - self.max_frames + 1)
        else:
            end = last if robot else int(rng.integers(last, latest + 1))
            start = int(rng.integers(max(0, end - self.max_frames + 1), first + 1))
        prompt = item_prompt(item, append_many_rooms=self.config.append_many_rooms)
        return self._finish(sh, start, end, prompt.text, answer_text(item), item["kind"], dict(item), item["objects"])

    def _describe(self, rng: np.random.Generator, summary: bool = False) -> TrainSample:
        pool = self.summary if summary else self.describe
        si, di = pool[int(rng.integers(len(pool)))]
        sh = self.shards[si]
        if di is None:
            n = sh.episode.num_frames
            top = min(n, self.max_frames)
            length = int(rng.integers(max(1, top // 2), top + 1))
            start = int(rng.integers(0, n - length + 1))
            end = start + length - 1
            table = {f - start: sh.visibility.get(f, []) for f in range(start, end + 1)}
            if summary:
                text, question = summarize_episode(sh.scene, table), SUMMARY_QUESTION
            else:
                text, question = describe_episode(sh.scene, table), DESCRIBE_QUESTION
        else:
            desc = sh.episode.descriptions[di]
            start, end = 0, desc["frame_range"][1]
            text, question = desc["text"], CHUNK_QUESTION
        prompt = build_prompt("free_form", question=question, append_many_rooms=self.config.append_many_rooms)
        return self._finish(sh, start, end, prompt.text, text, "summary" if summary else "describe", None, ())


def build_source(data_cfg: Mapping, config: SpatialTTTConfig, tokenizer: Any, layout: ChatLayout, *,
                 seed: int) -> SampleSource:
    """A SampleSource over the shards `data_cfg` names; ValueError names a bad field or shard."""
    if not isinstance(data_cfg, Mapping):
        raise ValueError(f"data: expected a mapping with keys {DATA_KEYS}, got {type(data_cfg).__name__}")
    unknown = sorted(set(data_cfg) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f"data: unknown keys {unknown}; expected {list(DATA_KEYS)}")
    max_frames = data_cfg.get("max_frames")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"data.max_frames: expected an integer >= 1, got {max_frames!r}")
    patterns = data_cfg.get("shards")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Sequence) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"data.shards: expected a list of glob patterns, got {patterns!r}")
    paths = find_shards(list(patterns))
    if not paths:
        raise ValueError(f"data.shards: no episode shard matches {list(patterns)}")
    ask_at_end = data_cfg.get("ask_at_end", 0.0)
    if isinstance(ask_at_end, bool) or not isinstance(ask_at_end, (int, float)) or not 0.0 <= ask_at_end <= 1.0:
        raise ValueError(f"data.ask_at_end: expected a number in [0, 1], got {ask_at_end!r}")
    stages = parse_stages(data_cfg.get("stages"))
    shards = []
    size = (config.frame_height, config.frame_width)
    for p in paths:
        ep = read_episode(p, load_frames=False)
        if ep.frame_size != size:
            raise ValueError(f"shard {p}: frames are {ep.frame_size[0]}x{ep.frame_size[1]} but preset {config.name!r} "
                             f"uses {size[0]}x{size[1]}; bake again with --preset {config.name}")
        if config.pose_text and ep.poses is None:
            raise ValueError(f"shard {p} has no camera poses, but preset {config.name!r} has pose_text: true")
        scene = validate_scene(ep.scene) if ep.scene is not None else None
        shards.append(_Shard(ep, scene, ep.visibility))
    return SampleSource(shards, stages, max_frames, config, tokenizer, layout, seed, ask_at_end)
