"""The one thread that owns the engine (no rclpy).

The engine is not thread-safe and a frame can take far longer than a camera period, so ROS
callbacks never touch it. They `push` keyframes into a bounded queue (full: the oldest waiting
frame is dropped and counted) and `submit` jobs (queries, save, load, reset) that the worker runs
between frames. While both wait, jobs get at most JOB_SHARE of the engine's recent time, so a flood
of queries cannot starve ingest (nor a fast camera the queries). A job is a function of the engine; its result or its
exception comes back through a `concurrent.futures.Future`, so a caller can wait with a timeout and
`cancel()` a job that has not started.

Failure policy: a ValueError from a frame's `transform` (rectification) or from `push_frame` is bad
input (counted as rejected, the frame is skipped); any exception from a job goes back to its caller;
any other exception while ingesting kills the thread, which is then visible (`snapshot().alive`)
until `ensure_alive` restarts it on the same engine and queues. Nothing stalls silently.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from spatial_ttt_ros.ros.param_table import clip


class Engine(Protocol):
    """What the worker needs of `spatial_ttt_ros.runtime.engine.StreamingEngine`."""

    def push_frame(self, image: np.ndarray, stamp_s: float, pose: np.ndarray | None = None) -> None: ...

    @property
    def counters(self) -> Any: ...

    @property
    def frames_in_memory(self) -> int: ...


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # [H, W, 3] uint8 RGB
    stamp_s: float  # camera stamp [s]
    pose: np.ndarray | None = None  # [4, 4] float64 camera-to-world, or None
    # run on the worker thread before the engine sees the image (rectification); ValueError = bad frame
    transform: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class WorkerSnapshot:
    alive: bool
    frames_ingested: int  # frames the engine accepted
    frames_rejected: int  # frames the engine refused (ValueError)
    frames_dropped: int  # frames pushed out of a full queue
    queue_depth: int  # frames waiting
    jobs_waiting: int
    frames_in_memory: int
    counters: Any  # the engine's EngineCounters after the last item, or None
    last_error: str  # the last rejection or job failure
    restarts: int
    death: str  # why the thread last died ("" if never)
    busy_s: float  # how long the current item has run [s]; 0 when idle
    segments: int = 0  # new segments started by a stamp jumping back (a clock restart)
    stamp_offset_s: float = 0.0  # added to frame stamps since the last such jump [s]


@dataclass
class _Job:
    fn: Callable[[Any], Any]
    future: Future = field(default_factory=Future)


_PREPARE = object()  # idle work: engine.prepare()
# While frames and jobs both wait, jobs (queries) get at most this share of the engine's recent time
# (a decaying sum, half-life SHARE_HALF_LIFE_S), frames the rest: a query flood cannot starve ingest,
# and frames arriving faster than the engine can take them cannot starve queries.
JOB_SHARE = 0.2
SHARE_HALF_LIFE_S = 10.0
REWIND_GAP_S = 1.0  # the time put between a memory's newest frame and a segment after a rewind [s]


class EngineWorker:
    def __init__(self, engine: Engine, queue_size: int, name: str = "spatial_ttt_engine", *,
                 prepare_when_idle: bool = False, rewind_s: float = 0.0) -> None:
        """`prepare_when_idle`: when the queues run empty after work, call `engine.prepare()` (if
        the engine has it) so the next question finds the memory ready to answer.
        `rewind_s` > 0: a frame stamped more than this before the memory's newest frame (a
        restarted clock, also after loading a memory file) ends the memory's segment
        (`engine.flush()`) and this and later stamps are shifted to follow the memory's by
        REWIND_GAP_S; `new_timeline` (after a reset or load) drops the shift."""
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.engine = engine
        self.name = name
        self._prepare_when_idle = prepare_when_idle and callable(getattr(engine, "prepare", None))
        self._idle_work = False
        self._frames: deque[Frame] = deque()
        self._queue_size = queue_size
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None
        self._ingested = self._rejected = self._dropped = self._restarts = 0
        self._last_error = self._death = ""
        self._death_traceback = ""
        self._rewind_s = rewind_s
        self._job_time = self._frame_time = 0.0  # decaying engine time spent on each [s]
        self._decayed_at = time.monotonic()
        self._stamp_offset = 0.0
        self._segments = 0
        self._frames_in_memory = int(engine.frames_in_memory)
        self._counters = engine.counters

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Finish the running item, cancel waiting jobs, drop waiting frames; True when joined."""
        with self._cond:
            self._stopping = True
            jobs, self._jobs = list(self._jobs), deque()
            self._frames.clear()
            self._cond.notify_all()
            thread = self._thread
        for job in jobs:
            job.future.cancel()
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def push(self, frame: Frame) -> bool:
        """Queue a keyframe; False when the queue was full and its oldest frame was dropped."""
        with self._cond:
            dropped = len(self._frames) >= self._queue_size
            if dropped:
                self._frames.popleft()
                self._dropped += 1
            self._frames.append(frame)
            self._cond.notify()
            return not dropped

    def clear_frames(self) -> int:
        """Drop every waiting frame (not counted as dropped); returns how many."""
        with self._cond:
            n = len(self._frames)
            self._frames.clear()
            return n

    def submit(self, fn: Callable[[Any], Any]) -> Future:
        """Run `fn(engine)` on the worker before the next frame; its result comes in the Future."""
        job = _Job(fn)
        with self._cond:
            if self._stopping:
                job.future.cancel()
                return job.future
            self._jobs.append(job)
            self._cond.notify()
        return job.future

    def ensure_alive(self) -> str:
        """Restart the thread if it died; returns the death reason (with traceback) or ""."""
        with self._cond:
            thread = self._thread
            if self._stopping or thread is None or thread.is_alive():
                return ""
            self._restarts += 1
            reason = self._death_traceback or self._death
        self.start()
        return reason

    def snapshot(self) -> WorkerSnapshot:
        with self._cond:
            busy = 0.0 if self._busy_since is None else time.monotonic() - self._busy_since
            return WorkerSnapshot(
                alive=self._thread is not None and self._thread.is_alive(),
                frames_ingested=self._ingested, frames_rejected=self._rejected, frames_dropped=self._dropped,
                queue_depth=len(self._frames), jobs_waiting=len(self._jobs),
                frames_in_memory=self._frames_in_memory, counters=self._counters,
                last_error=self._last_error, restarts=self._restarts, death=self._death, busy_s=busy,
                segments=self._segments, stamp_offset_s=self._stamp_offset)

    def _next(self) -> _Job | Frame | None:
        with self._cond:
            while not self._stopping and not self._jobs and not self._frames:
                if self._idle_work:
                    self._idle_work = False
                    self._busy_since = time.monotonic()
                    return _PREPARE
                self._cond.wait()
            if self._stopping:
                return None
            self._busy_since = time.monotonic()
            self._idle_work = self._prepare_when_idle
            return self._jobs.popleft() if self._job_turn() else self._frames.popleft()

    def _job_turn(self) -> bool:
        """Whether the next item is a job (under the lock; something waits)."""
        if not self._frames:
            return True
        if not self._jobs:
            return False
        return self._job_time <= JOB_SHARE / (1.0 - JOB_SHARE) * self._frame_time

    def _account(self, is_job: bool, seconds: float) -> None:
        now = time.monotonic()
        with self._cond:
            decay = 0.5 ** ((now - self._decayed_at) / SHARE_HALF_LIFE_S)
            self._job_time *= decay
            self._frame_time *= decay
            self._decayed_at = now
            if is_job:
                self._job_time += seconds
            else:
                self._frame_time += seconds

    def _run(self) -> None:
        try:
            while (item := self._next()) is not None:
                started = time.monotonic()
                if item is _PREPARE:
                    self._prepare()
                elif isinstance(item, _Job):
                    self._run_job(item)
                    self._account(True, time.monotonic() - started)
                else:
                    self._ingest(item)
                    self._account(False, time.monotonic() - started)
        except BaseException as exc:  # the thread dies; ensure_alive restarts it and reports this
            with self._cond:
                self._death = f"{type(exc).__name__}: {exc}"
                self._death_traceback = traceback.format_exc()
                self._last_error = f"worker died: {self._death}"
                self._busy_since = None

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            self._refresh()
            return  # cancelled while waiting (its caller timed out)
        try:
            result = job.fn(self.engine)
        except BaseException as exc:
            with self._cond:
                self._last_error = clip(f"{type(exc).__name__}: {exc}", 400)
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            # The snapshot is current before the caller hears back (a reset shows 0 frames at once).
            self._refresh()
        except BaseException as exc:
            job.future.set_exception(outcome[1] or exc)
            raise
        if outcome[1] is not None:
            job.future.set_exception(outcome[1])
        else:
            job.future.set_result(outcome[0])

    def new_timeline(self) -> None:
        """Drop the stamp shift (call from a job that replaced the memory: reset, load)."""
        self._stamp_offset = 0.0

    def _shifted_stamp(self, stamp_s: float) -> float:
        """The frame's stamp on the memory's timeline; ends the segment on a rewind."""
        stamp = stamp_s + self._stamp_offset
        last = getattr(self.engine.counters, "last_stamp_s", None)
        if self._rewind_s <= 0 or last is None or stamp >= last - self._rewind_s:
            return stamp
        self.engine.flush()
        self._stamp_offset = last + REWIND_GAP_S - stamp_s
        with self._cond:
            self._segments += 1
            self._last_error = (f"stamps jumped back from {last:.3f} s to {stamp_s:.3f} s (clock restart?): new "
                                f"segment; later stamps are shifted by {self._stamp_offset:.3f} s")
        return stamp_s + self._stamp_offset

    def _ingest(self, frame: Frame) -> None:
        try:
            image = frame.image if frame.transform is None else frame.transform(frame.image)
            self.engine.push_frame(image, self._shifted_stamp(frame.stamp_s), frame.pose)
        except ValueError as exc:
            with self._cond:
                self._rejected += 1
                self._last_error = clip(f"frame at {frame.stamp_s:.3f} s rejected: {exc}", 400)
        else:
            with self._cond:
                self._ingested += 1
        self._refresh()

    def _prepare(self) -> None:
        try:
            self.engine.prepare()
        except Exception as exc:  # an optimisation only: report it, keep ingesting and answering
            with self._cond:
                self._last_error = f"prepare failed: {type(exc).__name__}: {exc}"
        with self._cond:
            self._busy_since = None

    def _refresh(self) -> None:
        frames, counters = int(self.engine.frames_in_memory), self.engine.counters
        with self._cond:
            self._frames_in_memory, self._counters = frames, counters
            self._busy_since = None


def wait_result(future: Future, timeout_s: float) -> Any:
    """future.result(timeout) that cancels a job still waiting when the time is up.

    Raises TimeoutError on timeout, CancelledError when the worker stopped, or the job's exception.
    """
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()
        raise
