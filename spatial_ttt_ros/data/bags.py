"""Crash-safe rosbag2 bags in MCAP storage: writing (mcap package) and reading (rosbags).

Layout, as `ros2 bag record -s mcap` leaves it:

    <bag>/metadata.yaml           rosbag2 format version 9
    <bag>/<bag>_0.mcap            one file per episode, split by duration or size
    <bag>/<bag>_1.mcap ...

Each file is a "ros2" profile MCAP with ros2msg schemas, cdr channels carrying the channel
metadata rosbag2_storage_mcap writes (`offered_qos_profiles`, `topic_type_hash`), zstd chunks
with CRCs and a "rosbag2" metadata record. Why the mcap package and not rosbags' writer: rosbags
writes no chunk CRCs and cannot flush, so a killed recorder loses the whole bag
(ROS_TOOLCHAIN.md §7). Here a chunk is closed and fsynced every `flush_period_s`, so a SIGKILL or
power loss costs at most that much data; `recover.recover_bag` turns what is left into a bag.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from rosbags.typesys import get_types_from_msg

from spatial_ttt_ros import __version__
from spatial_ttt_ros.data.msgs import new_typestore, typestore

log = logging.getLogger(__name__)

BAG_VERSION = 9
ROS_DISTRO = "kilted"
_INFINITE = {"sec": 9223372036, "nsec": 854775807}
# What a default rclpy publisher offers, in rosbag2's version-9 serialisation.
DEFAULT_QOS: list[dict[str, Any]] = [{
    "history": "keep_last", "depth": 10, "reliability": "reliable", "durability": "volatile",
    "deadline": dict(_INFINITE), "lifespan": dict(_INFINITE), "liveliness": "automatic",
    "liveliness_lease_duration": dict(_INFINITE), "avoid_ros_namespace_conventions": False,
}]
DEFAULT_QOS_YAML = yaml.safe_dump(DEFAULT_QOS, sort_keys=False).strip()
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


class BagWriteError(OSError):
    """Writing a bag failed at `filename`; the bag keeps what was flushed before (see recover)."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as rosbag2 records it: name, type, full message definition, type hash, QoS."""

    topic: str
    msgtype: str
    msgdef: str
    type_hash: str = ""  # RIHS01_<sha256>, "" when unknown
    encoding: str = "cdr"
    schema_encoding: str = "ros2msg"
    qos_yaml: str = DEFAULT_QOS_YAML  # offered_qos_profiles as rosbag2 v9 YAML text

    @classmethod
    def for_type(cls, topic: str, msgtype: str, msgdef_text: str | None = None) -> TopicSpec:
        """Spec of a topic; the definition comes from the Kilted typestore unless given as .msg text."""
        if msgdef_text is None:
            store = typestore()
            if msgtype not in store.types:
                raise ValueError(f"unknown message type {msgtype!r} for topic {topic!r}: "
                                 "give its .msg text as msgdef_text")
        else:
            store = new_typestore()
            try:
                store.register(get_types_from_msg(msgdef_text, msgtype))
            except Exception as exc:  # rosbags raises several parser error types
                raise ValueError(f"invalid message definition for {msgtype!r}: {exc}") from exc
        msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
        return cls(topic, msgtype, msgdef, store.hash_rihs01(msgtype))

    def channel_metadata(self) -> dict[str, str]:
        return {"offered_qos_profiles": self.qos_yaml, "topic_type_hash": self.type_hash}


@dataclass
class FileInfo:
    """What one MCAP file of a bag holds."""

    name: str
    message_count: int = 0
    start_ns: int = 0
    end_ns: int = 0
    topic_counts: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, stamp_ns: int) -> None:
        if self.message_count == 0:
            self.start_ns = self.end_ns = stamp_ns
        self.start_ns = min(self.start_ns, stamp_ns)
        self.end_ns = max(self.end_ns, stamp_ns)
        self.message_count += 1
        self.topic_counts[topic] = self.topic_counts.get(topic, 0) + 1


