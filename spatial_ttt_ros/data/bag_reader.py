"""Reading rosbag2 bags (MCAP or sqlite3) with rosbags: raw CDR messages or decoded ones.

Custom message types are registered from the definitions the bag stores, so a reader needs no
prior knowledge of the project's types. A bag whose writer was killed has no metadata.yaml:
`spatial-ttt bag recover` (data/recover.py) rebuilds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.store import Typestore

from spatial_ttt_ros.data.msgs import new_typestore


class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes


_NO_METADATA = "has no metadata.yaml (was its writer killed?); run `spatial-ttt bag recover {}`"


class BagReader:
    """Read a rosbag2 bag with rosbags; custom types are registered from the stored definitions."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            raise ValueError(f"bag {self.path} " + _NO_METADATA.format(self.path))
        self._reader = Reader(self.path)
        try:
            self._reader.open()
        except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, KeyError ...
            raise ValueError(f"cannot read bag {self.path}: {exc}") from exc
        self.store: Typestore = new_typestore()
        for conn in self._reader.connections:
            if conn.msgtype in self.store.types:
                continue
            parse = get_types_from_idl if conn.msgdef.format == MessageDefinitionFormat.IDL else get_types_from_msg
            try:
                self.store.register(parse(conn.msgdef.data, conn.msgtype))
            except Exception as exc:  # malformed stored definition
                raise ValueError(f"bag {self.path}: cannot parse the definition of {conn.msgtype} "
                                 f"on {conn.topic}: {exc}") from exc

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def counts(self) -> dict[str, int]:
        """Topic -> message count."""
        out: dict[str, int] = {}
        for c in self._reader.connections:
            out[c.topic] = out.get(c.topic, 0) + c.msgcount
        return out

    @property
    def files(self) -> list[str]:
        """File names listed in metadata.yaml."""
        return [f["path"] for f in getattr(self._reader.storage, "files", [])]

    def raw(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        """(topic, msgtype, stamp_ns, cdr bytes) in file order, optionally only `topics`."""
        wanted = None if topics is None else set(topics)
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        for conn, stamp, data in self._reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, stamp, data)

    def decoded(self, topics: Iterable[str] | None = None) -> Iterator[tuple[RawMessage, Any]]:
        """Each raw message with its decoded rosbags message object."""
        for raw in self.raw(topics):
            yield raw, self.store.deserialize_cdr(raw.data, raw.msgtype)


def read_bag(path: str | os.PathLike[str], topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
    """Iterate (topic, msgtype, stamp_ns, cdr bytes) of a bag."""
    with BagReader(path) as reader:
        yield from reader.raw(topics)


def read_decoded(path: str | os.PathLike[str],
                 topics: Iterable[str] | None = None) -> Iterator[tuple[RawMessage, Any]]:
    """Iterate (raw message, decoded message) of a bag."""
    with BagReader(path) as reader:
        yield from reader.decoded(topics)
