"""Recover a rosbag2 MCAP bag whose writer died: salvage complete chunks, rewrite metadata.yaml.

A killed BagWriter leaves its last file without summary and footer, and metadata.yaml missing
or listing only the files finished before. `recover_bag` reads every damaged file record by
record with mcap's StreamReader, keeps each chunk whose CRC checks (a chunk that fails is
skipped, reading goes on after it), stops at the truncation, and rewrites the salvage as a
complete file in place (temp file, fsync, rename). Healthy files are only read for their
summary. Running it on a healthy bag changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import yaml
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, McapRecord, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

from spatial_ttt_ros.data.bags import FileInfo, McapFile, TopicSpec, fsync_dir, mcap_files, write_metadata

_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class FileReport:
    """What happened to one file: "ok" (healthy, untouched), "salvaged", or "dropped" (nothing
    readable; renamed to `<file>.damaged` and left out of the bag)."""

    name: str
    status: str
    messages: int
    bad_chunks: int = 0
    stopped_at: str = ""  # why reading a damaged file stopped


@dataclass
class RecoveryReport:
    path: Path
    files: list[FileReport] = field(default_factory=list)
    messages_per_topic: dict[str, int] = field(default_factory=dict)
    metadata_written: bool = False

    @property
    def healthy(self) -> bool:
        """True when the bag needed no repair."""
        return not self.metadata_written and all(f.status == "ok" for f in self.files)

    @property
    def total_messages(self) -> int:
        return sum(self.messages_per_topic.values())

    def __str__(self) -> str:
        lines = [f"bag {self.path}: " + ("healthy, nothing to do" if self.healthy else
                                         f"recovered, {self.total_messages} messages")]
        for f in self.files:
            extra = f", {f.bad_chunks} bad chunks skipped" if f.bad_chunks else ""
            extra += f", stopped at: {f.stopped_at}" if f.stopped_at else ""
            lines.append(f"  {f.name}: {f.status}, {f.messages} messages{extra}")
        lines += [f"  {topic}: {n}" for topic, n in sorted(self.messages_per_topic.items())]
        return "\n".join(lines)


def _spec(channel: Channel, schema: Schema | None) -> TopicSpec:
    meta = channel.metadata
    return TopicSpec(
        topic=channel.topic,
        msgtype=schema.name if schema else "",
        msgdef=schema.data.decode() if schema else "",
        type_hash=meta.get("topic_type_hash", ""),
        encoding=channel.message_encoding,
        schema_encoding=schema.encoding if schema else "",
        qos_yaml=meta.get("offered_qos_profiles", ""),
    )


def _read_healthy(path: Path) -> tuple[FileInfo, list[TopicSpec]] | None:
    """Info and topics of a complete file from its summary; None when the file needs salvage."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) < 2 * len(_MAGIC):
                return None
            f.seek(-len(_MAGIC), os.SEEK_END)
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            f.seek(0)
            summary = make_reader(f).get_summary()
    except Exception:  # any parse failure of the footer or summary means: salvage it
        return None
    if summary is None or summary.statistics is None:
        return None
    stats = summary.statistics
    specs = {cid: _spec(ch, summary.schemas.get(ch.schema_id)) for cid, ch in summary.channels.items()}
    info = FileInfo(path.name, stats.message_count, stats.message_start_time, stats.message_end_time,
                    {specs[cid].topic: n for cid, n in stats.channel_message_counts.items() if cid in specs})
    return info, list(specs.values())


def _readable_records(f: BinaryIO, report: FileReport) -> Iterator[McapRecord]:
    """Records of a damaged file up to the damage; chunks failing their CRC are skipped."""
    records = StreamReader(f, emit_chunks=True).records
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as exc:  # truncation or garbage can fail the parser in many ways
            report.stopped_at = f"{type(exc).__name__}: {exc}"[:200]
            return
        if not isinstance(record, Chunk):
            yield record
            continue
        try:
            inner = breakup_chunk(record, validate_crc=True)
        except Exception:  # CRC mismatch or undecodable chunk; its framing is intact, read on
            report.bad_chunks += 1
            continue
        yield from inner


