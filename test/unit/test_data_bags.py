"""Crash-safe MCAP bags: round trip, rosbag2 layout, splits, SIGKILL + recovery, write errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.records import Chunk, Header, Metadata
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import Reader

from spatial_ttt_ros.data import bags, msgs
from spatial_ttt_ros.data.bag_reader import BagReader, read_bag, read_decoded
from spatial_ttt_ros.data.bags import BagWriteError, BagWriter, cli_bag
from spatial_ttt_ros.data.recover import cli_recover, recover_bag

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000
K = np.array([[420.0, 0.0, 239.5], [0.0, 421.0, 175.5], [0.0, 0.0, 1.0]])
ANSWER_T = "spatial_ttt_ros/msg/SpatialAnswer"
ANSWER_MSG = "std_msgs/Header header\nstring answer\ngeometry_msgs/Point[] points\nfloat32 confidence\n"


def stamp(i: int) -> int:
    return T0 + i * 100_000_000  # 10 Hz


def frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A gradient image: JPEG keeps it close, unlike noise."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 3 + i, y * 4, np.full_like(x, 100 + i)], axis=2).astype(np.uint8)


def write_all_topics(path: Path, n: int) -> dict[tuple[str, int], bytes]:
    """Write n frames on every well-known topic plus a custom type; return what was written."""
    written: dict[tuple[str, int], bytes] = {}
    store = msgs.new_typestore()
    from rosbags.typesys import get_types_from_msg
    store.register(get_types_from_msg(ANSWER_MSG, ANSWER_T))
    t = store.types
    with BagWriter(path) as w:
        for topic, msgtype in msgs.TOPIC_TYPES.items():
            w.add_topic(topic, msgtype)
        w.add_topic("/spatial_ttt/answer", ANSWER_T, ANSWER_MSG)
        for i in range(n):
            s = stamp(i)
            payloads = {
                msgs.TOPIC_IMAGE: msgs.image_msg(frame(i), s),
                msgs.TOPIC_IMAGE_COMPRESSED: msgs.compressed_image_msg(smooth(i), s),
                msgs.TOPIC_CAMERA_INFO: msgs.camera_info_msg(K, 64, 48, s),
                msgs.TOPIC_POSE: msgs.pose_msg([i, 2.0, 1.3], [0.0, 0.0, np.sin(i / 10), np.cos(i / 10)], s),
                msgs.TOPIC_ANNOTATIONS: msgs.string_msg(json.dumps({"frame": i, "objects": ["chair_0"]})),
                msgs.TOPIC_DESCRIPTIONS: msgs.string_msg(f"frame {i}: a chair left of the table"),
                "/spatial_ttt/answer": bytes(store.serialize_cdr(t[ANSWER_T](
                    header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=0),
                                                    frame_id="map"),
                    answer=f"answer {i}", points=[t["geometry_msgs/msg/Point"](x=1.0, y=float(i), z=0.0)],
                    confidence=0.5), ANSWER_T)),
            }
            for topic, data in payloads.items():
                w.write(topic, s, data)
                written[(topic, s)] = data
    return written


def test_round_trip_every_topic(tmp_path):
    bag = tmp_path / "rt"
    n = 6
    written = write_all_topics(bag, n)
    # Plain rosbags Reader: content and stamps byte for byte.
    with Reader(bag) as r:
        got = {(c.topic, ts): bytes(raw) for c, ts, raw in r.messages()}
        assert {c.topic: c.msgcount for c in r.connections} == {t: n for t in {k[0] for k in written}}
        store = msgs.typestore()
        digests = {c.topic: c.digest for c in r.connections}
        assert digests[msgs.TOPIC_IMAGE] == store.hash_rihs01(msgs.IMAGE)
    assert got == written
    # Our reader decodes standard and custom types (registered from the stored definition).
    seen = set()
    for raw, m in read_decoded(bag):
        i = (raw.stamp_ns - T0) // 100_000_000
        seen.add((raw.topic, i))
        if raw.topic == msgs.TOPIC_IMAGE:
            assert np.array_equal(msgs.image_from_msg(m), frame(i)) and msgs.stamp_ns_of(m) == raw.stamp_ns
        elif raw.topic == msgs.TOPIC_IMAGE_COMPRESSED:
            assert np.abs(msgs.image_from_msg(m).astype(int) - smooth(i)).mean() < 3
        elif raw.topic == msgs.TOPIC_CAMERA_INFO:
            assert np.allclose(msgs.k_from_camera_info(m), K) and (m.width, m.height) == (64, 48)
        elif raw.topic == msgs.TOPIC_POSE:
            pos, q = msgs.pose_from_msg(m)
            assert np.allclose(pos, [i, 2.0, 1.3]) and np.isclose(np.linalg.norm(q), 1.0)
        elif raw.topic == msgs.TOPIC_ANNOTATIONS:
            assert json.loads(m.data) == {"frame": i, "objects": ["chair_0"]}
        elif raw.topic == "/spatial_ttt/answer":
            assert raw.msgtype == ANSWER_T and m.answer == f"answer {i}" and m.points[0].y == i
    assert len(seen) == len(written)


def test_layout_matches_rosbag2_mcap(tmp_path):
    bag = tmp_path / "layout"
    write_all_topics(bag, 2)
    assert sorted(p.name for p in bag.iterdir()) == ["layout_0.mcap", "metadata.yaml"]
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["layout_0.mcap"] and info["message_count"] == 14
    assert info["duration"]["nanoseconds"] == stamp(1) - stamp(0)
    topic = next(t for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] == msgs.TOPIC_POSE)
    assert topic["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert topic["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
    records = list(StreamReader(open(bag / "layout_0.mcap", "rb"), emit_chunks=True).records)
    header = next(r for r in records if isinstance(r, Header))
    chunks = [r for r in records if isinstance(r, Chunk)]
    meta = [r for r in records if isinstance(r, Metadata)]
    assert header.profile == "ros2"
    assert chunks and all(c.compression == "zstd" and c.uncompressed_crc != 0 for c in chunks)
    assert meta[0].name == "rosbag2" and "serialized_metadata" in meta[0].metadata
    from mcap.stream_reader import breakup_chunk
    inner = breakup_chunk(chunks[0], validate_crc=True)
    schema = next(r for r in inner if type(r).__name__ == "Schema")
    channel = next(r for r in inner if type(r).__name__ == "Channel")
    assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
    assert set(channel.metadata) == {"offered_qos_profiles", "topic_type_hash"}


def test_split_by_size_and_duration(tmp_path):
    big = 120 * 160 * 3
    with BagWriter(tmp_path / "size", max_bytes=5 * big) as w:
        w.add_topic(msgs.TOPIC_IMAGE, msgs.IMAGE)
        for i in range(23):
            w.write(msgs.TOPIC_IMAGE, stamp(i), msgs.image_msg(frame(i, 120, 160), stamp(i)))
        open_meta = yaml.safe_load((tmp_path / "size" / "metadata.yaml").read_text())
        assert open_meta["rosbag2_bagfile_information"]["relative_file_paths"] == w.files  # split wrote it
    files = sorted((tmp_path / "size").glob("*.mcap"))
    assert len(files) == 6 and w.files == [f"size_{i}.mcap" for i in range(6)]
    assert all(f.stat().st_size <= 5 * big + 4096 for f in files)
    stamps = [m.stamp_ns for m in read_bag(tmp_path / "size")]
    assert stamps == [stamp(i) for i in range(23)]

    with BagWriter(tmp_path / "dur", max_duration_s=1.0) as w:
        w.add_topic(msgs.TOPIC_POSE, msgs.POSE_STAMPED)
        for i in range(25):
            w.write(msgs.TOPIC_POSE, stamp(i), msgs.pose_msg([0, 0, 0], [0, 0, 0, 1], stamp(i)))
    with BagReader(tmp_path / "dur") as r:
        assert r.files == ["dur_0.mcap", "dur_1.mcap", "dur_2.mcap"] and r.counts[msgs.TOPIC_POSE] == 25
    counts = [f["message_count"] for f in yaml.safe_load((tmp_path / "dur" / "metadata.yaml").read_text())
              ["rosbag2_bagfile_information"]["files"]]
    assert counts == [10, 10, 5]


CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from spatial_ttt_ros.data import msgs
    from spatial_ttt_ros.data.bags import BagWriter
    w = BagWriter(sys.argv[1], flush_period_s=1.0, max_duration_s=json.loads(sys.argv[2]))
    for topic in (msgs.TOPIC_IMAGE, msgs.TOPIC_POSE, msgs.TOPIC_ANNOTATIONS):
        w.add_topic(topic, msgs.TOPIC_TYPES[topic])
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    print("ready", flush=True)
    i = 0
    while True:
        s = {t0} + i * 100_000_000
        w.write(msgs.TOPIC_IMAGE, s, msgs.image_msg(img, s))
        w.write(msgs.TOPIC_POSE, s, msgs.pose_msg([i, 0, 1.3], [0, 0, 0, 1], s))
        w.write(msgs.TOPIC_ANNOTATIONS, s, msgs.string_msg(json.dumps({{"frame": i}})))
        print(i, flush=True)
        i += 1
        time.sleep(0.02)
""")


