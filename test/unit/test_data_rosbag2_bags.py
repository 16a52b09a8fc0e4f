"""Bags rosbag2 itself wrote (test/data/rosbag2_test_bags): every topic reads with the counts its
metadata.yaml states, decodes, and what cannot be read is named per topic without refusing the rest."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader

from spatial_ttt_ros.data import msgs
from spatial_ttt_ros.data.bag_reader import BagReader, normalize_type
from spatial_ttt_ros.data.bags import BagWriter, McapFile, TopicSpec, cli_bag, write_metadata
from spatial_ttt_ros.data.recover import recover_bag

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1] / "data" / "rosbag2_test_bags"
BAG_DIRS = sorted(p.name for p in ROOT.iterdir() if (p / "metadata.yaml").is_file())
BARE_FILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/*.mcap") if not (p.parent / "metadata.yaml").exists())


def _stated(bag: Path) -> dict[str, tuple[str, int]]:
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
            for t in info["topics_with_message_count"]}


def _file_counts(path: Path) -> dict[str, int]:
    with open(path, "rb") as f:
        s = make_reader(f).get_summary()
    return {ch.topic: s.statistics.channel_message_counts.get(cid, 0) for cid, ch in s.channels.items()}


def test_every_upstream_bag_is_here():
    assert BAG_DIRS == ["bag_with_topics_and_service_events", "cdr_test", "convert_a", "convert_b", "rewriter_a",
                        "talker", "wbag"]
    assert len(BARE_FILES) == 6  # cpp_bags/*.mcap (3) and multiple_files/*.mcap (3): no metadata.yaml


@pytest.mark.parametrize("name", BAG_DIRS)
def test_bag_reads_and_decodes_the_stated_counts(name):
    stated = _stated(ROOT / name)
    with BagReader(ROOT / name) as bag:
        assert bag.problems == {} and bag.file_problems == {}, bag.summary()
        assert bag.counts == {t: n for t, (_, n) in stated.items()}
        assert bag.topics == {t: normalize_type(ty) for t, (ty, _) in stated.items()}
        read = Counter(raw.topic for raw in bag.raw())
        decoded = Counter(raw.topic for raw, _ in bag.decoded())
    want = {t: n for t, (_, n) in stated.items() if n}
    assert dict(read) == want and dict(decoded) == want


@pytest.mark.parametrize("rel", BARE_FILES)
def test_bare_mcap_file_reads_its_summary_counts(rel):
    path = ROOT / rel
    with BagReader(path) as bag:
        assert bag.problems == {}, bag.summary()
        assert bag.counts == _file_counts(path)
        decoded = Counter(raw.topic for raw, _ in bag.decoded())
    assert dict(decoded) == {t: n for t, n in _file_counts(path).items() if n}


def test_service_events_decode_to_their_real_values():
    """rosbag2 stored the .srv text as the Event's definition; the rebuilt Event type reads the
    request and response the service saw (AddTwoInts: sum == a + b)."""
    pairs = {}
    with BagReader(ROOT / "cpp_bags" / "only_services.mcap") as bag:
        for _, m in bag.decoded():
            if m.request:
                pairs.setdefault(m.info.sequence_number, {})["req"] = (m.request[0].a, m.request[0].b)
            if m.response:
                pairs.setdefault(m.info.sequence_number, {})["sum"] = m.response[0].sum
    done = [p for p in pairs.values() if "req" in p and "sum" in p]
    assert len(done) >= 3 and all(p["sum"] == sum(p["req"]) for p in done)
    with BagReader(ROOT / "bag_with_topics_and_service_events") as bag:
        events = [m for raw, m in bag.decoded() if raw.topic.endswith("_service_event")]
        strings = [m for raw, m in bag.decoded(["/test_topic1"])]
    assert len(events) == 8 and {e.info.event_type for e in events} == {0, 3}  # REQUEST_SENT, RESPONSE_RECEIVED
    assert all(len(e.request) == 1 or len(e.response) == 1 for e in events)
    assert len(strings) == 1 and isinstance(strings[0].string_value, str)


def test_old_type_name_in_a_stored_definition_decodes():
    with BagReader(ROOT / "cdr_test") as bag:
        arrays = [m for _, m in bag.decoded(["/array_topic"])]
    assert len(arrays) == 4 and all(len(a.basic_types_values) == 3 for a in arrays)
    assert normalize_type("test_msgs/BasicTypes") == "test_msgs/msg/BasicTypes"
    assert normalize_type("test_msgs/srv/X_Event") == "test_msgs/srv/X_Event"


def test_killed_style_bag_without_metadata_reads_after_recover(tmp_path):
    bag = tmp_path / "multiple_files"
    shutil.copytree(ROOT / "multiple_files", bag)
    with pytest.raises(ValueError, match="bag recover"):
        BagReader(bag)
    recover_bag(bag)
    total = sum(_file_counts(p)["/chatter"] for p in sorted(bag.glob("*.mcap")))
    with BagReader(bag) as reader:
        assert reader.counts == {"/chatter": total} and reader.problems == {}
        assert sum(1 for _ in reader.decoded()) == total == 3177


@pytest.mark.parametrize("name", BAG_DIRS)
def test_recover_leaves_upstream_bags_untouched(tmp_path, name):
    shutil.copytree(ROOT / name, tmp_path / name)
    before = (tmp_path / name / "metadata.yaml").read_bytes()
    assert recover_bag(tmp_path / name).healthy
    assert (tmp_path / name / "metadata.yaml").read_bytes() == before


def _mixed_bag(tmp_path: Path) -> Path:
    """A bag with a good topic, a topic whose stored definition does not parse, a std type
    redefined by the bag, and a listed file that is missing."""
    bag = tmp_path / "mixed"
    bag.mkdir()
    good = TopicSpec.for_type("/good", msgs.STRING)
    broken = TopicSpec("/broken", "my_pkg/msg/Broken", "int32 x\nfloat64{} y\n")
    dangling = TopicSpec("/dangling", "my_pkg/msg/Dangling", "int32 x\nOther y\n")  # Other: defined nowhere
    redefined = TopicSpec("/redefined", "std_msgs/msg/Header", "int32 data\n")  # not Kilted's Header
    f = McapFile(bag / "mixed_0.mcap")
    for spec in (good, broken, dangling, redefined):
        f.add_topic(spec)
    for i in range(5):
        f.write("/good", 1000 + i, msgs.string_msg(f"hello {i}"))
        f.write("/broken", 1000 + i, b"\x00\x01\x00\x00" + i.to_bytes(4, "little"))
        f.write("/dangling", 1000 + i, b"\x00\x01\x00\x00" + i.to_bytes(4, "little"))
        f.write("/redefined", 1000 + i, b"\x00\x01\x00\x00" + (7 * i).to_bytes(4, "little"))
    f.finish([good, broken, dangling, redefined])
    info = f.info
    write_metadata(bag, [info], [good, broken, dangling, redefined])
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["relative_file_paths"].append("mixed_1.mcap")  # lost file
    meta["rosbag2_bagfile_information"]["topics_with_message_count"].append(
        {"topic_metadata": {"name": "/lost", "type": "std_msgs/msg/String", "serialization_format": "cdr",
                            "offered_qos_profiles": []}, "message_count": 3})
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return bag


def test_what_cannot_be_read_is_named_and_the_rest_is_read(tmp_path, capsys):
    bag = _mixed_bag(tmp_path)
    with BagReader(bag) as reader:
        assert set(reader.problems) == {"/broken", "/dangling", "/lost"}
        assert "does not parse" in reader.problems["/broken"]
        assert "refers to my_pkg/msg/Other" in reader.problems["/dangling"]
        assert "no readable file" in reader.problems["/lost"] and "mixed_1.mcap" in reader.problems["/lost"]
        assert reader.file_problems == {"mixed_1.mcap": "listed in metadata.yaml but missing"}
        assert [m.data for _, m in reader.decoded(["/good"])] == [f"hello {i}" for i in range(5)]
        assert [m.data for _, m in reader.decoded(["/redefined"])] == [7 * i for i in range(5)]  # the bag's own type
        assert Counter(r.topic for r in reader.raw()) == {"/good": 5, "/broken": 5, "/dangling": 5, "/redefined": 5}
        assert Counter(r.topic for r, _ in reader.decoded()) == {"/good": 5, "/redefined": 5}
        with pytest.raises(ValueError, match="cannot decode /broken: its stored definition"):
            list(reader.decoded(["/broken", "/good"]))
        assert len(list(reader.decoded(["/broken", "/good"], skip_undecodable=True))) == 5
    assert cli_bag(["info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "/broken [my_pkg/msg/Broken]: 5  CANNOT READ" in out and "/good [std_msgs/msg/String]: 5\n" in out


def test_a_message_that_does_not_decode_is_named_or_skipped(tmp_path):
    w = BagWriter(tmp_path / "bad")
    w.add_topic("/s", msgs.STRING)
    w.write("/s", 1, msgs.string_msg("ok"))
    w.write("/s", 2, b"\x00\x01\x00\x00\xff\xff\xff\x7f")  # a string claiming 2 GB
    w.close()
    with BagReader(tmp_path / "bad") as reader:
        with pytest.raises(ValueError, match="message on /s at 2 ns does not decode"):
            list(reader.decoded())
        assert [m.data for _, m in reader.decoded(skip_undecodable=True)] == ["ok"]
        assert reader.skipped == {"/s": 1}


def test_unreadable_bags_fail_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        BagReader(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("rosbag2_bagfile_information: [1, 2")
    with pytest.raises(ValueError, match="cannot read metadata.yaml"):
        BagReader(tmp_path / "junk")
    shutil.copytree(ROOT / "talker", tmp_path / "t")
    (tmp_path / "t" / "talker.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    with pytest.raises(ValueError, match="no file is readable.*talker.mcap"):
        BagReader(tmp_path / "t")


def _compressed_copy(tmp_path: Path, mode: str) -> Path:
    """talker as `ros2 bag record --compression-mode {file,message} --compression-format zstd` leaves it."""
    import zstandard

    bag = tmp_path / f"talker_{mode}"
    bag.mkdir()
    doc = yaml.safe_load((ROOT / "talker" / "metadata.yaml").read_text())
    info = doc["rosbag2_bagfile_information"]
    info.update(compression_format="zstd", compression_mode=mode.upper())
    if mode == "file":
        (bag / "talker.mcap.zstd").write_bytes(zstandard.ZstdCompressor().compress((ROOT / "talker" / "talker.mcap").read_bytes()))
        info["relative_file_paths"] = ["talker.mcap.zstd"]
    else:
        specs = {t: TopicSpec.for_type(t, ty) for t, ty in (("/topic", msgs.STRING), ("/rosout", "rcl_interfaces/msg/Log"))}
        f = McapFile(bag / "talker.mcap")
        for spec in specs.values():
            f.add_topic(spec)
        with BagReader(ROOT / "talker") as src:
            for raw in src.raw():
                f.write(raw.topic, raw.stamp_ns, zstandard.ZstdCompressor().compress(raw.data))
        f.finish(specs.values())
    (bag / "metadata.yaml").write_text(yaml.safe_dump(doc))
    return bag


@pytest.mark.parametrize("mode", ["file", "message"])
def test_zstd_compressed_bags_read_in_full(tmp_path, mode):
    bag = _compressed_copy(tmp_path, mode)
    with BagReader(ROOT / "talker") as plain:
        want = [(r.topic, r.stamp_ns, str(m)) for r, m in plain.decoded()]
    with BagReader(bag) as reader:
        assert reader.problems == {} and reader.compression == f"{mode}/zstd"
        got = [(r.topic, r.stamp_ns, str(m)) for r, m in reader.decoded()]
        tmp = reader._tmp.name if reader._tmp is not None else None
    assert got == want and len(got) == 20
    assert tmp is None or not Path(tmp).exists()  # the decompressed copy goes with the reader


def test_unknown_compression_is_named_per_topic(tmp_path):
    bag = _compressed_copy(tmp_path, "file")
    doc = yaml.safe_load((bag / "metadata.yaml").read_text())
    doc["rosbag2_bagfile_information"]["compression_format"] = "lz4"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(doc))
    with BagReader(bag) as reader:
        assert set(reader.problems) == {"/topic", "/rosout", "/parameter_events"}
        assert "only file/zstd and message/zstd" in reader.problems["/topic"]
        assert list(reader.raw()) == []


def test_sqlite3_bag_reads(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(tmp_path / "sq", version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/chatter", msgs.STRING, typestore=msgs.typestore())
        for i in range(5):
            w.write(conn, 100 + i, msgs.string_msg(f"x{i}"))
    with BagReader(tmp_path / "sq") as reader:
        assert reader.storage == "sqlite3" and reader.counts == {"/chatter": 5} and reader.problems == {}
        assert [m.data for _, m in reader.decoded()] == [f"x{i}" for i in range(5)]
