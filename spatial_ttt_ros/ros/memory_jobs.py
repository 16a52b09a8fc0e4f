"""Save, load, reset and autosave as worker jobs (no rclpy).

Each function takes the engine first and runs on the worker thread (submitted with
`EngineWorker.submit`), so it never races a frame. Each returns the frames held afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

from spatial_ttt_ros.ros.worker import EngineWorker, wait_result


def save(engine: Any, path: str | os.PathLike[str]) -> int:
    """Write the memory to `path`; the engine writes atomically (temp file, fsync, rename), so a
    crash or a full disk leaves the previous file at `path` untouched."""
    if Path(path).is_dir():
        raise ValueError(f"memory path {path} is a directory; expected a file path")
    engine.save(str(path))
    return int(engine.frames_in_memory)


def load(engine: Any, path: str | os.PathLike[str], worker: EngineWorker | None = None) -> int:
    """Replace the memory with the file at `path` (a bad file: ValueError, memory untouched).

    Frames still waiting in the queue were seen before the load; they are dropped so the loaded
    memory is not continued with them.
    """
    if not Path(path).is_file():
        raise ValueError(f"memory file {path} does not exist")
    engine.load(str(path))
    if worker is not None:
        worker.clear_frames()
    return int(engine.frames_in_memory)


def reset(engine: Any, worker: EngineWorker | None = None) -> int:
    """Empty the memory and the frames waiting for it."""
    engine.reset()
    if worker is not None:
        worker.clear_frames()
    return int(engine.frames_in_memory)


def resolve_path(requested: str, default: str) -> str:
    """The absolute memory file path of a request (empty: the memory_path parameter)."""
    path = requested.strip() or default
    if not path:
        raise ValueError("no path in the request and the memory_path parameter is empty")
    return os.path.abspath(path)


def run(worker: EngineWorker, job: Callable[[Any], int], what: str, timeout_s: float) -> tuple[bool, str, int]:
    """Run a memory job on the worker and wait: (success, message, frames in memory afterwards)."""
    try:
        frames = wait_result(worker.submit(job), timeout_s)
    except TimeoutError:
        return False, f"timeout: {what} did not finish within {timeout_s:g} s", worker.snapshot().frames_in_memory
    except CancelledError:
        return False, f"cancelled: the engine stopped during {what}", 0
    except (ValueError, OSError) as exc:
        return False, f"{what} failed: {exc}", worker.snapshot().frames_in_memory
    except Exception as exc:
        return False, f"{what} failed: {type(exc).__name__}: {exc}", worker.snapshot().frames_in_memory
    return True, f"{what}: {frames} frames in memory", int(frames)


class Autosave:
    """Periodic save to one path, skipped while the memory has not changed or a save is running.

    The worker only takes a snapshot (a host copy of the memory, engine.snapshot()); the file is
    written (atomically) on a writer thread, so ingest and queries go on during the write."""

    def __init__(self, worker: EngineWorker, path: str, logger: Any) -> None:
        self.worker = worker
        self.path = path
        self.logger = logger
        self._pending: Future | None = None
        self._saved: tuple[int, int] = (0, 0)  # (frames ingested, frames in memory) at the last save
        self.saves = 0

    def tick(self) -> None:
        if self._pending is not None and not self._pending.done():
            return
        snap = self.worker.snapshot()
        key = (snap.frames_ingested, snap.frames_in_memory)
        if snap.frames_in_memory == 0 or key == self._saved:
            return
        written: Future = Future()
        self._pending = written
        taken = self.worker.submit(lambda engine: engine.snapshot())
        taken.add_done_callback(lambda future: self._write(future, written, key))

    def _write(self, taken: Future, written: Future, key: tuple[int, int]) -> None:
        """Called when the snapshot is taken (on the worker thread): the write goes to a thread."""
        if taken.cancelled() or taken.exception() is not None:
            if not taken.cancelled():
                self.logger.warning(f"autosave to {self.path} failed: {taken.exception()}")
            written.set_result(False)
            return

        def write() -> None:
            try:
                taken.result().write(self.path)
            except Exception as exc:  # noqa: BLE001 - a full disk must not end the node
                self.logger.warning(f"autosave to {self.path} failed: {exc}")
                written.set_result(False)
                return
            self._saved = key
            self.saves += 1
            written.set_result(True)

        threading.Thread(target=write, name="autosave-writer", daemon=True).start()