def bag_metadata(files: list[FileInfo], topics: Iterable[TopicSpec]) -> dict[str, Any]:
    """The `rosbag2_bagfile_information` mapping of metadata.yaml (format version 9)."""
    nonempty = [f for f in files if f.message_count]
    start = min((f.start_ns for f in nonempty), default=0)
    end = max((f.end_ns for f in nonempty), default=0)
    return {
        "version": BAG_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": end - start},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(f.message_count for f in files),
        "topics_with_message_count": [
            {"topic_metadata": {
                "name": t.topic, "type": t.msgtype, "serialization_format": t.encoding,
                "offered_qos_profiles": yaml.safe_load(t.qos_yaml) or [],
                "type_description_hash": t.type_hash},
             "message_count": sum(f.topic_counts.get(t.topic, 0) for f in files)}
            for t in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [f.name for f in files],
        "files": [{"path": f.name, "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                   "duration": {"nanoseconds": f.end_ns - f.start_ns},
                   "message_count": f.message_count} for f in files],
        "custom_data": {},
        "ros_distro": ROS_DISTRO,
    }


def fsync_dir(path: Path) -> None:
    """Make a created or renamed directory entry durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_metadata(bag_dir: Path, files: list[FileInfo], topics: Iterable[TopicSpec]) -> None:
    """Write metadata.yaml atomically (temp file, fsync, rename), so a crash leaves old or new."""
    text = yaml.safe_dump({"rosbag2_bagfile_information": bag_metadata(files, topics)},
                          sort_keys=False)
    final, tmp = bag_dir / "metadata.yaml", bag_dir / "metadata.yaml.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(bag_dir)
    except OSError as exc:
        raise BagWriteError(exc.errno, f"cannot write bag metadata: {exc.strerror}", str(final)) from exc


def _open_for_write(path: Path) -> IO[bytes]:
    """Open a new file; a seam for tests that simulate a full disk."""
    return open(path, "xb")


class McapFile:
    """One MCAP file of a bag being written; not thread-safe (BagWriter holds the lock)."""

    def __init__(self, path: Path, compression: str = "zstd", chunk_size: int = 1 << 20,
                 name: str | None = None) -> None:
        self.path = path
        self.info = FileInfo(name or path.name)  # `name`: the final name when writing a temp file
        self._file = _open_for_write(path)
        self._mcap = McapWriter(self._file, chunk_size=chunk_size,
                                compression=_COMPRESSION[compression], enable_crcs=True)
        self._mcap.start(profile="ros2", library=f"spatial_ttt_ros-{__version__}")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._written = self._file.tell()
        self._pending = 0  # message bytes not yet in a finished chunk
        self.dirty = True
        self.flushed_at = time.monotonic()

    def add_topic(self, spec: TopicSpec) -> None:
        if spec.topic in self._channels:
            return
        if spec.msgtype not in self._schemas:
            self._schemas[spec.msgtype] = self._mcap.register_schema(
                spec.msgtype, spec.schema_encoding, spec.msgdef.encode())
        self._channels[spec.topic] = self._mcap.register_channel(
            spec.topic, spec.encoding, self._schemas[spec.msgtype], spec.channel_metadata())
        self._sequence[spec.topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes, publish_ns: int | None = None,
              sequence: int | None = None) -> None:
        seq = self._sequence[topic] if sequence is None else sequence
        self._mcap.add_message(self._channels[topic], log_time=stamp_ns, data=data,
                               publish_time=stamp_ns if publish_ns is None else publish_ns,
                               sequence=seq)
        self._sequence[topic] = seq + 1
        self.info.add(topic, stamp_ns)
        self.dirty = True
        # The mcap writer ends a chunk by itself once it exceeds chunk_size.
        written = self._file.tell()
        self._pending = 0 if written != self._written else self._pending + len(data)
        self._written = written

    def size(self) -> int:
        """Bytes in the file once the open chunk is written (uncompressed estimate)."""
        return self._written + self._pending

    def flush(self) -> None:
        """End the open chunk and fsync: everything written so far survives a crash."""
        self._mcap.flush()
        os.fsync(self._file.fileno())
        self._written, self._pending, self.dirty = self._file.tell(), 0, False
        self.flushed_at = time.monotonic()

    def finish(self, topics: Iterable[TopicSpec]) -> None:
        """Write the summary and footer, fsync and close."""
        meta = bag_metadata([self.info], [t for t in topics if t.topic in self._channels])
        self._mcap.add_metadata("rosbag2", {"serialized_metadata": yaml.safe_dump(meta, sort_keys=False)})
        self._mcap.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        """Close the handle after a failed write; the file keeps what reached the disk."""
        try:
            self._file.close()
        except OSError:
            pass


class BagWriter:
    """Write a rosbag2 MCAP bag that survives being killed (see the module doc).

    Episodes: a new file `<name>_<i+1>.mcap` starts when the current one spans `max_duration_s`
    of message time or reaches `max_bytes`; metadata.yaml is rewritten at each split (listing the
    finished files) and at close.

    Failures: an unwritable or existing path raises BagWriteError naming it. When writing the
    current file fails (ENOSPC, EIO, ...) it is closed as far as possible, keeping everything up
    to its last flush for `recover_bag`; writing continues in the next file if that file can be
    created and flushed; otherwise BagWriteError (naming the file and errno) is raised now and on
    every later call, and what was written stays recoverable.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_duration_s: float | None = None,
                 max_bytes: int | None = None, flush_period_s: float = 1.0,
                 compression: str = "zstd", chunk_size: int = 1 << 20) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {compression!r}")
        if flush_period_s <= 0:
            raise ValueError(f"flush_period_s must be > 0, got {flush_period_s}")
        self.path = Path(path)
        self.name = self.path.name
        self._max_ns = None if max_duration_s is None else int(max_duration_s * 1e9)
        self._max_bytes = max_bytes
        self._flush_period = flush_period_s
        self._compression, self._chunk_size = compression, chunk_size
        self._topics: dict[str, TopicSpec] = {}
        self._done: list[FileInfo] = []
        self.damaged: list[str] = []  # files abandoned after a write error; recover_bag salvages them
        self._index = 0
        self._file: McapFile | None = None
        self._error: BagWriteError | None = None
        self._closed = False
        self._lock = threading.Lock()
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise BagWriteError(errno.EEXIST, "bag path exists and is not an empty directory",
                                str(self.path))
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BagWriteError(exc.errno, f"cannot create bag directory: {exc.strerror}",
                                str(self.path)) from exc
        self._open_next()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_period_s,),
                                         name=f"bag-flush-{self.name}", daemon=True)
        self._flusher.start()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def files(self) -> list[str]:
        """Names of the finished files."""
        return [f.name for f in self._done]

    def add_topic(self, topic: str, msgtype: str, msgdef_text: str | None = None) -> None:
        """Declare a topic; its definition comes from the Kilted typestore or `msgdef_text`."""
        with self._lock:
            self._check_open()
            known = self._topics.get(topic)
            if known is not None:
                if known.msgtype != msgtype:
                    raise ValueError(f"topic {topic!r} already has type {known.msgtype}, got {msgtype}")
                return
            spec = TopicSpec.for_type(topic, msgtype, msgdef_text)
            self._topics[topic] = spec
            self._guarded(lambda f: f.add_topic(spec))

    def write(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write serialized CDR `data` at bag time `stamp_ns` (ns since the epoch)."""
        with self._lock:
            if topic not in self._topics:
                raise ValueError(f"topic {topic!r} was not added; call add_topic first")
            self._check_open()
            assert self._file is not None
            info = self._file.info
            if info.message_count and (
                    (self._max_ns is not None and stamp_ns - info.start_ns >= self._max_ns)
                    or (self._max_bytes is not None and self._file.size() + len(data) > self._max_bytes)):
                self._split()
            self._guarded(lambda f: f.write(topic, stamp_ns, bytes(data)))
            # The flusher thread covers idle periods; a busy writer flushes here, never starved.
            if time.monotonic() - self._file.flushed_at >= self._flush_period:
                self._guarded(lambda f: f.flush())

    def flush(self) -> None:
        """End the open chunk and fsync now (also done every `flush_period_s`)."""
        with self._lock:
            self._check_open()
            self._guarded(lambda f: f.flush())

    def close(self) -> None:
        """Finish the current file and write metadata.yaml; safe to call twice."""
        if self._closed:
            return
        self._stop.set()
        self._flusher.join()
        with self._lock:
            self._closed = True
            if self._file is not None:
                file, self._file = self._file, None
                try:
                    file.finish(self._topics.values())
                    self._done.append(file.info)
                except OSError as exc:
                    file.abort()
                    self.damaged.append(file.path.name)
                    self._error = self._error or BagWriteError(
                        exc.errno, f"cannot finish bag file: {exc.strerror}", str(file.path))
            write_metadata(self.path, self._done, self._topics.values())
            if self.damaged:
                log.warning("bag %s: files %s are incomplete; run `spatial-ttt bag recover %s`",
                            self.path, self.damaged, self.path)
            if self._error is not None:
                raise self._error

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"bag {self.path} is closed")
        if self._error is not None:
            raise self._error

    def _open_next(self) -> None:
        path = self.path / f"{self.name}_{self._index}.mcap"
        self._index += 1
        file = None
        try:
            file = McapFile(path, self._compression, self._chunk_size)
            for spec in self._topics.values():
                file.add_topic(spec)
            file.flush()  # proves the file is writable and makes its directory entry durable
            fsync_dir(self.path)
        except OSError as exc:
            if file is not None:
                file.abort()
            self._error = BagWriteError(exc.errno, f"cannot write bag file: {exc.strerror}", str(path))
            raise self._error from exc
        self._file = file

    def _split(self) -> None:
        assert self._file is not None
        file, self._file = self._file, None
        try:
            file.finish(self._topics.values())
        except OSError as exc:
            self._abandon(file, exc)
        else:
            self._done.append(file.info)
            write_metadata(self.path, self._done, self._topics.values())
        self._open_next()

    def _abandon(self, file: McapFile, exc: OSError) -> None:
        file.abort()
        self.damaged.append(file.path.name)
        log.error("bag file %s failed (%s); data up to its last flush is kept, continuing in the "
                  "next file", file.path, exc)

    def _guarded(self, op: Any) -> None:
        """Run `op(current_file)`; on an OS error abandon the file and retry once in the next."""
        assert self._file is not None
        try:
            op(self._file)
        except OSError as exc:
            file, self._file = self._file, None
            self._abandon(file, exc)
            self._open_next()
            try:
                op(self._file)
            except OSError as again:
                file, self._file = self._file, None
                self._abandon(file, again)
                self._error = BagWriteError(again.errno, f"bag file failed right after a split: "
                                            f"{again.strerror}", str(file.path))
                raise self._error from again

    def _flush_loop(self, period_s: float) -> None:
        # Wake often enough that no message waits much longer than one period.
        while not self._stop.wait(min(0.05, period_s / 10)):
            with self._lock:
                if self._closed or self._error is not None or self._file is None:
                    continue
                if not self._file.dirty or time.monotonic() - self._file.flushed_at < period_s:
                    continue
                try:
                    self._guarded(lambda f: f.flush())
                except BagWriteError as exc:
                    log.error("bag %s: %s", self.path, exc)


_FILE_INDEX = re.compile(r"_(\d+)\.mcap$")


def mcap_files(bag_dir: Path) -> list[Path]:
    """The bag's .mcap files in episode order (`<name>_<i>.mcap` by i, others by name after)."""
    def key(p: Path) -> tuple[int, int, str]:
        m = _FILE_INDEX.search(p.name)
        return (0, int(m.group(1)), p.name) if m else (1, 0, p.name)
    return sorted((p for p in bag_dir.glob("*.mcap") if p.is_file()), key=key)


def cli_bag(argv: list[str]) -> int:
    """`spatial-ttt bag SUBCOMMAND ...`: `recover BAG` (recover.cli_recover), `info BAG...` (bag_reader)."""
    usage = ("usage: spatial-ttt bag {recover,info} BAG\n\n  recover   salvage a bag whose writer was killed\n"
             "  info      topics, message counts and what cannot be read")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] == "info":
        from spatial_ttt_ros.data.bag_reader import cli_info  # noqa: PLC0415

        return cli_info(argv[1:])
    if argv[0] != "recover":
        print(f"spatial-ttt bag: unknown subcommand {argv[0]!r}; expected 'recover' or 'info'", file=sys.stderr)
        return 2
    from spatial_ttt_ros.data.recover import cli_recover  # recover imports this module

    return cli_recover(argv[1:])
