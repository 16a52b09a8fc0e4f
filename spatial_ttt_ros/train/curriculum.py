"""The two-stage curriculum as pure functions (TRAINING.md §3.3).

A recipe's `data.stages` is a list of stages, run in order:

    - {name: describe, steps: 200, mix: {describe: 1.0}, window: {start: 4096, end: chunk}}
    - {name: qa, steps: 800, mix: {qa: 0.85, describe: 0.15}}

* `mix`: task -> weight ("describe": dense description of what the clip has seen up to its last
  frame; "summary": the rooms the clip saw objects in and the counts per category; "qa": the
  eight QA kinds, balanced per kind). Weights are normalised.
* `kinds` (optional): the QA kinds this stage draws (default: the eight VSI-Bench kinds; the
  robot-relative ones, locate / robot_distance / robot_direction, need a preset with pose_text).
* `window` (optional): the sliding window annealed over the stage,
  W(s) = end + (start - end) * max(0, 1 - s / steps_w), s = step in stage, steps_w = `steps` of
  the window (default: the stage's steps - 1, so the last step trains at `end`), rounded up to a
  multiple of `quantum` (default 1) so a compiled attention mask is rebuilt only when W moves by a
  quantum. `start` must be at least the longest clip's tokens (full attention at first: the
  builder of the data source checks it); `end` is "chunk" (C, the default), "window" (the
  preset's W) or a number; W never goes below C. A stage without `window` trains at the preset's W.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..runtime.config import SpatialTTTConfig
from ..spatial.prompts import ROBOT_KINDS, VSI_KINDS

TASKS = ("describe", "summary", "qa")
VSI_KIND_NAMES = tuple(k.value for k in VSI_KINDS)  # the default of a stage's kinds
QA_KIND_NAMES = VSI_KIND_NAMES + tuple(k.value for k in ROBOT_KINDS)


@dataclass(frozen=True)
class WindowSchedule:
    start: int
    end: int | str = "chunk"      # "chunk" | "window" | tokens
    steps: int | None = None      # anneal length; None = the stage's steps - 1
    quantum: int = 1


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    mix: tuple[tuple[str, float], ...]  # (task, probability), probabilities summing to 1
    kinds: tuple[str, ...] = VSI_KIND_NAMES
    window: WindowSchedule | None = None

    def weight(self, task: str) -> float:
        return dict(self.mix).get(task, 0.0)


def _bad(field_: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"stage field {field_}: expected {expected}, got {value!r}")


def _pos_int(field_: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _bad(field_, f"an integer >= {minimum}", v)
    return v


def parse_window(where: str, spec: Any) -> WindowSchedule | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise _bad(where, "a mapping {start, end, steps, quantum}", spec)
    unknown = sorted(set(spec) - {"start", "end", "steps", "quantum"})
    if unknown:
        raise _bad(where, "keys start, end, steps, quantum", unknown)
    if "start" not in spec:
        raise _bad(f"{where}.start", "a number of tokens >= the longest clip", None)
    start = _pos_int(f"{where}.start", spec["start"])
    end = spec.get("end", "chunk")
    if not (end in ("chunk", "window") or (isinstance(end, int) and not isinstance(end, bool) and end >= 1)):
        raise _bad(f"{where}.end", "'chunk', 'window' or a number of tokens", end)
    steps = spec.get("steps")
    if steps is not None:
        _pos_int(f"{where}.steps", steps)
    return WindowSchedule(start, end, steps, _pos_int(f"{where}.quantum", spec.get("quantum", 1)))


def parse_stages(specs: Any) -> list[Stage]:
    """Stages from the recipe's `data.stages` list; ValueError names the bad field."""
    if not isinstance(specs, Sequence) or isinstance(specs, str) or not specs:
        raise _bad("stages", "a non-empty list of stages", specs)
    out = []
    for i, spec in enumerate(specs):
        where = f"stages[{i}]"
        if not isinstance(spec, Mapping):
            raise _bad(where, "a mapping", spec)
        unknown = sorted(set(spec) - {"name", "steps", "mix", "kinds", "window"})
        if unknown:
            raise _bad(where, "keys name, steps, mix, kinds, window", unknown)
        name = spec.get("name", f"stage{i}")
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.name", "a non-empty string", name)
        steps = _pos_int(f"{where}.steps", spec.get("steps"))
        mix = spec.get("mix")
        if not isinstance(mix, Mapping) or not mix:
            raise _bad(f"{where}.mix", f"a mapping task -> weight, tasks {TASKS}", mix)
        for task, w in mix.items():
            if task not in TASKS:
                raise _bad(f"{where}.mix", f"tasks among {TASKS}", task)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise _bad(f"{where}.mix.{task}", "a finite weight >= 0", w)
        total = float(sum(mix.values()))
        if total <= 0:
            raise _bad(f"{where}.mix", "weights with a positive sum", dict(mix))
        kinds = spec.get("kinds", VSI_KIND_NAMES)
        if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds or any(k not in QA_KIND_NAMES for k in kinds):
            raise _bad(f"{where}.kinds", f"a non-empty list among {QA_KIND_NAMES}", kinds)
        window = parse_window(f"{where}.window", spec.get("window"))
        out.append(Stage(name, steps, tuple((t, float(w) / total) for t, w in mix.items() if w > 0),
                         tuple(dict.fromkeys(kinds)), window))
    return out


def total_steps(stages: Sequence[Stage]) -> int:
    return sum(s.steps for s in stages)


def stage_at(stages: Sequence[Stage], step: int) -> tuple[Stage, int]:
    """(the stage that global `step` falls in, the step within it); steps count from 0."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    left = step
    for stage in stages:
        if left < stage.steps:
            return stage, left
        left -= stage.steps
    raise ValueError(f"step {step} is past the curriculum's {total_steps(stages)} steps")


def window_end(stage: Stage, config: SpatialTTTConfig) -> int:
    """The window a stage ends at (never below C)."""
    c = int(config.chunk_size)
    if stage.window is None:
        return max(c, int(config.window_size))
    end = stage.window.end
    value = c if end == "chunk" else int(config.window_size) if end == "window" else int(end)
    if value < c:
        raise ValueError(f"stage {stage.name!r}: window end {value} is below the chunk size C = {c}")
    return value


def window_at(stage: Stage, step_in_stage: int, config: SpatialTTTConfig) -> int:
    """The sliding window (tokens) at `step_in_stage` of `stage`; see the module doc."""
    if isinstance(step_in_stage, bool) or not isinstance(step_in_stage, int) or not 0 <= step_in_stage < stage.steps:
        raise ValueError(f"step_in_stage must be in [0, {stage.steps}), got {step_in_stage!r}")
    end = window_end(stage, config)
    if stage.window is None:
        return end
    start = int(stage.window.start)
    span = stage.window.steps if stage.window.steps is not None else max(1, stage.steps - 1)
    frac = max(0.0, 1.0 - step_in_stage / span)
    if frac == 0.0:
        return end
    q = stage.window.quantum
    return max(end, int(math.ceil((end + (start - end) * frac) / q - 1e-9)) * q)
