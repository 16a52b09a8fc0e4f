"""Curriculum tables: stage_at and the annealed window (from >= the clip length down to C, never below)."""

from __future__ import annotations

import pytest

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.train.curriculum import VSI_KIND_NAMES, parse_stages, stage_at, total_steps, window_at

pytestmark = pytest.mark.unit
TINY = load_config("tiny")  # C = 24, W = 40
RECIPE = [
    {"name": "describe", "steps": 5, "mix": {"describe": 1.0}, "window": {"start": 424, "end": "chunk"}},
    {"name": "qa", "steps": 3, "mix": {"qa": 0.85, "describe": 0.15}},
]


@pytest.mark.parametrize("step, name, in_stage", [(0, "describe", 0), (4, "describe", 4), (5, "qa", 0), (7, "qa", 2)])
def test_stage_at(step, name, in_stage):
    stage, s = stage_at(parse_stages(RECIPE), step)
    assert (stage.name, s) == (name, in_stage)


def test_stage_at_refuses_steps_outside():
    stages = parse_stages(RECIPE)
    assert total_steps(stages) == 8
    for bad in (8, -1, 1.5, True):
        with pytest.raises(ValueError, match="step"):
            stage_at(stages, bad)


@pytest.mark.parametrize("window, expected", [
    # start 424, end C = 24, over steps 0..4 (anneal length = steps - 1 = 4): 424, 324, 224, 124, 24
    ({"start": 424}, [424, 324, 224, 124, 24]),
    ({"start": 424, "end": "window"}, [424, 328, 232, 136, 40]),
    ({"start": 424, "end": 30}, [424, 326, 227, 129, 30]),
    ({"start": 424, "steps": 2}, [424, 224, 24, 24, 24]),
    ({"start": 424, "quantum": 64}, [448, 384, 256, 128, 24]),
    ({"start": 10}, [24, 24, 24, 24, 24]),  # a start below C never goes below C
])
def test_window_table(window, expected):
    (stage,) = parse_stages([{"steps": 5, "mix": {"describe": 1}, "window": window}])
    got = [window_at(stage, s, TINY) for s in range(5)]
    assert got == expected
    assert all(w >= TINY.chunk_size for w in got) and got == sorted(got, reverse=True)


def test_stage_without_window_trains_at_the_presets_window():
    stage = parse_stages(RECIPE)[1]
    assert [window_at(stage, s, TINY) for s in range(3)] == [40, 40, 40]
    assert dict(stage.mix) == pytest.approx({"qa": 0.85, "describe": 0.15}) and stage.kinds == VSI_KIND_NAMES
    with pytest.raises(ValueError, match="step_in_stage"):
        window_at(stage, 3, TINY)


@pytest.mark.parametrize("spec, field", [
    ([], "stages"),
    ([{"steps": 0, "mix": {"qa": 1}}], r"stages\[0\].steps"),
    ([{"steps": 2, "mix": {"caption": 1}}], r"stages\[0\].mix"),
    ([{"steps": 2, "mix": {"qa": -1, "describe": 2}}], r"stages\[0\].mix.qa"),
    ([{"steps": 2, "mix": {"qa": 0}}], r"stages\[0\].mix"),
    ([{"steps": 2, "mix": {"qa": 1}, "kinds": ["free_form"]}], r"stages\[0\].kinds"),
    ([{"steps": 2, "mix": {"qa": 1}, "window": {"end": "chunk"}}], r"stages\[0\].window.start"),
    ([{"steps": 2, "mix": {"qa": 1}, "window": {"start": 99, "end": "half"}}], r"stages\[0\].window.end"),
    ([{"steps": 2, "mix": {"qa": 1}, "window": {"start": 99, "speed": 2}}], r"stages\[0\].window"),
    ([{"steps": 2, "mix": {"qa": 1}, "lr": 3}], r"stages\[0\]"),
])
def test_bad_stage_names_the_field(spec, field):
    with pytest.raises(ValueError, match=f"stage field {field}"):
        parse_stages(spec)


def test_window_end_below_c_is_refused():
    (stage,) = parse_stages([{"steps": 3, "mix": {"qa": 1}, "window": {"start": 99, "end": 8}}])
    with pytest.raises(ValueError, match="below the chunk size C = 24"):
        window_at(stage, 0, TINY)
