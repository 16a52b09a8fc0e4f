"""Prompt templates: exact VSI-Bench layout (REFERENCE_SPEC §9.1, §6.6) and validation."""

import pytest

from spatial_ttt_ros.spatial.prompts import (
    MANY_ROOMS_SENTENCE,
    QuestionKind,
    build_prompt,
    format_options,
    kind_from_vsi_type,
    kind_spec,
    question_text,
    vsi_question_type,
)

MANY = " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total."


def test_many_rooms_sentence_is_verbatim_typo_included():
    assert MANY_ROOMS_SENTENCE == MANY


def test_numeric_prompt_exact_text_with_and_without_sentence():
    p = build_prompt("count", ["chair"], append_many_rooms=False)
    assert p.text == (
        "These are frames of a video.\n"
        "How many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase."
    )
    assert (p.kind, p.expects, p.unit, p.options) == (QuestionKind.COUNT, "number", "count", ())
    assert build_prompt("count", ["chair"]).text == p.text + MANY


def test_mc_prompt_exact_text_letters_added():
    p = build_prompt("rel_distance", ["sofa", "chair", "lamp"], options=["chair", "lamp"], append_many_rooms=False)
    assert p.text == (
        "These are frames of a video.\n"
        "Measuring from the closest point of each object, which of these objects (chair, lamp) is the closest "
        "to the sofa?\n"
        "If there are multiple instances of an object category, measure to the closest.\n"
        "Options:\n"
        "A. chair\n"
        "B. lamp\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert p.options == ("A. chair", "B. lamp") and p.option_texts == ("chair", "lamp")
    assert build_prompt("rel_distance", ["sofa", "chair", "lamp"], options=["chair", "lamp"]).text == p.text + MANY


def test_rel_direction_defaults_and_difficulties():
    easy = build_prompt("rel_direction", ["bed", "tv", "lamp"], difficulty="easy", append_many_rooms=False)
    assert "is the lamp to the left or the right of the tv?" in easy.text
    assert easy.options == ("A. left", "B. right") and easy.difficulty == "easy"
    medium = build_prompt("rel_direction", ["bed", "tv", "lamp"])
    assert medium.difficulty == "medium" and medium.options == ("A. left", "B. right", "C. back")
    assert "turn at least 135 degrees" in medium.question
    hard = build_prompt("rel_direction", ["bed", "tv", "lamp"], difficulty="hard")
    assert hard.option_texts == ("front-left", "front-right", "back-left", "back-right")


def test_question_override_and_free_form_and_pre_prompt():
    p = build_prompt("abs_distance", question="How far is the door from the sofa (in meters)?",
                     append_many_rooms=False, pre_prompt="")
    assert p.text.splitlines() == ["These are frames of a video.", "How far is the door from the sofa (in meters)?",
                                   "Please answer the question using a single word or phrase."]
    f = build_prompt("free_form", question="  Describe the room.  ", append_many_rooms=False)
    assert f.text == "Describe the room." and f.expects == "text"
    assert build_prompt("object_size", ["sofa"], pre_prompt="Robot view.").text.startswith("Robot view.\n")


def test_route_plan_and_appearance_order_wording():
    q = question_text("route_plan", ["bed", "tv", "toilet"])
    assert q.endswith("1. [please fill in] 2. Go forward until the toilet. You have reached the final destination.")
    assert question_text("appearance_order", ["a", "b", "c", "d"]).endswith("in the video: a, b, c, d?")
    assert "measured in centimeters" in question_text("object_size", ["sofa"])


def test_kind_facts_and_vsi_types():
    assert kind_spec("object_size").unit == "m" and kind_spec("room_size").unit == "m^2"
    assert kind_spec("route_plan").answer_type == "MC"
    assert vsi_question_type("rel_direction", "hard") == "object_rel_direction_hard"
    assert kind_from_vsi_type("object_rel_direction_easy") == (QuestionKind.REL_DIRECTION, "easy")
    assert kind_from_vsi_type("obj_appearance_order") == (QuestionKind.APPEARANCE_ORDER, "")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="counting", objects=["chair"]), "unknown question kind 'counting'"),
        (dict(kind="abs_distance", objects=["chair"]), r"needs 2 object names, got 1"),
        (dict(kind="count", objects=["chair", "table"]), "needs 1 object names, got 2"),
        (dict(kind="count", objects=["  "]), r"objects\[0\] must be a non-empty name"),
        (dict(kind="rel_distance", objects=["a", "b", "c"]), "needs options, got none"),
        (dict(kind="appearance_order", objects=["a", "b"], options=["only"]), "needs 2 to 26 options, got 1"),
        (dict(kind="appearance_order", objects=["a", "b"], options=[f"o{i}" for i in range(27)]), "got 27"),
        (dict(kind="count", question="x" * 4001), "4001 characters long; the limit is 4000"),
        (dict(kind="count", objects=["chair"], options=["1", "2"]), "numerical and takes no options"),
        (dict(kind="rel_direction", objects=["a", "b", "c"], difficulty="extreme"), "'extreme'"),
        (dict(kind="count", objects=["chair"], difficulty="easy"), "only for rel_direction"),
        (dict(kind="free_form"), "free_form needs a non-empty question"),
        (dict(kind="appearance_order", objects=["a", "b"], options=["A. x", "C. y"]), "lettered 'C'"),
        (dict(kind="appearance_order", objects=["a", "b"], options=["x", "X"]), "repeats an earlier option"),
    ],
)
def test_validation_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_prompt(**kwargs)


def test_format_options_keeps_correct_letters():
    assert format_options(["A. left", "right"]) == ("A. left", "B. right")
    with pytest.raises(ValueError, match="string"):
        format_options("AB")
