"""Turn a model's generated text into a typed answer.

Two readers live here:

* `vsi_extract` is VSI-Bench's own rule, byte for byte in behaviour (REFERENCE_SPEC §9.1;
  `fuzzy_matching` in thinking-in-space `lmms_eval/tasks/vsibench/utils.py`): split on single
  spaces, keep the first piece, strip trailing periods, then surrounding whitespace. Scoring
  (`metrics.score_item`) uses only this, so our scores match the official harness.
* `parse_answer` is what the ROS service returns to a planner. It follows the same first-token
  idea but understands units ("3 meters", "120cm", "12 sq m"), number words for counts
  ("three"), and option letters written as "B", "B.", "(B)", "b" or as the option's exact text.
  It never guesses: anything it cannot read unambiguously gives ok=False and a reason.
* `locate` answers are a map position "x y" in metres (`format_position` writes them: one
  decimal); the reader takes exactly two numbers at the start, optionally "x=", "(", ",", a unit
  "m" after each; anything else (one number, a word first, "1.2/3") gives ok=False.

Units: values are returned in the kind's SI unit (prompts.KIND_SPECS): counts as plain numbers,
distances and sizes in metres, areas in square metres. A number with no unit takes the unit the
VSI-Bench question asked for: metres for abs_distance, centimetres for object_size (so "120"
becomes 1.2 m), square metres for room_size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from spatial_ttt_ros.spatial.prompts import (
    LETTERS,
    ROBOT_DIRECTION_OPTIONS,
    KindSpec,
    Prompt,
    QuestionKind,
    kind_spec,
)


@dataclass(frozen=True)
class ParsedAnswer:
    ok: bool
    value: float | None = None  # numerical kinds, in `unit`
    unit: str = ""  # "count" | "m" | "m^2" | "" (MC, free form, failures)
    choice: str = ""  # MC: the option letter, "A".."Z"
    choice_text: str = ""  # MC: the option's text when the prompt's options are known
    reason: str = ""  # why ok is False
    text: str = ""  # the answer text that was read (after removing reasoning wrappers)
    position: tuple[float, float] | None = None  # locate: (x, y) metres in the map frame


def vsi_extract(text: str) -> str:
    """VSI-Bench's answer extraction: first space-separated piece, trailing periods stripped.

    Splits on the single space character exactly as the official code does (a newline does not
    split), then strips trailing "." and surrounding whitespace.
    """
    return text.split(" ")[0].rstrip(".").strip()


_LENGTH_UNITS = {
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01, "centimetres": 0.01,
    "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001, "millimetres": 0.001,
    "ft": 0.3048, "foot": 0.3048, "feet": 0.3048,
    # "in" is left out on purpose: "3 in the kitchen" must not read as inches.
    "inch": 0.0254, "inches": 0.0254,
}
_SQ_FT = 0.3048**2
_AREA_UNITS = {
    "m2": 1.0, "m^2": 1.0, "m²": 1.0, "sqm": 1.0, "sq m": 1.0, "sq. m": 1.0, "sq meters": 1.0,
    "square meter": 1.0, "square meters": 1.0, "square metre": 1.0, "square metres": 1.0,
    "ft2": _SQ_FT, "ft^2": _SQ_FT, "ft²": _SQ_FT, "sq ft": _SQ_FT, "sq. ft": _SQ_FT, "sqft": _SQ_FT,
    "square foot": _SQ_FT, "square feet": _SQ_FT,
}
_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split())
}

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_UNIT = re.compile(
    r"\s*(" + "|".join(re.escape(u) for u in sorted({**_LENGTH_UNITS, **_AREA_UNITS}, key=len, reverse=True))
    + r")(?=$|[\s.,;:!?)])",
    re.IGNORECASE,
)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_LETTER_ONLY = re.compile(r"^\(?([A-Za-z])\)?[.):]?$")
_LETTER_PREFIX = re.compile(r"^\(?([A-Z])[.):]\)?\s+(\S.*)$", re.DOTALL)

# Default unit of a bare number per numerical kind: what the VSI-Bench question asks for.
_BARE_NUMBER_UNIT = {
    QuestionKind.COUNT: ("count", 1.0),
    QuestionKind.ABS_DISTANCE: ("m", 1.0),
    QuestionKind.OBJECT_SIZE: ("cm", 0.01),
    QuestionKind.ROOM_SIZE: ("m^2", 1.0),
    QuestionKind.ROBOT_DISTANCE: ("m", 1.0),
}
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_POSITION = re.compile(
    r"^\(?\s*(?:x\s*[=:]\s*)?(" + _NUM + r")(?:\s*m\b)?(?:\s*[,;]\s*|\s+)(?:y\s*[=:]\s*)?(" + _NUM
    + r")\s*(?:m\b)?\s*\)?(?=$|[\s,;!?]|\.(?!\d))", re.IGNORECASE)


def format_position(x: float, y: float) -> str:
    """The locate answer text: "x y" in metres, one decimal ("1.2 -0.4"; never "-0.0")."""
    def one(v: float) -> str:
        if not math.isfinite(v):
            raise ValueError(f"a position must be finite, got {v!r}")
        text = f"{v:.1f}"
        return "0.0" if text == "-0.0" else text
    return f"{one(float(x))} {one(float(y))}"


def _parse_position(text: str) -> ParsedAnswer:
    m = _POSITION.match(text)
    if not m:
        return _fail(f"expected a position 'x y' in meters at the start of the answer, got {text[:40]!r}", text)
    x, y = float(m.group(1)), float(m.group(2))
    if not (math.isfinite(x) and math.isfinite(y)):
        return _fail(f"position is not finite: {m.group(0)!r}", text)
    return ParsedAnswer(ok=True, unit="m", position=(x, y), text=text)


def _clean(text: str) -> str:
    """Drop a <think> block and keep <answer>/\\boxed{} content, like lmms-eval's reasoning filter."""
    text = _THINK.sub("", text)
    m = _ANSWER_TAG.search(text)
    if m:
        text = m.group(1)
    m = _BOXED.search(text)
    if m:
        text = m.group(1)
    return text.strip()


