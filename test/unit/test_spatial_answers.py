"""Answer parsing: VSI first-token rule, units, number words, option letters; never guessing."""

import pytest

from spatial_ttt_ros.spatial.answers import parse_answer, vsi_extract
from spatial_ttt_ros.spatial.prompts import build_prompt


def test_vsi_extract_is_the_official_rule():
    assert vsi_extract("B. left") == "B"
    assert vsi_extract("3.5 meters.") == "3.5"
    assert vsi_extract("3...") == "3"
    assert vsi_extract("12") == "12"
    # Split on single spaces only, like the official code: a newline stays inside the token.
    assert vsi_extract("3\nmeters") == "3\nmeters"
    assert vsi_extract("") == ""


@pytest.mark.parametrize(
    "kind, text, value",
    [
        ("count", "3", 3.0),
        ("count", "3.", 3.0),
        ("count", "three", 3.0),
        ("count", "Twenty chairs", 20.0),
        ("count", "4 chairs", 4.0),
        ("abs_distance", "2.5", 2.5),
        ("abs_distance", "3 meters", 3.0),
        ("abs_distance", "250cm", 2.5),
        ("abs_distance", "10 feet", 3.048),
        ("abs_distance", "1500 mm.", 1.5),
        ("object_size", "120", 1.2),  # VSI asks in centimetres
        ("object_size", "120cm", 1.2),
        ("object_size", "1.2 m", 1.2),
        ("object_size", "1.2 meters", 1.2),
        ("room_size", "20", 20.0),
        ("room_size", "20 m^2", 20.0),
        ("room_size", "20 square meters", 20.0),
        ("room_size", "100 sq ft", 9.290304),
        ("abs_distance", "<think>hmm, 4?</think><answer>2 m</answer>", 2.0),
    ],
)
def test_numbers_with_units(kind, text, value):
    a = parse_answer(kind, text)
    assert a.ok, a.reason
    assert a.value == pytest.approx(value)
    assert a.unit == {"count": "count", "room_size": "m^2"}.get(kind, "m")


@pytest.mark.parametrize(
    "kind, text, reason",
    [
        ("count", "many", "expected a number"),
        ("count", "2.5", "whole number"),
        ("count", "3 m", "takes no unit"),
        ("abs_distance", "", "empty answer"),
        ("abs_distance", "The distance is 3 m", "expected a number"),
        ("abs_distance", "-2", "cannot be negative"),
        ("abs_distance", "1,200", "unreadable number"),
        ("abs_distance", "3/4", "unreadable number"),
        ("abs_distance", "3x", "unreadable number"),
        ("abs_distance", "12 m^2", "does not fit abs_distance"),
        ("room_size", "4 m", "expected an area"),
        ("object_size", "inf", "expected a number"),
    ],
)
def test_unparseable_numbers_fail_with_reason(kind, text, reason):
    a = parse_answer(kind, text)
    assert not a.ok and a.value is None
    assert reason in a.reason


def test_number_word_only_for_counts():
    assert not parse_answer("abs_distance", "three").ok


def test_choice_formats():
    p = build_prompt("rel_direction", ["bed", "tv", "lamp"])  # A. left B. right C. back
    for text in ("B", "B.", "(B)", "b", "B)", "right", "Right.", "B. right", "B because it is on my right"):
        a = parse_answer(p, text)
        assert a.ok, (text, a.reason)
        assert (a.choice, a.choice_text) == ("B", "right")
    assert parse_answer("rel_direction", "c").choice == "C"  # bare kind: letters only


@pytest.mark.parametrize(
    "text, reason",
    [
        ("D", "not among the 3 options A-C"),
        ("The answer is B", "expected an option letter"),
        ("a lamp", "expected an option letter"),
        ("A. right", "is not 'left'"),
        ("front", "expected an option letter"),
    ],
)
def test_choice_failures(text, reason):
    a = parse_answer(build_prompt("rel_direction", ["bed", "tv", "lamp"]), text)
    assert not a.ok and a.choice == ""
    assert reason in a.reason


def test_free_form_passes_text_and_bad_type_raises():
    a = parse_answer("free_form", "  There are two chairs.  ")
    assert a.ok and a.text == "There are two chairs."
    with pytest.raises(ValueError, match="must be a string"):
        parse_answer("count", None)