def _salvage(path: Path, compression: str) -> tuple[FileInfo | None, list[TopicSpec], FileReport]:
    """Copy every readable message of a damaged file into a new complete file that replaces it."""
    tmp = path.with_name(path.name + ".recovering")
    tmp.unlink(missing_ok=True)
    out: McapFile | None = None
    schemas: dict[int, Schema] = {}
    channels: dict[int, TopicSpec] = {}
    report = FileReport(path.name, "salvaged", 0)

    def handle(record: object) -> None:
        nonlocal out
        if isinstance(record, Schema):
            schemas[record.id] = record
        elif isinstance(record, Channel) and record.schema_id in schemas:
            channels[record.id] = _spec(record, schemas[record.schema_id])
        elif isinstance(record, Message) and record.channel_id in channels:
            spec = channels[record.channel_id]
            if out is None:
                out = McapFile(tmp, compression, name=path.name)
            out.add_topic(spec)
            out.write(spec.topic, record.log_time, record.data, record.publish_time, record.sequence)

    with open(path, "rb") as f:
        for record in _readable_records(f, report):
            handle(record)
    if out is None:
        # Nothing readable: set it aside (not deleted, not part of the bag any more).
        os.replace(path, path.with_name(path.name + ".damaged"))
        report.status = "dropped"
        return None, [], report
    out.finish(channels.values())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    report.messages = out.info.message_count
    return out.info, list(channels.values()), report


def _listed_files(bag_dir: Path) -> list[str] | None:
    meta = bag_dir / "metadata.yaml"
    if not meta.exists():
        return None
    try:
        info = yaml.safe_load(meta.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        if info.get("storage_identifier") != "mcap":
            raise ValueError(f"bag {bag_dir} uses storage {info.get('storage_identifier')!r}; "
                             "only mcap bags can be recovered")
        return [str(p) for p in info["relative_file_paths"]]
    except (yaml.YAMLError, KeyError, TypeError):
        return None  # unreadable metadata: rebuild it


def recover_bag(path: str | os.PathLike[str], compression: str = "zstd") -> RecoveryReport:
    """Make a killed writer's bag directory readable again; see the module doc."""
    bag_dir = Path(path)
    if not bag_dir.is_dir():
        raise ValueError(f"bag directory {bag_dir} does not exist")
    files = mcap_files(bag_dir)
    if not files:
        raise ValueError(f"bag directory {bag_dir} holds no .mcap files")
    listed = _listed_files(bag_dir)
    report = RecoveryReport(bag_dir)
    infos: list[FileInfo] = []
    topics: dict[str, TopicSpec] = {}
    for file in files:
        healthy = _read_healthy(file)
        if healthy is not None:
            info, specs = healthy
            report.files.append(FileReport(file.name, "ok", info.message_count))
        else:
            info, specs, file_report = _salvage(file, compression)
            report.files.append(file_report)
            if info is None:
                continue
        infos.append(info)
        for spec in specs:
            topics.setdefault(spec.topic, spec)
        for topic, n in info.topic_counts.items():
            report.messages_per_topic[topic] = report.messages_per_topic.get(topic, 0) + n
    for topic in topics:
        report.messages_per_topic.setdefault(topic, 0)
    unchanged = all(f.status == "ok" for f in report.files)
    if not (unchanged and listed is not None and sorted(listed) == sorted(i.name for i in infos)):
        write_metadata(bag_dir, infos, topics.values())
        report.metadata_written = True
    return report


def cli_recover(argv: list[str]) -> int:
    """`spatial-ttt bag recover BAG`: repair a bag left by a killed recorder."""
    parser = argparse.ArgumentParser(prog="spatial-ttt bag recover",
                                     description="Salvage a rosbag2 MCAP bag whose writer was killed.")
    parser.add_argument("bag", type=Path, help="bag directory (holds <name>_<i>.mcap files)")
    args = parser.parse_args(argv)
    try:
        report = recover_bag(args.bag)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0