def _fail(reason: str, text: str) -> ParsedAnswer:
    return ParsedAnswer(ok=False, reason=reason, text=text)


def _parse_number(spec: KindSpec, text: str) -> ParsedAnswer:
    kind = spec.kind
    first = text.split()[0].rstrip(".,;:!").lower() if text.split() else ""
    if kind is QuestionKind.COUNT and first in _NUMBER_WORDS:
        return ParsedAnswer(ok=True, value=float(_NUMBER_WORDS[first]), unit="count", text=text)

    m = _NUMBER.match(text)
    if not m:
        return _fail(f"expected a number at the start of the answer, got {text[:40]!r}", text)
    value = float(m.group(0))
    rest = text[m.end():]
    um = _UNIT.match(rest)
    unit = um.group(1).lower() if um else ""
    if um:
        rest = rest[um.end():]
    # Whatever follows the number (and unit) must start a new word: "3, maybe" is fine,
    # "1,200", "3/4" and "3x" are not read.
    ends_cleanly = not rest or rest[0].isspace() or (rest[0] in ".,;:!?)" and not rest[1:2].isdigit())
    if not ends_cleanly:
        return _fail(f"unreadable number {text.split()[0]!r}", text)
    if not math.isfinite(value):
        return _fail(f"number is not finite: {m.group(0)!r}", text)
    if value < 0:
        return _fail(f"a {kind.value} answer cannot be negative, got {value:g}", text)

    if kind is QuestionKind.COUNT:
        if unit:
            return _fail(f"a count takes no unit, got {unit!r}", text)
        if value != int(value):
            return _fail(f"a count must be a whole number, got {value:g}", text)
        return ParsedAnswer(ok=True, value=value, unit="count", text=text)

    wants_area = kind is QuestionKind.ROOM_SIZE
    if not unit:
        factor = _BARE_NUMBER_UNIT[kind][1]
    elif wants_area and unit in _AREA_UNITS:
        factor = _AREA_UNITS[unit]
    elif not wants_area and unit in _LENGTH_UNITS:
        factor = _LENGTH_UNITS[unit]
    else:
        want = "an area (m^2, sq ft, ...)" if wants_area else "a length (m, cm, mm, ft, ...)"
        return _fail(f"unit {unit!r} does not fit {kind.value}; expected {want}", text)
    return ParsedAnswer(ok=True, value=value * factor, unit=spec.unit, text=text)


def _norm(s: str) -> str:
    return " ".join(s.lower().split()).rstrip(".")


def _parse_choice(options: tuple[str, ...], text: str) -> ParsedAnswer:
    n = len(options) if options else len(LETTERS)
    letter = ""
    m = _LETTER_ONLY.match(text.rstrip("."))
    if m:
        letter = m.group(1).upper()
    elif options and _norm(text) in [_norm(o) for o in options]:
        letter = LETTERS[[_norm(o) for o in options].index(_norm(text))]
    else:
        m = _LETTER_PREFIX.match(text)
        if m and options:
            letter, body = m.group(1), m.group(2)
            idx = LETTERS.index(letter)
            if idx < n and _norm(body) != _norm(options[idx]):
                return _fail(f"answer names option {letter} but its text {body!r} is not {options[idx]!r}", text)
        else:
            token = text.split()[0]
            m = _LETTER_ONLY.match(token.rstrip("."))
            # A bare lower-case letter followed by words is English ("a chair"), not an option.
            if m and (m.group(1).isupper() or token != m.group(1)):
                letter = m.group(1).upper()
    if not letter:
        return _fail(f"expected an option letter or an option's text, got {text[:40]!r}", text)
    idx = LETTERS.index(letter)
    if idx >= n:
        return _fail(f"option {letter} is not among the {n} options A-{LETTERS[n - 1]}", text)
    return ParsedAnswer(ok=True, choice=letter, choice_text=options[idx] if options else "", text=text)


def parse_answer(prompt_or_kind: Prompt | QuestionKind | str, text: str) -> ParsedAnswer:
    """Read `text` as the answer to a prompt (options known) or to a bare kind (letters only)."""
    if not isinstance(text, str):
        raise ValueError(f"answer text must be a string, got {type(text).__name__}")
    if isinstance(prompt_or_kind, Prompt):
        spec, options = kind_spec(prompt_or_kind.kind), prompt_or_kind.option_texts
    else:
        spec, options = kind_spec(prompt_or_kind), ()
    cleaned = _clean(text)
    if spec.answer_type == "text":
        if not cleaned:
            return _fail("empty answer", cleaned)
        return ParsedAnswer(ok=True, text=cleaned)
    if not cleaned.rstrip("."):
        return _fail("empty answer", cleaned)
    if spec.answer_type == "NA":
        return _parse_number(spec, cleaned)
    if spec.answer_type == "XY":
        return _parse_position(cleaned)
    if spec.kind is QuestionKind.ROBOT_DIRECTION and not options:
        options = ROBOT_DIRECTION_OPTIONS
    return _parse_choice(options, cleaned)
