"""The bag side of the recorder (no rclpy): runs of crash-safe MCAP bags that keep going through
write errors as far as the disk allows. The recorder node (ros/recorder_node.py) feeds it
serialized keyframe messages and operator notes; see that module for the run layout."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bags import BagWriteError, BagWriter

COMPRESSIONS = ("zstd", "lz4", "none")


@dataclass(frozen=True)
class RecordingOptions:
    output_dir: str               # runs go to <output_dir>/<run>/bag
    run_name: str                 # "" = spatial_ttt_<date>_<time>
    max_episode_duration_s: float  # 0 = no split by duration
    max_episode_bytes: int        # 0 = no split by size
    flush_period_s: float         # end the chunk + fsync at least this often [s]
    compression: str              # zstd | lz4 | none
    retry_period_s: float         # retry a new run this often after the bag was lost [s]
    topics: tuple[str, ...]       # bag topics (names from data/msgs.py)


@dataclass(frozen=True)
class RecordingStatus:
    bag: str  # the bag directory being written, "" while none is open
    files: int  # finished files (episodes) of that bag
    keyframes_written: int  # over every run of this node
    keyframes_lost: int  # keyframes that found no writable bag
    notes_written: int  # descriptions and relayed annotations
    notes_pending: int  # notes waiting for a writable bag
    bytes_written: int  # message payload bytes
    last_keyframe_stamp_ns: int
    failed_files: tuple[str, ...]  # files abandoned after a write error (recoverable)
    error: str  # the newest error, "" when none happened
    broken: bool  # no writable bag right now


class Recording:
    """The bag side of the recorder (no rclpy): opens runs, writes keyframes and notes, and keeps
    going through write errors as far as the disk allows. Thread-safe."""

    def __init__(self, settings: RecordingOptions, logger: Any) -> None:
        self.settings = settings
        self.logger = logger  # .info / .warning / .error (rclpy's or the logging module's)
        self._lock = threading.Lock()
        self._writer: BagWriter | None = None
        self._base = settings.run_name or time.strftime("spatial_ttt_%Y%m%d_%H%M%S")
        self._retry_at = 0.0
        self._pending: deque[tuple[str, int, bytes]] = deque(maxlen=1000)
        self._failed: list[str] = []
        self._error = ""
        self._counts = {"keyframes": 0, "lost": 0, "notes": 0, "bytes": 0, "last_stamp": 0}
        self._closed = False
        with self._lock:
            self._open()

    def _next_run_dir(self) -> Path:
        """<output_dir>/<run>, or <run>_<k> with the first k not taken (an earlier run failed)."""
        out = Path(self.settings.output_dir).expanduser()
        for k in itertools.count():
            run = out / (self._base if k == 0 else f"{self._base}_{k}")
            if not run.exists():
                return run
        raise AssertionError("unreachable")

    def _open(self) -> None:
        s = self.settings
        bag_dir = self._next_run_dir() / "bag"
        try:
            self._writer = BagWriter(bag_dir, max_duration_s=s.max_episode_duration_s or None,
                                     max_bytes=s.max_episode_bytes or None, flush_period_s=s.flush_period_s,
                                     compression=s.compression)
            for topic in s.topics:
                self._writer.add_topic(topic, msgs.TOPIC_TYPES[topic])
        except (BagWriteError, OSError) as exc:
            self._fail(f"cannot start bag {bag_dir}: {exc}")  # closes a half-started writer
            return
        self.logger.info(f"recording to {bag_dir}")
        while self._pending and self._write(*self._pending[0]):
            self._pending.popleft()
            self._counts["notes"] += 1

    def _fail(self, message: str) -> None:
        """The bag is lost as a whole: report, keep what it flushed, retry a new run later."""
        self._error = message
        self.logger.error(f"{message}; keyframes are dropped until a new bag opens "
                          f"(next try in {self.settings.retry_period_s:g} s)")
        self._retry_at = time.monotonic() + self.settings.retry_period_s
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except (BagWriteError, OSError) as exc:
                self.logger.error(f"closing {writer.path} after the error: {exc}; run `spatial-ttt bag recover "
                                  f"{writer.path}`")
            self._note_damaged(writer)

    def _note_damaged(self, writer: BagWriter) -> list[str]:
        """Record files the writer abandoned since the last look; returns the new ones."""
        new = [str(writer.path / name) for name in writer.damaged if str(writer.path / name) not in self._failed]
        self._failed += new
        return new

    def _ready(self) -> bool:
        if self._closed:
            return False
        if self._writer is None and time.monotonic() >= self._retry_at:
            self._open()
        return self._writer is not None

    def _write(self, topic: str, stamp_ns: int, data: bytes) -> bool:
        writer = self._writer
        assert writer is not None
        try:
            writer.write(topic, stamp_ns, data)
        except (BagWriteError, OSError) as exc:
            self._fail(f"bag {writer.path} failed: {exc}")
            return False
        # A file can also fail in BagWriter's flusher thread; either way it went on in the next file.
        new = self._note_damaged(writer)
        if new:
            self._error = f"bag file {new[-1]} failed; recording goes on in the next file"
            self.logger.error(self._error)
        self._counts["bytes"] += len(data)
        return True

    def write_keyframe(self, messages: list[tuple[str, int, bytes]]) -> bool:
        """Write one keyframe's (topic, bag stamp [ns], CDR bytes); False when it was lost."""
        with self._lock:
            if not self._ready():
                self._counts["lost"] += 1
                return False
            for topic, stamp_ns, data in messages:
                if not self._write(topic, stamp_ns, data):
                    self._counts["lost"] += 1
                    return False
            self._counts["keyframes"] += 1
            self._counts["last_stamp"] = messages[0][1]
            return True

    def write_note(self, topic: str, stamp_ns: int, data: bytes) -> bool:
        """A description or annotation; False: kept in memory (up to 1000) until a bag can take it."""
        with self._lock:
            if not self._ready() or not self._write(topic, stamp_ns, data):
                self._pending.append((topic, stamp_ns, data))
                return False
            self._counts["notes"] += 1
            return True

    @property
    def keyframes_written(self) -> int:
        with self._lock:
            return self._counts["keyframes"]

    def status(self) -> RecordingStatus:
        with self._lock:
            w, c = self._writer, self._counts
            return RecordingStatus(
                bag=str(w.path) if w else "", files=len(w.files) if w else 0, keyframes_written=c["keyframes"],
                keyframes_lost=c["lost"], notes_written=c["notes"], notes_pending=len(self._pending),
                bytes_written=c["bytes"], last_keyframe_stamp_ns=c["last_stamp"], failed_files=tuple(self._failed),
                error=self._error, broken=w is None)

    def close(self) -> None:
        """Finish the bag: footer, metadata.yaml. Notes still pending are reported as lost."""
        with self._lock:
            writer, self._writer, self._closed = self._writer, None, True
            if self._pending:
                self.logger.error(f"{len(self._pending)} descriptions/annotations never found a writable bag")
            if writer is None:
                return
            try:
                writer.close()
                self.logger.info(f"closed {writer.path}: {len(writer.files)} files")
            except (BagWriteError, OSError) as exc:
                self.logger.error(f"closing {writer.path} failed: {exc}; run `spatial-ttt bag recover {writer.path}`")


def description_json(text: str, stamp_ns: int, source: str, keyframes_before: int) -> str:
    """What an operator description looks like on the descriptions topic."""
    return json.dumps({"type": "operator_description", "text": text, "stamp_ns": stamp_ns, "source": source,
                       "keyframes_before": keyframes_before}, ensure_ascii=False)
