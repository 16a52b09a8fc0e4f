"""Save, load, reset and autosave as worker jobs (no rclpy).

Each function takes the engine first and runs on the worker thread (submitted with
`EngineWorker.submit`), so it never races a frame. Each returns the frames held afterwards, except
save, which only takes a snapshot there: the file is written off the worker (`run`, `Autosave`).

Any ROS peer can call save_memory / load_memory, so files are confined to one directory (the
memory_dir parameter): a request names a file inside it, and anything resolving outside (absolute
paths, `..`, symlinks) is refused; no directory is created for a request; an existing file is
replaced only when it is one of our memory files (its header says so), never a FIFO or another
file. The checks run on the worker thread right before the engine touches the file. What the
memory file holds is checked by the engine's load (runtime/memory_file.py).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.worker import EngineWorker, wait_result

MAX_NAME = 4096  # longest file name a request may give
MAX_HEADER_BYTES = 64 << 20  # a memory file's safetensors header (JSON) is far smaller
MAX_MESSAGE = 400  # characters of a response message


@dataclass(frozen=True)
class PendingWrite:
    """A save's second half: the memory snapshot taken on the worker, written by whoever waits for
    the job (`run`), so the worker goes on with frames and queries during the write."""

    snapshot: Any  # engine.snapshot()
    path: Path
    frames: int

    def write(self) -> int:
        check_save_target(self.path)  # again: the file may have changed since the job was queued
        self.snapshot.write(self.path)
        return self.frames


def save(engine: Any, path: Path) -> PendingWrite:
    """Snapshot the memory for `path` (from `confined_path`); `run` writes it atomically (temp file,
    fsync, rename), so a crash or a full disk leaves the previous file untouched. An existing
    target must be one of our memory files: anything else (a FIFO, a device, someone's document)
    is never replaced."""
    check_save_target(path)
    return PendingWrite(engine.snapshot(), path, int(engine.frames_in_memory))


def load(engine: Any, path: Path, worker: EngineWorker | None = None) -> int:
    """Replace the memory with the file at `path` (a bad file: ValueError, memory untouched).

    Frames still waiting in the queue were seen before the load; they are dropped so the loaded
    memory is not continued with them.
    """
    check_load_source(path)
    engine.load(str(path))
    if worker is not None:
        worker.clear_frames()
        worker.new_timeline()
    return int(engine.frames_in_memory)


def reset(engine: Any, worker: EngineWorker | None = None) -> int:
    """Empty the memory and the frames waiting for it."""
    engine.reset()
    if worker is not None:
        worker.clear_frames()
        worker.new_timeline()
    return int(engine.frames_in_memory)


def confined_path(requested: str, default: str, root: Path) -> Path:
    """The memory file a request names, inside `root` (the memory_dir parameter); ValueError when
    it is empty, resolves outside `root` (absolute paths, `..`, symlinks followed) or its directory
    does not exist (no directory is ever created for a request)."""
    name = requested if requested.strip() else default
    if not name.strip():
        raise ValueError("no file name in the request and the memory_path parameter is empty")
    if "\0" in name or len(name) > MAX_NAME:
        raise ValueError(f"file name {clip(repr(name), 120)} is not a usable file name")
    try:
        base = root.resolve()
        target = (base / name).resolve()  # absolute `name` replaces base; symlinks and `..` are resolved
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
        raise ValueError(f"{clip(repr(name), 200)} cannot be resolved: {clip(str(exc), 200)}") from exc
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"{clip(repr(name), 200)} is outside the memory directory {clip(str(base), 200)}: "
                         f"memory files are read and written only there (parameter memory_dir)")
    if not target.parent.is_dir():
        raise ValueError(f"directory {clip(str(target.parent.relative_to(base)), 200)} does not exist in the "
                         f"memory directory (no directories are created)")
    return target


def _file_mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def is_memory_file(path: Path) -> bool:
    """True when `path` is a regular file starting with a spatial_ttt memory file's safetensors
    header (its `format`, any version: an older file may be replaced by a new save); reads the
    header only, never blocks on a FIFO."""
    from spatial_ttt_ros.runtime.state import STATE_FORMAT_FAMILY

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        size = handle.read(8)
        if len(size) != 8:
            return False
        n = int.from_bytes(size, "little")
        if not 2 <= n <= MAX_HEADER_BYTES:
            return False
        try:
            header = json.loads(handle.read(n))
        except (ValueError, UnicodeDecodeError):
            return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and str(meta.get("format", "")).startswith(STATE_FORMAT_FAMILY)


def check_save_target(path: Path) -> None:
    """ValueError unless `path` is free or holds one of our memory files (then it is replaced)."""
    mode = _file_mode(path)
    if mode is None:
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{clip(path.name, 200)} exists and is not a regular file; not replaced")
    if not is_memory_file(path):
        raise ValueError(f"{clip(path.name, 200)} exists and is not a spatial_ttt memory file; not overwritten")


def check_load_source(path: Path) -> None:
    """ValueError unless `path` is an existing regular file (a FIFO would block the engine)."""
    mode = _file_mode(path)
    if mode is None:
        raise ValueError(f"memory file {clip(path.name, 200)} does not exist")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{clip(path.name, 200)} is not a regular file")


def run(worker: EngineWorker, job: Callable[[Any], int], what: str, timeout_s: float) -> tuple[bool, str, int]:
    """Run a memory job on the worker and wait: (success, message, frames in memory afterwards).
    A job returning a PendingWrite (save) has its file written here, off the worker."""
    try:
        frames = wait_result(worker.submit(job), timeout_s)
        if isinstance(frames, PendingWrite):
            frames = frames.write()
    except TimeoutError:
        return False, f"timeout: {what} did not finish within {timeout_s:g} s", worker.snapshot().frames_in_memory
    except CancelledError:
        return False, f"cancelled: the engine stopped during {what}", 0
    except (ValueError, OSError) as exc:
        return False, clip(f"{what} failed: {exc}", MAX_MESSAGE), worker.snapshot().frames_in_memory
    except Exception as exc:
        return (False, clip(f"{what} failed: {type(exc).__name__}: {exc}", MAX_MESSAGE),
                worker.snapshot().frames_in_memory)
    return True, f"{what}: {frames} frames in memory", int(frames)


class Autosave:
    """Periodic save to one path, skipped while the memory has not changed or a save is running.

    The worker only takes a snapshot (a host copy of the memory, engine.snapshot()); the file is
    written (atomically) on a writer thread, so ingest and queries go on during the write."""

    def __init__(self, worker: EngineWorker, path: Path, logger: Any) -> None:
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
                check_save_target(self.path)  # the same rule as save_memory: only our files are replaced
                taken.result().write(self.path)
            except Exception as exc:  # noqa: BLE001 - a full disk must not end the node
                self.logger.warning(f"autosave to {self.path} failed: {exc}")
                written.set_result(False)
                return
            self._saved = key
            self.saves += 1
            written.set_result(True)

        threading.Thread(target=write, name="autosave-writer", daemon=True).start()
