"""Reading rosbag2 bags (MCAP or sqlite3): raw CDR messages or decoded ones, topic by topic.

    with BagReader("run/bag") as bag:        # a bag directory, or one .mcap / .db3 file
        bag.counts                            # topic -> message count metadata.yaml states
        bag.problems                          # topic -> why it cannot be read or decoded
        for raw, msg in bag.decoded(["/camera/pose"]): ...

What any bag rosbag2 wrote can hold, and how it is read (test/data/rosbag2_test_bags):

* metadata.yaml lists the topics and files; each file is read on its own with rosbags' storage
  reader and its channels are matched to the listed topics by topic name. (rosbags' directory
  reader also demands equal QoS descriptions, and rosbag2 writes them differently in
  metadata.yaml and in the MCAP channels of some bags, so whole topics read as 0 messages.)
* Types are registered from the definitions the bag stores, so no prior knowledge of custom types
  is needed; where a stored definition differs from the ROS 2 Kilted one of the same name, the
  bag's own definition decodes that topic. A service-event topic whose stored definition is the
  .srv text (what rosbag2 of Iron/Jazzy writes) gets its real `<srv>_Event` type rebuilt from it.
  Old two-part type names (`test_msgs/BasicTypes`) are read as `test_msgs/msg/BasicTypes`.
* Compressed bags (rosbag2's zstd, per file or per message) are decompressed on the fly (a
  whole file into a temporary directory while the reader is open).
* Whatever still cannot be read (a definition that does not parse, an unknown type without a
  definition, a non-CDR serialisation, a missing or unreadable file) is named per topic in
  `problems`; every other topic is read in full, never refused with it. `raw()` still yields the
  bytes of topics that only fail to decode.

A bag whose writer was killed has no metadata.yaml: `spatial-ttt bag recover` (data/recover.py)
rebuilds it. `spatial-ttt bag info BAG` prints counts and problems.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import yaml
import zstandard
from rosbags.interfaces import MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.store import Typestore

from spatial_ttt_ros.data.msgs import new_typestore


class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes


class TopicInfo(NamedTuple):
    msgtype: str
    count: int          # what metadata.yaml (or a bare file's summary) states
    serialization: str


_NO_METADATA = "has no metadata.yaml (was its writer killed?); run `spatial-ttt bag recover {}`"
_OLD_NAME = re.compile(r"^([A-Za-z0-9_]+)/([A-Za-z0-9_]+)$")
_SEPARATOR = re.compile(r"^={3,}\s*$", re.MULTILINE)
_MAX_REASON = 300


def normalize_type(name: str) -> str:
    """`pkg/Name` (an old rosbag2 or ROS 1 style name) -> `pkg/msg/Name`; others unchanged."""
    m = _OLD_NAME.match(name)
    return f"{m.group(1)}/msg/{m.group(2)}" if m else name


def _short(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."


def _service_event_types(msgtype: str, text: str) -> dict:
    """Typesdict of `pkg/srv/Name_Event` rebuilt from a stored .srv text ("request --- response")."""
    main, *deps = _SEPARATOR.split(text, maxsplit=1)
    parts = re.split(r"^---\s*$", main, flags=re.MULTILINE)
    if len(parts) != 2:
        raise ValueError("the stored definition is neither a message nor a request/response pair")
    base = msgtype[: -len("_Event")]
    tail = ("\n" + "=" * 80 + "\n" + deps[0]) if deps else ""
    types: dict = {}
    types.update(get_types_from_msg(parts[0] + tail, f"{base}_Request"))
    types.update(get_types_from_msg(parts[1] + tail, f"{base}_Response"))
    event = (f"service_msgs/msg/ServiceEventInfo info\n{base}_Request[<=1] request\n"
             f"{base}_Response[<=1] response\n")
    types.update(get_types_from_msg(event, msgtype))
    return types


def _undefined_type(store: Typestore, name: str) -> str | None:
    """The first type `name` refers to (through its fields, recursively) that `store` lacks."""
    stack, seen = [name], set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t not in store.fielddefs:
            return t
        for _, (node, detail) in store.fielddefs[t][1]:
            while node in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                node, detail = detail[0]
            if node == Nodetype.NAME:
                stack.append(detail)
    return None


class BagReader:
    """Read a rosbag2 bag, every readable topic in full; see the module doc."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"bag {self.path} does not exist")
        self.store: Typestore = new_typestore()  # Kilted types + the bag's own compatible ones
        self._stores: dict[str, Typestore] = {}  # topic -> the store that decodes it
        self._decode_as: dict[str, str] = {}  # topic -> its type's name in that store
        self._topics: dict[str, TopicInfo] = {}
        self._problems: dict[str, str] = {}
        self._readers: list[tuple[str, Any]] = []  # (file name, open rosbags Reader)
        self.file_problems: dict[str, str] = {}
        self.skipped: dict[str, int] = {}  # topic -> messages decoded() skipped (skip_undecodable)
        self.storage = ""
        self.compression = ""  # "<mode>/<format>" of a compressed bag, e.g. "file/zstd"
        self._message_zstd = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        try:
            if self.path.is_dir():
                self._open_dir()
            else:
                self._open_files([self.path])
                for _, reader in self._readers:
                    for conn in reader.connections:
                        self._add_topic(conn.topic, normalize_type(conn.msgtype),
                                        getattr(conn.ext, "serialization_format", "cdr"), conn.msgcount)
            self._register_types()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------------

    def _open_dir(self) -> None:
        meta_path = self.path / "metadata.yaml"
        if not meta_path.exists():
            raise ValueError(f"bag {self.path} " + _NO_METADATA.format(self.path))
        try:
            doc = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
            info = doc["rosbag2_bagfile_information"]
            topics = info.get("topics_with_message_count") or []
            files = [str(p) for p in info.get("relative_file_paths") or []]
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bag {self.path}: cannot read metadata.yaml: {_short(exc)}") from None
        self.storage = str(info.get("storage_identifier", ""))
        mode = str(info.get("compression_mode") or "").lower()
        self.compression = "" if mode in ("", "none") else f"{mode}/{info.get('compression_format', '')}"
        for entry in topics:
            try:
                meta = entry["topic_metadata"]
                self._add_topic(str(meta["name"]), normalize_type(str(meta["type"])),
                                str(meta.get("serialization_format", "cdr")), int(entry.get("message_count", 0)))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"bag {self.path}: bad topic entry in metadata.yaml: {_short(exc)}") from None
        fmt = str(info.get("compression_format") or "")
        if self.compression and (fmt != "zstd" or mode not in ("file", "message")):
            for topic in self._topics:  # rosbag2 writes zstd per file or per message only
                self._problems[topic] = f"the bag is compressed as {self.compression!r}; only file/zstd and message/zstd are read"
            return
        self._message_zstd = mode == "message"
        paths = []
        for name in files:
            p = self.path / PurePath(name).name
            if not p.is_file():
                self.file_problems[PurePath(name).name] = "listed in metadata.yaml but missing"
            elif mode == "file":
                try:
                    paths.append(self._decompress(p))
                except (OSError, zstandard.ZstdError) as exc:
                    self.file_problems[p.name] = f"cannot decompress: {_short(exc)}"
            else:
                paths.append(p)
        self._open_files(paths)
        seen = {conn.topic for _, r in self._readers for conn in r.connections}
        for topic, info_ in self._topics.items():
            if topic not in seen and info_.count > 0 and topic not in self._problems:
                where = (f"; unreadable files: {sorted(self.file_problems)}" if self.file_problems else "")
                self._problems[topic] = (f"metadata.yaml states {info_.count} messages but no readable "
                                         f"file has this topic{where}")
        for _, reader in self._readers:  # channels metadata.yaml does not list
            for conn in reader.connections:
                if conn.topic not in self._topics:
                    self._add_topic(conn.topic, normalize_type(conn.msgtype),
                                    getattr(conn.ext, "serialization_format", "cdr"), conn.msgcount)

    def _decompress(self, path: Path) -> Path:
        """A file-compressed (`<file>.zstd`) data file, decompressed into a temporary directory."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bag_reader_")
        out = Path(self._tmp.name) / (path.name[:-5] if path.name.endswith(".zstd") else path.name)
        with open(path, "rb") as src, open(out, "wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        return out

    def _open_files(self, paths: list[Path]) -> None:
        for p in paths:
            try:
                reader = Reader(p)
                reader.open()
            except Exception as exc:  # noqa: BLE001  rosbags raises ReaderError, KeyError, struct.error ...
                self.file_problems[p.name] = _short(exc)
                continue
            self._readers.append((p.name, reader))
        if not self._readers and self.file_problems:
            names = "; ".join(f"{k}: {v}" for k, v in self.file_problems.items())
            raise ValueError(f"cannot read bag {self.path}: no file is readable ({names})")

    def _add_topic(self, topic: str, msgtype: str, serialization: str, count: int) -> None:
        known = self._topics.get(topic)
        if known is None:
            self._topics[topic] = TopicInfo(msgtype, count, serialization)
        elif known.msgtype != msgtype:
            self._problems[topic] = f"the bag has this topic with two types, {known.msgtype} and {msgtype}"

    def _register_types(self) -> None:
        """One decoding store per topic: the shared one where compatible, else the bag's own."""
        defs: dict[str, Any] = {}
        for _, reader in self._readers:
            for conn in reader.connections:
                if conn.topic in self._topics:
                    defs.setdefault(conn.topic, (normalize_type(conn.msgtype), conn.msgdef))
        for topic, info in self._topics.items():
            if topic in self._problems:
                continue
            if info.serialization != "cdr":
                self._problems[topic] = f"serialization {info.serialization!r} is not CDR; only CDR is decoded"
                continue
            msgtype, msgdef = defs.get(topic, (info.msgtype, None))
            if msgdef is None or msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data.strip():
                if msgtype in self.store.types:
                    self._stores[topic] = self.store
                elif msgdef is not None and msgdef.format != MessageDefinitionFormat.NONE:
                    self._register(topic, msgtype, "")  # an empty definition: a message with no fields
                elif topic in defs or info.count:
                    self._problems[topic] = f"type {msgtype} is unknown and the bag stores no definition of it"
                continue
            idl = msgdef.format == MessageDefinitionFormat.IDL
            self._register(topic, msgtype, msgdef.data, idl=idl)

    def _register(self, topic: str, msgtype: str, text: str, *, idl: bool = False) -> None:
        try:
            try:
                types = get_types_from_idl(text) if idl else get_types_from_msg(text, msgtype)
            except Exception as exc:  # noqa: BLE001  rosbags raises several parser error types
                if not (msgtype.endswith("_Event") and "/srv/" in msgtype):
                    raise ValueError(f"its stored definition of {msgtype} does not parse: {_short(exc)}") from None
                try:
                    types = _service_event_types(msgtype, text)
                except Exception as exc2:  # noqa: BLE001
                    raise ValueError(f"its stored definition of {msgtype} does not parse ({_short(exc)}), "
                                     f"nor as a service's request/response ({_short(exc2)})") from None
            types = {normalize_type(k): v for k, v in types.items()}
            try:
                self.store.register(types)
                store = self.store
            except Exception:  # noqa: BLE001  differs from a Kilted type of the same name: use the bag's
                store = Typestore()
                store.register(types)
            # rosbags names a type outside msg/ (pkg/srv/X_Event) pkg/srv/msg/X_Event.
            name = next((n for n in (msgtype, msgtype.replace("/srv/", "/srv/msg/", 1)) if n in store.types), None)
            if name is None:
                raise ValueError(f"its stored definition does not define {msgtype}")
            if (missing := _undefined_type(store, name)) is not None:
                raise ValueError(f"its stored definition of {msgtype} refers to {missing}, which the bag "
                                 "does not define and ROS 2 Kilted does not know")
            self._stores[topic] = store
            self._decode_as[topic] = name
        except ValueError as exc:
            self._problems[topic] = str(exc)
        except Exception as exc:  # noqa: BLE001  code generation from a crafted definition
            self._problems[topic] = f"cannot build a decoder for {msgtype}: {_short(exc)}"

    # -- queries -------------------------------------------------------------------------------

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        readers, self._readers = self._readers, []
        for _, reader in readers:
            try:
                reader.close()
            except Exception:  # noqa: BLE001,S110  closing a half-open reader
                pass
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type (pkg/msg/Name)."""
        return {t: i.msgtype for t, i in self._topics.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Topic -> message count as metadata.yaml (or a bare file's summary) states it."""
        return {t: i.count for t, i in self._topics.items()}

    @property
    def problems(self) -> dict[str, str]:
        """Topic -> why (some of) it cannot be read or decoded; absent topics read in full."""
        return dict(self._problems)

    @property
    def files(self) -> list[str]:
        """The data files that were opened, in bag order."""
        return [name for name, _ in self._readers]

    def decodable(self, topic: str) -> bool:
        return topic in self._stores

    def raw(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        """(topic, msgtype, stamp_ns, cdr bytes), file by file in bag order, each file in time
        order; optionally only `topics`. Topics with a read problem yield what can be read."""
        wanted = None if topics is None else set(topics)
        for _, reader in self._readers:
            conns = [c for c in reader.connections if (wanted is None or c.topic in wanted)
                     and c.topic in self._topics]
            if not conns:
                continue
            for conn, stamp, data in reader.messages(connections=conns):
                if self._message_zstd:
                    try:
                        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                    except zstandard.ZstdError as exc:
                        raise ValueError(f"bag {self.path}: message on {conn.topic} at {stamp} ns is not valid "
                                         f"zstd: {_short(exc)}") from None
                yield RawMessage(conn.topic, self._topics[conn.topic].msgtype, stamp, data)

    def decoded(self, topics: Iterable[str] | None = None, *,
                skip_undecodable: bool = False) -> Iterator[tuple[RawMessage, Any]]:
        """Each raw message with its decoded rosbags message object.

        topics=None decodes every decodable topic (the others are in `problems`). A requested
        topic that cannot be decoded, or a message whose bytes do not decode, is a ValueError
        naming it, unless skip_undecodable (then such messages are counted in `skipped`)."""
        if topics is None:
            wanted = set(self._stores)
        else:
            wanted = set(topics)
            bad = sorted(t for t in wanted if t in self._topics and t not in self._stores)
            if bad and not skip_undecodable:
                raise ValueError(f"bag {self.path}: cannot decode {bad[0]}: "
                                 f"{self._problems.get(bad[0], 'no decoder')}")
            wanted &= set(self._stores)
        self.skipped: dict[str, int] = {}
        for raw in self.raw(wanted):
            try:
                msg = self._stores[raw.topic].deserialize_cdr(raw.data, self._decode_as.get(raw.topic, raw.msgtype))
            except Exception as exc:  # noqa: BLE001  corrupt or mismatched bytes
                if not skip_undecodable:
                    raise ValueError(f"bag {self.path}: message on {raw.topic} at {raw.stamp_ns} ns does "
                                     f"not decode as {raw.msgtype}: {_short(exc)}") from None
                self.skipped[raw.topic] = self.skipped.get(raw.topic, 0) + 1
                continue
            yield raw, msg

    def summary(self) -> str:
        """Per topic: type, stated count and any problem; per unreadable file: why."""
        lines = [f"bag {self.path}: {len(self._topics)} topics, {sum(self.counts.values())} messages"
                 + (f" ({self.storage})" if self.storage else "")]
        for topic, info in sorted(self._topics.items()):
            note = f"  CANNOT READ: {self._problems[topic]}" if topic in self._problems else ""
            lines.append(f"  {topic} [{info.msgtype}]: {info.count}{note}")
        lines += [f"  file {name}: CANNOT READ: {why}" for name, why in sorted(self.file_problems.items())]
        return "\n".join(lines)


def read_bag(path: str | os.PathLike[str], topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
    """Iterate (topic, msgtype, stamp_ns, cdr bytes) of a bag."""
    with BagReader(path) as reader:
        yield from reader.raw(topics)


def read_decoded(path: str | os.PathLike[str],
                 topics: Iterable[str] | None = None) -> Iterator[tuple[RawMessage, Any]]:
    """Iterate (raw message, decoded message) of a bag (every decodable topic when topics=None)."""
    with BagReader(path) as reader:
        yield from reader.decoded(topics)


def cli_info(argv: list[str]) -> int:
    """`spatial-ttt bag info BAG...`: topics, stated counts and what cannot be read; 1 if unreadable."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: spatial-ttt bag info BAG...")
        return 0 if argv else 2
    rc = 0
    for path in argv:
        try:
            with BagReader(path) as reader:
                print(reader.summary())
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            rc = 1
    return rc
