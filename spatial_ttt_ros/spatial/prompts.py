"""Question kinds and their VSI-Bench prompt templates.

Sources (facts, re-worded here; no code copied):

* Prompt layout: REFERENCE_SPEC.md §9.1, which matches `vsibench_doc_to_text` in
  vision-x-nyu/thinking-in-space `lmms_eval/tasks/vsibench/utils.py`. Numerical: pre-prompt, newline,
  question, newline, "Please answer the question using a single word or phrase.". Multiple choice:
  the lines pre-prompt, question, "Options:", one line per option, "Answer with the option's letter
  from the given choices directly.". The pre-prompt is "These are frames of a video." whenever the
  configured one is empty.
* The appended sentence: REFERENCE_SPEC.md §6.6 / §10.2. The Spatial-TTT evaluation wrapper adds
  " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final
  total." to every prompt (typo "maybe" kept on purpose: it is what the model saw).
* Question wording per kind: the VSI-Bench question templates of the thinking-in-space release
  (dataset nyu-visionx/VSI-Bench). Counting asks "How many {category}(s) are in this room?"; object
  size asks for the longest dimension "measured in centimeters"; room size "in square meters" with
  a note on combined space; absolute distance "Measuring from the closest point of each object ...
  (in meters)"; relative distance lists 2-4 candidate categories; relative direction has three
  difficulties (easy: left/right of the orienting object, medium: left/right/back with "back" meaning
  a turn of at least 135 degrees, hard: the four quadrants); appearance order lists categories;
  route planning lists numbered actions with "[please fill in]" turns.

A `QuestionKind` is our name for a question; `vsi_question_type` maps it to VSI-Bench's raw
`question_type` strings used by `metrics.aggregate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PRE_PROMPT = "These are frames of a video."
NA_POST_PROMPT = "Please answer the question using a single word or phrase."
MCA_POST_PROMPT = "Answer with the option's letter from the given choices directly."
# Appended verbatim by the Spatial-TTT evaluation wrapper (REFERENCE_SPEC §6.6); typo intended.
MANY_ROOMS_SENTENCE = (
    " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total."
)

MAX_QUESTION_CHARS = 4000
MAX_OBJECT_NAME_CHARS = 200
MAX_OPTION_CHARS = 500
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

DIFFICULTIES = ("easy", "medium", "hard")
# Default option lists per relative-direction difficulty (the answers VSI-Bench accepts).
REL_DIRECTION_OPTIONS: dict[str, tuple[str, ...]] = {
    "easy": ("left", "right"),
    "medium": ("left", "right", "back"),
    "hard": ("front-left", "front-right", "back-left", "back-right"),
}
ROUTE_FILL_IN = "[please fill in]"
# robot_direction: the quarter of the robot's current heading the object lies in (qa.py).
ROBOT_DIRECTION_OPTIONS = ("front", "left", "behind", "right")


class QuestionKind(StrEnum):
    """Our question kinds; the str value is the wire name used in services and files."""

    COUNT = "count"
    ABS_DISTANCE = "abs_distance"
    OBJECT_SIZE = "object_size"
    ROOM_SIZE = "room_size"
    REL_DISTANCE = "rel_distance"
    REL_DIRECTION = "rel_direction"
    ROUTE_PLAN = "route_plan"
    APPEARANCE_ORDER = "appearance_order"
    FREE_FORM = "free_form"
    # Robot-relative kinds (not VSI-Bench): answered from the pose channel (config.pose_text).
    LOCATE = "locate"
    ROBOT_DISTANCE = "robot_distance"
    ROBOT_DIRECTION = "robot_direction"


@dataclass(frozen=True)
class KindSpec:
    """Static facts about one kind: object-name count, answer type and SI unit."""

    kind: QuestionKind
    min_objects: int
    max_objects: int
    answer_type: str  # "NA" numerical, "MC" multiple choice, "XY" a map position, "text" free form
    unit: str  # SI unit of a numerical answer; "" for MC and free form
    options_from_caller: bool  # MC kinds whose options cannot be derived from the question

    @property
    def expects(self) -> str:
        return {"NA": "number", "MC": "choice", "XY": "position", "text": "text"}[self.answer_type]


_K = QuestionKind
KIND_SPECS: dict[QuestionKind, KindSpec] = {
    _K.COUNT: KindSpec(_K.COUNT, 1, 1, "NA", "count", False),
    _K.ABS_DISTANCE: KindSpec(_K.ABS_DISTANCE, 2, 2, "NA", "m", False),
    # VSI-Bench asks in centimetres; answers.parse_answer converts to metres.
    _K.OBJECT_SIZE: KindSpec(_K.OBJECT_SIZE, 1, 1, "NA", "m", False),
    _K.ROOM_SIZE: KindSpec(_K.ROOM_SIZE, 0, 0, "NA", "m^2", False),
    # (target category, 2-4 candidate categories), as the V1/V2/V3 templates.
    _K.REL_DISTANCE: KindSpec(_K.REL_DISTANCE, 3, 5, "MC", "", True),
    # (positioning object, orienting object, querying object).
    _K.REL_DIRECTION: KindSpec(_K.REL_DIRECTION, 3, 3, "MC", "", False),
    # (start, facing, waypoint..., destination): one "[please fill in]" turn before each leg.
    _K.ROUTE_PLAN: KindSpec(_K.ROUTE_PLAN, 3, 8, "MC", "", True),
    # Categories in the order they are listed in the question (VSI-Bench lists four).
    _K.APPEARANCE_ORDER: KindSpec(_K.APPEARANCE_ORDER, 2, 8, "MC", "", True),
    _K.FREE_FORM: KindSpec(_K.FREE_FORM, 0, 0, "text", "", False),
    # "x y" in metres in the map frame (the frame of the poses).
    _K.LOCATE: KindSpec(_K.LOCATE, 1, 1, "XY", "m", False),
    _K.ROBOT_DISTANCE: KindSpec(_K.ROBOT_DISTANCE, 1, 1, "NA", "m", False),
    _K.ROBOT_DIRECTION: KindSpec(_K.ROBOT_DIRECTION, 1, 1, "MC", "", False),
}
VSI_KINDS = tuple(k for k in QuestionKind if k not in (_K.FREE_FORM, _K.LOCATE, _K.ROBOT_DISTANCE, _K.ROBOT_DIRECTION))
ROBOT_KINDS = (_K.LOCATE, _K.ROBOT_DISTANCE, _K.ROBOT_DIRECTION)

_VSI_TYPES: dict[QuestionKind, str] = {
    _K.COUNT: "object_counting",
    _K.ABS_DISTANCE: "object_abs_distance",
    _K.OBJECT_SIZE: "object_size_estimation",
    _K.ROOM_SIZE: "room_size_estimation",
    _K.REL_DISTANCE: "object_rel_distance",
    _K.ROUTE_PLAN: "route_planning",
    _K.APPEARANCE_ORDER: "obj_appearance_order",
    # Our own question types for the robot-relative kinds (metrics.py scores them).
    _K.LOCATE: "robot_locate",
    _K.ROBOT_DISTANCE: "robot_distance",
    _K.ROBOT_DIRECTION: "robot_direction",
}


@dataclass(frozen=True)
class Prompt:
    """A ready-to-send prompt and what its answer should look like."""

    text: str  # the full user text given to the model
    kind: QuestionKind
    question: str  # the question sentence(s) inside `text`
    options: tuple[str, ...]  # lettered: ("A. left", "B. right"); empty for numerical kinds
    expects: str  # "number" | "choice" | "text"
    unit: str  # SI unit of the parsed value ("count", "m", "m^2") or ""
    difficulty: str = ""  # rel_direction only

    @property
    def option_texts(self) -> tuple[str, ...]:
        """The options without their "A. " prefixes."""
        return tuple(o[3:] for o in self.options)


def parse_kind(kind: QuestionKind | str) -> QuestionKind:
    """The QuestionKind for `kind` (enum or its string value)."""
    if isinstance(kind, QuestionKind):
        return kind
    try:
        return QuestionKind(kind)
    except ValueError:
        names = ", ".join(k.value for k in QuestionKind)
        raise ValueError(f"unknown question kind {kind!r}; expected one of: {names}") from None


def kind_spec(kind: QuestionKind | str) -> KindSpec:
    return KIND_SPECS[parse_kind(kind)]


def is_numeric(kind: QuestionKind | str) -> bool:
    return kind_spec(kind).answer_type == "NA"


def is_multiple_choice(kind: QuestionKind | str) -> bool:
    return kind_spec(kind).answer_type == "MC"


def vsi_question_type(kind: QuestionKind | str, difficulty: str = "") -> str:
    """VSI-Bench's raw `question_type` for a kind (rel_direction needs its difficulty); the robot
    kinds have types of our own ("robot_locate", "robot_distance", "robot_direction")."""
    k = parse_kind(kind)
    if k is QuestionKind.REL_DIRECTION:
        return f"object_rel_direction_{_check_difficulty(difficulty)}"
    if k is QuestionKind.FREE_FORM:
        raise ValueError("free_form has no VSI-Bench question type")
    return _VSI_TYPES[k]


def kind_from_vsi_type(question_type: str) -> tuple[QuestionKind, str]:
    """(kind, difficulty) for a VSI-Bench raw `question_type`; difficulty is "" except rel_direction."""
    prefix = "object_rel_direction_"
    if question_type.startswith(prefix) and question_type[len(prefix):] in DIFFICULTIES:
        return QuestionKind.REL_DIRECTION, question_type[len(prefix):]
    for k, name in _VSI_TYPES.items():
        if name == question_type:
            return k, ""
    known = sorted(_VSI_TYPES.values()) + [prefix + d for d in DIFFICULTIES]
    raise ValueError(f"unknown VSI-Bench question_type {question_type!r}; expected one of: {', '.join(known)}")


def _check_difficulty(difficulty: str) -> str:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"rel_direction difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    return difficulty


def _check_objects(spec: KindSpec, objects: Sequence[str], required: bool) -> tuple[str, ...]:
    if isinstance(objects, str):
        raise ValueError(f"objects must be a sequence of names, got the string {objects!r}")
    names = tuple(objects)
    n = len(names)
    if (required and n < spec.min_objects) or n > spec.max_objects:
        want = str(spec.min_objects) if spec.min_objects == spec.max_objects else (
            f"{spec.min_objects} to {spec.max_objects}")
        raise ValueError(f"{spec.kind.value} needs {want} object names, got {n}: {list(names)!r}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"objects[{i}] must be a non-empty name, got {name!r}")
        if len(name) > MAX_OBJECT_NAME_CHARS or "\n" in name:
            raise ValueError(
                f"objects[{i}] must be one line of at most {MAX_OBJECT_NAME_CHARS} characters, got {name[:60]!r}...")
    return tuple(n.strip() for n in names)


def question_text(kind: QuestionKind | str, objects: Sequence[str], difficulty: str = "") -> str:
    """The VSI-Bench question sentence(s) for `kind` built from object names."""
    spec = kind_spec(kind)
    o = _check_objects(spec, objects, required=True)
    k = spec.kind
    if k is QuestionKind.COUNT:
        return f"How many {o[0]}(s) are in this room?"
    if k is QuestionKind.ABS_DISTANCE:
        return (f"Measuring from the closest point of each object, what is the direct distance between "
                f"the {o[0]} and the {o[1]} (in meters)?")
    if k is QuestionKind.OBJECT_SIZE:
        return (f"What is the length of the longest dimension (length, width, or height) of the {o[0]}, "
                f"measured in centimeters?")
    if k is QuestionKind.ROOM_SIZE:
        return ("What is the size of this room (in square meters)?\n"
                "If multiple rooms are shown, estimate the size of the combined space.")
    if k is QuestionKind.REL_DISTANCE:
        return (f"Measuring from the closest point of each object, which of these objects ({', '.join(o[1:])}) "
                f"is the closest to the {o[0]}?\n"
                "If there are multiple instances of an object category, measure to the closest.")
    if k is QuestionKind.REL_DIRECTION:
        d = _check_difficulty(difficulty or "medium")
        head = f"If I am standing by the {o[0]} and facing the {o[1]}, is the {o[2]}"
        if d == "easy":
            return f"{head} to the left or the right of the {o[1]}?"
        if d == "medium":
            return (f"{head} to my left, right, or back?\n"
                    "An object is to my back if I would have to turn at least 135 degrees in order to face it.")
        return (f"{head} to my front-left, front-right, back-left, or back-right?\nThe directions refer to the "
                "quadrants of a Cartesian plane (if I am standing at the origin and facing along the "
                "positive y-axis).")
    if k is QuestionKind.ROUTE_PLAN:
        steps = []
        for name in o[2:]:
            steps += [ROUTE_FILL_IN, f"Go forward until the {name}"]
        actions = " ".join(f"{i + 1}. {s}" for i, s in enumerate(steps))
        return (f"You are a robot beginning at the {o[0]} facing the {o[1]}. You want to navigate to the "
                f"{o[-1]}. You will perform the following actions (Note: for each {ROUTE_FILL_IN}, choose "
                f"either 'turn back,' 'turn left,' or 'turn right.'): {actions}. "
                "You have reached the final destination.")
    if k is QuestionKind.APPEARANCE_ORDER:
        return f"What will be the first-time appearance order of the following categories in the video: {', '.join(o)}?"
    if k is QuestionKind.LOCATE:
        return (f"Where is the {o[0]}? Give its position in the map frame as x y in meters.\n"
                "If there are several, give the one nearest to me.")
    if k is QuestionKind.ROBOT_DISTANCE:
        return (f"How far is the {o[0]} from me now (in meters)?\n"
                "Measure on the floor to its closest point; if there are several, to the nearest.")
    if k is QuestionKind.ROBOT_DIRECTION:
        return (f"Where is the {o[0]} relative to me now: in front of me, to my left, behind me, or to my right?\n"
                "If there are several, answer for the nearest.")
    raise ValueError("free_form has no template; pass the question text")


_LETTERED = re.compile(r"^([A-Z])\.\s+(\S.*)$", re.DOTALL)


def format_options(options: Sequence[str]) -> tuple[str, ...]:
    """Options as "A. text" lines; a given "B. " prefix is kept if it is the right letter."""
    if isinstance(options, str):
        raise ValueError(f"options must be a sequence of strings, got the string {options!r}")
    opts = list(options)
    if not 2 <= len(opts) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {len(opts)}: {opts!r}")
    out, seen = [], set()
    for i, opt in enumerate(opts):
        if not isinstance(opt, str) or not opt.strip():
            raise ValueError(f"options[{i}] must be non-empty text, got {opt!r}")
        opt = opt.strip()
        if len(opt) > MAX_OPTION_CHARS or "\n" in opt:
            raise ValueError(f"options[{i}] must be one line of at most {MAX_OPTION_CHARS} characters, got {opt[:60]!r}")
        m = _LETTERED.match(opt)
        if m:
            if m.group(1) != LETTERS[i]:
                raise ValueError(f"options[{i}] is lettered {m.group(1)!r} but is in position {LETTERS[i]!r}: {opt!r}")
            body = m.group(2).strip()
        else:
            body = opt
        if body.lower() in seen:
            raise ValueError(f"options[{i}] repeats an earlier option: {body!r}")
        seen.add(body.lower())
        out.append(f"{LETTERS[i]}. {body}")
    return tuple(out)


def build_prompt(
    kind: QuestionKind | str,
    objects: Sequence[str] = (),
    question: str = "",
    options: Sequence[str] = (),
    *,
    difficulty: str = "",
    append_many_rooms: bool = True,
    pre_prompt: str = DEFAULT_PRE_PROMPT,
) -> Prompt:
    """The full prompt text for one question, in the exact VSI-Bench layout.

    kind: a QuestionKind or its value. objects: the names the template needs (see KIND_SPECS);
    optional when `question` is given. question: overrides the template sentence; required for
    free_form. options: MC options, lettered A., B., ... if not already; required for rel_distance,
    route_plan and appearance_order; rel_direction defaults to its difficulty's answers.
    difficulty: rel_direction only, "easy" | "medium" | "hard" (default "medium").
    append_many_rooms: add the evaluation wrapper's sentence (REFERENCE_SPEC §6.6) to every kind.
    pre_prompt: an empty string falls back to the default, as the official harness does.
    free_form text is the question itself, with no pre-prompt and no post-prompt.
    """
    spec = kind_spec(kind)
    k = spec.kind
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    if difficulty and k is not QuestionKind.REL_DIRECTION:
        raise ValueError(f"difficulty is only for rel_direction, got difficulty={difficulty!r} for {k.value}")
    if k is QuestionKind.REL_DIRECTION:
        difficulty = _check_difficulty(difficulty or "medium")
    if not isinstance(pre_prompt, str) or len(pre_prompt) > MAX_QUESTION_CHARS:
        raise ValueError(f"pre_prompt must be a string of at most {MAX_QUESTION_CHARS} characters")
    pre = pre_prompt.strip() or DEFAULT_PRE_PROMPT

    lettered: tuple[str, ...] = ()
    if k is QuestionKind.FREE_FORM:
        if not question:
            raise ValueError("free_form needs a non-empty question")
        if objects or options:
            raise ValueError("free_form takes neither objects nor options")
        body = question
    else:
        if question:
            _check_objects(spec, objects, required=False)
        else:
            question = question_text(k, objects, difficulty)
        if spec.answer_type in ("NA", "XY"):
            if options:
                raise ValueError(f"{k.value} is numerical and takes no options, got {list(options)!r}")
            body = pre + "\n" + question + "\n" + NA_POST_PROMPT
        else:
            if not options:
                if spec.options_from_caller:
                    raise ValueError(f"{k.value} is multiple choice and needs options, got none")
                options = (ROBOT_DIRECTION_OPTIONS if k is QuestionKind.ROBOT_DIRECTION
                           else REL_DIRECTION_OPTIONS[difficulty])
            lettered = format_options(options)
            body = "\n".join([pre, question, "Options:\n" + "\n".join(lettered), MCA_POST_PROMPT])
    text = body + MANY_ROOMS_SENTENCE if append_many_rooms else body
    return Prompt(text=text, kind=k, question=question, options=lettered, expects=spec.expects,
                  unit=spec.unit, difficulty=difficulty)