@pytest.mark.parametrize("max_duration_s", [None, 2.0], ids=["one-file", "split"])
def test_sigkill_then_recover_keeps_all_but_the_last_second(tmp_path, max_duration_s):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), t0=T0))
    bag = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, str(script), str(bag), json.dumps(max_duration_s)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        reported: list[tuple[int, float]] = []  # (frame, when the parent saw it written)
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            reported.append((int(child.stdout.readline()), time.monotonic()))
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert len(reported) > 30
    report = recover_bag(bag)
    # The killed file is salvaged, or dropped when it died before its first flush.
    assert [f.status for f in report.files[:-1]] == ["ok"] * (len(report.files) - 1)
    assert report.files[-1].status in ("salvaged", "dropped") and not report.healthy
    if max_duration_s is None:
        assert [f.status for f in report.files] == ["salvaged"]
    else:
        assert len(report.files) > 3
    frames: dict[str, list[int]] = {}
    for raw in read_bag(bag):
        frames.setdefault(raw.topic, []).append((raw.stamp_ns - T0) // 100_000_000)
    must_survive = {i for i, seen in reported if seen < killed_at - 1.0 - 0.3}
    assert len(must_survive) > 10
    for topic in (msgs.TOPIC_IMAGE, msgs.TOPIC_POSE, msgs.TOPIC_ANNOTATIONS):
        got = frames[topic]
        assert got == list(range(len(got))), f"{topic}: not a gapless prefix"
        assert must_survive <= set(got), f"{topic}: lost {sorted(must_survive - set(got))[:5]}..."
        assert report.messages_per_topic[topic] == len(got)
    # A second pass finds a healthy bag and leaves it as it is.
    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    again = recover_bag(bag)
    assert again.healthy and {p.name: p.read_bytes() for p in bag.iterdir()} == before


def test_recover_skips_a_corrupt_chunk_and_reads_on(tmp_path):
    bag = tmp_path / "flip"
    w = BagWriter(bag, compression="none")
    w.add_topic(msgs.TOPIC_IMAGE, msgs.IMAGE)
    for i in range(6):
        w.write(msgs.TOPIC_IMAGE, stamp(i), msgs.image_msg(frame(i), stamp(i)))
        w.flush()  # one chunk per message
    # Simulate the kill: drop the writer without close; flip a byte inside the third chunk's image.
    w._stop.set()
    path = bag / "flip_0.mcap"
    data = bytearray(path.read_bytes())
    pos = data.find(frame(2).tobytes()[:64])  # uncompressed chunks hold the raw pixels
    assert pos > 0
    data[pos + 100] ^= 0xFF
    path.write_bytes(data)
    report = recover_bag(bag)
    assert report.files[0].bad_chunks == 1
    stamps = [m.stamp_ns for m in read_bag(bag)]
    assert stamps == [stamp(i) for i in (0, 1, 3, 4, 5)]


def test_unwritable_path_and_existing_bag_give_clear_errors(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(BagWriteError, match="cannot create bag directory") as exc:
        BagWriter(blocker / "bag")
    assert str(blocker / "bag") in str(exc.value)
    with BagWriter(tmp_path / "done") as w:
        w.add_topic(msgs.TOPIC_POSE, msgs.POSE_STAMPED)
    with pytest.raises(BagWriteError, match="exists") as exc:
        BagWriter(tmp_path / "done")
    assert str(tmp_path / "done") in str(exc.value)
    with BagWriter(tmp_path / "bad") as w:
        with pytest.raises(ValueError, match="was not added"):
            w.write("/nope", 0, b"")
        with pytest.raises(ValueError, match="unknown message type"):
            w.add_topic("/x", "my_pkg/msg/Nope")


class FullDisk:
    """A file that fails with ENOSPC once more than `limit` bytes were written to it."""

    def __init__(self, path: Path, limit: int) -> None:
        self._f, self._limit = open(path, "xb"), limit

    def write(self, data: bytes) -> int:
        if self._f.tell() + len(data) > self._limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def test_disk_full_continues_in_next_file_then_fails_clearly(tmp_path, monkeypatch):
    bag = tmp_path / "full"
    real_open = bags._open_for_write
    monkeypatch.setattr(bags, "_open_for_write",
                        lambda p: FullDisk(p, 60_000) if p.name.endswith("_0.mcap") else real_open(p))
    w = BagWriter(bag)
    w.add_topic(msgs.TOPIC_IMAGE, msgs.IMAGE)
    for i in range(12):  # ~9 KB each: file 0 fills up after a few, the rest goes to file 1
        w.write(msgs.TOPIC_IMAGE, stamp(i), msgs.image_msg(frame(i), stamp(i)))
        w.flush()
    w.close()
    assert w.damaged == ["full_0.mcap"] and w.files == ["full_1.mcap"]
    monkeypatch.setattr(bags, "_open_for_write", real_open)
    report = recover_bag(bag)
    stamps = [m.stamp_ns for m in read_bag(bag)]
    assert report.files[0].status == "salvaged" and len(stamps) == 12 - 1  # only the failed write lost
    assert stamps == sorted(stamps) and stamps[-1] == stamp(11)

    monkeypatch.setattr(bags, "_open_for_write", lambda p: FullDisk(p, 60_000 if p.name.endswith("_0.mcap") else 10))
    w = BagWriter(tmp_path / "fuller")
    w.add_topic(msgs.TOPIC_IMAGE, msgs.IMAGE)
    with pytest.raises(BagWriteError) as exc:
        for i in range(12):
            w.write(msgs.TOPIC_IMAGE, stamp(i), msgs.image_msg(frame(i), stamp(i)))
            w.flush()
    assert exc.value.errno == errno.ENOSPC and "fuller_1.mcap" in str(exc.value)
    with pytest.raises(BagWriteError):
        w.write(msgs.TOPIC_IMAGE, stamp(99), msgs.image_msg(frame(0), stamp(99)))
    with pytest.raises(BagWriteError):
        w.close()
    monkeypatch.undo()
    assert recover_bag(tmp_path / "fuller").total_messages > 0


def test_reader_and_cli_on_a_killed_bag(tmp_path, capsys):
    bag = tmp_path / "cli"
    w = BagWriter(bag)
    w.add_topic(msgs.TOPIC_ANNOTATIONS, msgs.STRING)
    for i in range(3):
        w.write(msgs.TOPIC_ANNOTATIONS, stamp(i), msgs.string_msg("{}"))
    w.flush()
    w._stop.set()  # abandoned without close(), as after a kill
    with pytest.raises(ValueError, match="recover"):
        BagReader(bag)
    assert cli_bag(["recover", str(bag)]) == 0  # `spatial-ttt bag recover BAG`
    assert "recovered, 3 messages" in capsys.readouterr().out
    assert cli_bag(["rewind", str(bag)]) == 2
    assert cli_recover([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
