"""SpatialQuery request validation and Answer -> response fields (rclpy-free)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from spatial_ttt_ros.ros.query import answer_result, prepare_query

LIMITS = dict(default_max_new_tokens=16, max_new_tokens_limit=64, default_timeout_s=30.0)


def prepare(kind: str, objects: list[str] | None = None, question: str = "", options: list[str] | None = None,
            max_new_tokens: int = 0, timeout_s: float = 0.0):
    return prepare_query(kind, objects or [], question, options or [], max_new_tokens, timeout_s, **LIMITS)


def answer(text: str, frames: int = 7, stamp: float | None = 12.5) -> SimpleNamespace:
    return SimpleNamespace(text=text, frames_seen=frames, last_stamp_s=stamp)


def test_defaults_apply_when_zero():
    q = prepare("count", ["chair"])
    assert (q.max_new_tokens, q.timeout_s) == (16, 30.0)
    q = prepare("count", ["chair"], max_new_tokens=4, timeout_s=2.5)
    assert (q.max_new_tokens, q.timeout_s) == (4, 2.5)
    assert "chair" in q.prompt.text and q.prompt.unit == "count"


@pytest.mark.parametrize("args, message", [
    (("elevation", ["chair"]), "unknown question kind"),
    (("count", []), "count needs 1 object"),
    (("free_form", [], "x" * 100_000), "limit"),
    (("count", ["chair"], "", ["a", "b"]), "takes no options"),
    (("rel_distance", ["lamp", "chair", "table"], "", ["chair"]), "2 to 26 options"),
    (("count", ["chair"], "", [], 65), "max_new_tokens"),
    (("count", ["chair"], "", [], 0, -1.0), "timeout_s"),
    (("count", ["chair"], "", [], 0, math.nan), "timeout_s"),
    (("count", ["c"] * 40), "at most 32 object names"),
])
def test_bad_requests_raise_naming_the_problem(args, message):
    with pytest.raises(ValueError, match=message):
        prepare(*args)


def test_numeric_answer_fields():
    q = prepare("abs_distance", ["chair", "table"])
    r = answer_result(q.prompt, answer("2.5 meters"))
    assert r.success and r.message == "ok"
    assert (r.value, r.unit, r.choice) == (2.5, "m", "")
    assert (r.frames_in_memory, r.memory_stamp_s, r.prompt) == (7, 12.5, q.prompt.text)
    size = answer_result(prepare("object_size", ["sofa"]).prompt, answer("180"))
    assert size.value == pytest.approx(1.8) and size.unit == "m"  # a bare number is in centimetres


def test_unreadable_answer_still_succeeds_with_nan_and_a_reason():
    q = prepare("count", ["chair"])
    r = answer_result(q.prompt, answer("\x17;abc"))
    assert r.success and math.isnan(r.value) and r.unit == "count"
    assert "not a readable number" in r.message and r.answer == "\x17;abc"


def test_multiple_choice_fields():
    q = prepare("rel_distance", ["lamp", "chair", "table"], options=["chair", "table"])
    r = answer_result(q.prompt, answer("B."))
    assert (r.choice, r.choice_text, r.unit) == ("B", "table", "")
    assert math.isnan(r.value)
    bad = answer_result(q.prompt, answer("Q"))
    assert bad.success and bad.choice == "" and bad.choice_text == ""


def test_free_form_keeps_the_text():
    q = prepare("free_form", question="What is next to the bed?")
    r = answer_result(q.prompt, answer("a lamp", stamp=None))
    assert r.success and r.answer == "a lamp" and r.memory_stamp_s is None and math.isnan(r.value)
