"""A SpatialQuery request -> prompt, and an engine Answer -> the response fields (no rclpy).

The node only copies these fields into the srv response; validation, defaults, the typed reading
of the answer and the admission bound live here, testable without ROS.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.params import MAX_TIMEOUT_S
from spatial_ttt_ros.spatial.answers import parse_answer
from spatial_ttt_ros.spatial.prompts import Prompt, build_prompt, parse_kind

MAX_OBJECTS = 32
MAX_MESSAGE = 400  # characters of a response message
MAX_OPTIONS = 26


@dataclass(frozen=True)
class PreparedQuery:
    prompt: Prompt
    max_new_tokens: int
    timeout_s: float


def prepare_query(kind: str, objects: Sequence[str], question: str, options: Sequence[str],
                  max_new_tokens: int, timeout_s: float, *, default_max_new_tokens: int,
                  max_new_tokens_limit: int, default_timeout_s: float,
                  append_many_rooms: bool = True) -> PreparedQuery:
    """Validate a request and build its prompt; ValueError naming what is wrong.

    max_new_tokens 0 and timeout_s 0 mean the node's defaults.
    """
    parse_kind(kind)
    if len(objects) > MAX_OBJECTS:
        raise ValueError(f"at most {MAX_OBJECTS} object names, got {len(objects)}")
    if len(options) > MAX_OPTIONS:
        raise ValueError(f"at most {MAX_OPTIONS} options, got {len(options)}")
    tokens = int(max_new_tokens) or default_max_new_tokens
    if not 1 <= tokens <= max_new_tokens_limit:
        raise ValueError(f"max_new_tokens must be 1..{max_new_tokens_limit} (0 = default), got {max_new_tokens}")
    timeout = float(timeout_s)
    if not math.isfinite(timeout) or not 0 <= timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be a number of seconds in 0..{MAX_TIMEOUT_S:g} (0 = default), "
                         f"got {timeout_s:g}")
    prompt = build_prompt(kind, list(objects), question, list(options), append_many_rooms=append_many_rooms)
    return PreparedQuery(prompt=prompt, max_new_tokens=tokens, timeout_s=timeout or default_timeout_s)


@dataclass(frozen=True)
class QueryResult:
    """The SpatialQuery response fields except latency_s (field names as in the srv)."""

    success: bool
    message: str
    answer: str = ""
    value: float = math.nan
    unit: str = ""
    choice: str = ""
    choice_text: str = ""
    prompt: str = ""
    memory_stamp_s: float | None = None
    frames_in_memory: int = 0
    position: tuple[float, float] | None = None  # locate: (x, y) in frame_id, only when read from the answer
    frame_id: str = ""  # locate: the frame of position


def failure(message: str, prompt: Prompt | None = None, frames_in_memory: int = 0) -> QueryResult:
    """A refused or failed query; the message is cut to MAX_MESSAGE characters (it may quote input)."""
    return QueryResult(success=False, message=clip(message, MAX_MESSAGE), prompt="" if prompt is None else prompt.text,
                       frames_in_memory=frames_in_memory)


def answer_result(prompt: Prompt, answer: Any, frame_id: str = "") -> QueryResult:
    """Typed fields from an engine `Answer` (text, frames_seen, last_stamp_s).

    The model answered, so success is true even when its text cannot be read as the kind's type;
    then value stays NaN (numeric kinds keep their unit), position stays unset (locate) and
    message says why. A locate position is only ever what the answer says, in `frame_id` (the
    frame of the poses the memory was built from).
    """
    parsed = parse_answer(prompt, answer.text)
    located = prompt.expects == "position"
    numeric = prompt.expects == "number"
    if parsed.ok:
        message = "ok"
    else:
        message = f"answered, but the text is not a readable {prompt.expects}: {parsed.reason}"
    return QueryResult(
        success=True, message=message, answer=answer.text,
        value=float(parsed.value) if numeric and parsed.ok and parsed.value is not None else math.nan,
        unit=prompt.unit if numeric else "",
        choice=parsed.choice if parsed.ok else "", choice_text=parsed.choice_text if parsed.ok else "",
        prompt=prompt.text, memory_stamp_s=answer.last_stamp_s, frames_in_memory=int(answer.frames_seen),
        position=parsed.position if located and parsed.ok else None, frame_id=frame_id if located else "")


class AdmissionBound:
    """At most `limit` queries in flight; the rest are refused at once ("busy")."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._in_flight <= 0:
                raise RuntimeError("AdmissionBound.release() without a matching try_acquire()")
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight
