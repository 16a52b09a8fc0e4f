"""The engine worker's queue, job and failure logic against a minimal in-test engine (the ros tier
runs the same worker on the real engine). Waits on events, never on fixed sleeps."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from spatial_ttt_ros.ros.query import AdmissionBound
from spatial_ttt_ros.ros.worker import EngineWorker, Frame, wait_result


class ListEngine:
    """Implements the worker's view of StreamingEngine: frames go into a list."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.fail_next: BaseException | None = None

    def push_frame(self, image: np.ndarray, stamp_s: float, pose: np.ndarray | None = None) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if image.ndim != 3:
            raise ValueError(f"image must be HxWx3, got shape {image.shape}")
        self.stamps.append(stamp_s)

    @property
    def frames_in_memory(self) -> int:
        return len(self.stamps)

    @property
    def counters(self) -> dict:
        return {"frames": len(self.stamps)}


def frame(stamp_s: float, ok: bool = True) -> Frame:
    return Frame(image=np.zeros((4, 4, 3) if ok else (4, 4), np.uint8), stamp_s=stamp_s)


def wait(condition: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def worker():
    engine = ListEngine()
    w = EngineWorker(engine, queue_size=4)
    w.start()
    yield w
    w.stop()


def hold(worker: EngineWorker) -> threading.Event:
    """Occupy the worker with a job until the returned event is set."""
    release, started = threading.Event(), threading.Event()
    worker.submit(lambda engine: (started.set(), release.wait(10)))
    assert started.wait(10)
    return release


def test_frames_are_ingested_in_order_and_bad_ones_rejected(worker):
    for i, ok in enumerate([True, False, True, True]):
        worker.push(frame(float(i), ok))
    assert wait(lambda: worker.snapshot().frames_in_memory == 3)
    snap = worker.snapshot()
    assert worker.engine.stamps == [0.0, 2.0, 3.0]
    assert (snap.frames_ingested, snap.frames_rejected, snap.frames_dropped) == (3, 1, 0)
    assert "HxWx3" in snap.last_error and snap.alive


def test_full_queue_drops_the_oldest_and_counts(worker):
    release = hold(worker)
    results = [worker.push(frame(float(i))) for i in range(6)]
    assert results == [True, True, True, True, False, False]
    assert worker.snapshot().queue_depth == 4 and worker.snapshot().frames_dropped == 2
    release.set()
    assert wait(lambda: worker.snapshot().frames_in_memory == 4)
    assert worker.engine.stamps == [2.0, 3.0, 4.0, 5.0]  # the newest four


def test_jobs_return_results_and_cannot_starve_waiting_frames(worker):
    release = hold(worker)  # a long job: the engine's recent time went to jobs
    for i in range(3):
        worker.push(frame(float(i)))
    seen = [worker.submit(lambda engine: len(engine.stamps)) for _ in range(3)]
    release.set()
    # Frames and jobs both waited after a long job: the frames went first (jobs-first ran all three
    # jobs on an empty memory, which starved ingest under a query flood).
    assert [wait_result(f, 10) for f in seen] == [3, 3, 3]


def test_frames_arriving_faster_than_the_engine_cannot_starve_jobs():
    engine = ListEngine()
    slow_push = engine.push_frame

    def push(image, stamp_s, pose=None):
        time.sleep(0.01)  # each frame costs engine time
        slow_push(image, stamp_s, pose)

    engine.push_frame = push
    w = EngineWorker(engine, queue_size=100)
    release = threading.Event()
    w.start()
    try:
        w.submit(lambda e: release.wait(10))
        for i in range(40):
            w.push(frame(float(i)))
        job = w.submit(lambda e: len(e.stamps))
        release.set()
        # The job's turn comes once frames have had their share, long before the queue is empty.
        assert wait_result(job, 10) < 40
    finally:
        w.stop()


def test_job_errors_go_to_the_caller_and_the_worker_lives(worker):
    def boom(engine: object) -> None:
        raise RuntimeError("query failed")

    with pytest.raises(RuntimeError, match="query failed"):
        wait_result(worker.submit(boom), 10)
    assert worker.snapshot().alive and "query failed" in worker.snapshot().last_error


def test_timeout_cancels_a_waiting_job(worker):
    release = hold(worker)
    ran = threading.Event()
    future = worker.submit(lambda engine: ran.set())
    with pytest.raises(TimeoutError):
        wait_result(future, 0.05)
    assert future.cancelled()
    release.set()
    marker = worker.submit(lambda engine: "after")
    assert wait_result(marker, 10) == "after" and not ran.is_set()


def test_a_dead_worker_is_visible_and_restarts_on_the_same_queue(worker):
    worker.engine.fail_next = RuntimeError("device lost")
    worker.push(frame(1.0))
    assert wait(lambda: not worker.snapshot().alive)
    worker.push(frame(2.0))
    snap = worker.snapshot()
    assert "device lost" in snap.death and snap.queue_depth == 1
    reason = worker.ensure_alive()
    assert "RuntimeError: device lost" in reason and worker.ensure_alive() == ""
    assert wait(lambda: worker.snapshot().frames_in_memory == 1)
    assert worker.engine.stamps == [2.0] and worker.snapshot().restarts == 1


def test_stop_cancels_waiting_jobs_and_refuses_new_ones(worker):
    release = hold(worker)
    waiting = worker.submit(lambda engine: None)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    with pytest.raises(CancelledError):
        waiting.result(timeout=10)
    release.set()
    stopper.join(10)
    assert not worker.snapshot().alive
    assert worker.submit(lambda engine: None).cancelled()


def test_admission_bound():
    bound = AdmissionBound(2)
    assert bound.try_acquire() and bound.try_acquire() and not bound.try_acquire()
    bound.release()
    assert bound.in_flight == 1 and bound.try_acquire()
    bound.release()
    bound.release()
    with pytest.raises(RuntimeError):
        bound.release()


class PreparingEngine(ListEngine):
    """Records prepare() calls with how many frames were in memory then; the first one can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared_at: list[int] = []
        self.prepare_error: BaseException | None = None

    def prepare(self) -> bool:
        if self.prepare_error is not None:
            exc, self.prepare_error = self.prepare_error, None
            raise exc
        self.prepared_at.append(len(self.stamps))
        return True


def test_idle_worker_prepares_after_work_and_not_in_between():
    engine = PreparingEngine()
    w = EngineWorker(engine, queue_size=8, prepare_when_idle=True)
    gate = threading.Event()
    w.submit(lambda e: gate.wait(10))  # hold the worker while frames queue up behind it
    for i in range(3):
        w.push(frame(i))
    assert engine.prepared_at == []
    w.start()
    gate.set()
    assert wait(lambda: engine.prepared_at == [3])  # once, after the queue ran empty
    assert wait(lambda: w.snapshot().busy_s == 0)
    assert wait_result(w.submit(lambda e: len(e.stamps)), 10) == 3
    assert wait(lambda: engine.prepared_at == [3, 3])  # a job may change the memory: again (cheap if not)
    engine.prepare_error = RuntimeError("out of memory")
    w.push(frame(3))
    assert wait(lambda: "prepare failed: RuntimeError: out of memory" in w.snapshot().last_error)
    w.push(frame(4))
    assert wait(lambda: engine.prepared_at[-1:] == [5])  # the worker lives on and keeps preparing
    assert w.snapshot().alive and w.snapshot().frames_ingested == 5
    w.stop()


def test_worker_without_prepare_when_idle_never_prepares():
    engine = PreparingEngine()
    w = EngineWorker(engine, queue_size=4)
    w.start()
    w.push(frame(0))
    assert wait(lambda: w.snapshot().frames_ingested == 1)
    assert wait_result(w.submit(lambda e: len(e.stamps)), 10) == 1
    wait_result(w.submit(lambda e: None), 10)  # an idle step, had there been one, ran before this job
    assert engine.prepared_at == []
    w.stop()


class TimelineEngine(ListEngine):
    """ListEngine that refuses stamps going back (as StreamingEngine does) and records flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[int] = []

    def push_frame(self, image, stamp_s, pose=None):
        if self.stamps and stamp_s < self.stamps[-1]:
            raise ValueError(f"stamp_s went backwards: {stamp_s} < previous {self.stamps[-1]}")
        super().push_frame(image, stamp_s, pose)

    def flush(self) -> None:
        self.flushes.append(len(self.stamps))

    @property
    def counters(self):
        from types import SimpleNamespace

        return SimpleNamespace(last_stamp_s=self.stamps[-1] if self.stamps else None)


def test_a_clock_restart_ends_the_segment_and_shifts_later_stamps():
    engine = TimelineEngine()
    w = EngineWorker(engine, queue_size=10, rewind_s=10.0)
    w.start()
    try:
        for stamp in (500.0, 501.0, 2.0, 3.0, 495.0):
            w.push(frame(stamp))
        assert wait(lambda: w.snapshot().frames_ingested + w.snapshot().frames_rejected == 5)
        # 2.0 s after 501 s: a new segment, continuing 1 s after the memory's newest frame
        # (495 s is on the new timeline too: 995 s)
        assert engine.stamps == [500.0, 501.0, 502.0, 503.0, 995.0]
        assert engine.flushes == [2]
        snap = w.snapshot()
        assert snap.segments == 1 and snap.stamp_offset_s == 500.0 and "jumped back" in snap.last_error
        w.submit(lambda e: w.new_timeline()).result(10)  # after a reset/load the shift is gone
        assert w.snapshot().stamp_offset_s == 0.0
    finally:
        w.stop()


def test_a_frames_transform_runs_on_the_worker_and_a_bad_one_rejects_only_that_frame(worker):
    threads: list[str] = []

    def mark(image: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return image

    def refuse(image: np.ndarray) -> np.ndarray:
        raise ValueError("image 4x4 does not match camera_info 8x8")

    worker.push(Frame(image=np.zeros((4, 4, 3), np.uint8), stamp_s=1.0, transform=mark))
    worker.push(Frame(image=np.zeros((4, 4, 3), np.uint8), stamp_s=2.0, transform=refuse))
    worker.push(frame(3.0))
    assert wait(lambda: worker.snapshot().frames_ingested + worker.snapshot().frames_rejected == 3)
    snap = worker.snapshot()
    assert threads == [worker.name] and worker.engine.stamps == [1.0, 3.0]
    assert snap.frames_rejected == 1 and "does not match camera_info" in snap.last_error and snap.alive
