"""Crafted memory files: every bad field or tensor is refused by name, the live memory is untouched."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from spatial_ttt_ros.runtime.engine import StreamingEngine

pytestmark = pytest.mark.unit

ANCHOR = 3  # tiny: layers 0-2 TTT, 3 anchor


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(1)
    engine = StreamingEngine.from_preset("tiny", device="cpu")
    rng = np.random.default_rng(0)
    for i in range(9):  # odd: one pending frame; the conv layers hold frame groups
        engine.push_frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.2 * i)
    path = tmp_path_factory.mktemp("mem") / "good.safetensors"
    engine.save(path)
    return engine, path


def _craft(src, dst, mutate):
    tensors = load_file(str(src))
    with safe_open(str(src), framework="pt") as handle:
        metadata = handle.metadata()
    header, state = json.loads(metadata["header"]), json.loads(metadata["state"])
    out = mutate(tensors, header, state)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], str):  # replaced the state text itself
        header, state = out
    save_file(tensors, str(dst), metadata={"format": metadata["format"],
                                           "header": header if isinstance(header, str) else json.dumps(header),
                                           "state": state if isinstance(state, str) else json.dumps(state)})
    return dst


def _layer(state, i):
    return state["layers"]["items"][i]


def _set(d, key, value):
    d[key] = value


def _swap_layers(t, h, s):
    items = s["layers"]["items"]
    items[0], items[ANCHOR] = items[ANCHOR], items[0]


def _nan_weight(t, h, s):
    t["state.layers.1.fast.w.0"][0, 0, 0] = float("nan")


def _pending_frames_dropped(t, h, s):
    s["pending_frames"]["items"] = []
    del t["state.pending_frames.0"]


def _nan_literal(t, h, s):
    s["first_stamp_s"] = float("nan")
    return h, json.dumps(s)  # json writes the NaN literal


def _held_index_out_of_range(t, h, s):
    t["state.layers.0.held.video_index"] = t["state.layers.0.held.video_index"] + 1000


CASES = [
    ("header frames -5", lambda t, h, s: _set(h, "frames", -5), "header.frames"),
    ("header frames 2^40", lambda t, h, s: _set(h, "frames", 2**40), "header.frames"),
    ("header last_stamp_s 'NaN'", lambda t, h, s: _set(h, "last_stamp_s", "NaN"), "header.last_stamp_s"),
    ("header last_stamp_s other", lambda t, h, s: _set(h, "last_stamp_s", 99.0), "header.last_stamp_s"),
    ("header missing config", lambda t, h, s: h.pop("config"), r"field header:"),
    ("state frames -5", lambda t, h, s: _set(s, "frames", -5), "state.frames"),
    ("state frames 2^40", lambda t, h, s: _set(s, "frames", 2**40), "state.frames"),
    ("state frames 'many'", lambda t, h, s: _set(s, "frames", "many"), "state.frames"),
    ("state frames inconsistent", lambda t, h, s: (_set(s, "frames", 40), _set(h, "frames", 40)), "state.frames"),
    ("state frames bool", lambda t, h, s: _set(s, "frames", True), "state.frames"),
    ("last_stamp_s 'NaN'", lambda t, h, s: _set(s, "last_stamp_s", "NaN"), "state.last_stamp_s"),
    ("NaN literal in JSON", _nan_literal, "field state: not valid JSON"),
    ("tokens huge", lambda t, h, s: _set(s, "tokens", 10**15), "state.tokens"),
    ("next_position past tokens", lambda t, h, s: _set(s, "next_position", 10**9), "state.next_position"),
    ("pending frame wrong shape", lambda t, h, s: _set(t, "state.pending_frames.0", torch.zeros(9, 9, 3, dtype=torch.uint8)),
     r"state.pending_frames\[0\]: shape"),
    ("pending frame float", lambda t, h, s: _set(t, "state.pending_frames.0", torch.zeros(64, 96, 3)),
     r"state.pending_frames\[0\]: dtype F32"),
    ("pending frames not a list", lambda t, h, s: _set(s, "pending_frames", "frames"), "state.pending_frames"),
    ("pending stamps malformed", lambda t, h, s: _set(s["pending_stamps"], "items", ["x"]), r"state.pending_stamps\[0\]"),
    ("pending stamps missing", lambda t, h, s: _set(s["pending_stamps"], "items", []), "state.pending_stamps"),
    ("pending frames dropped", _pending_frames_dropped, "state.pending_stamps"),
    ("group starts unordered", lambda t, h, s: s["group_starts"]["items"].reverse(), "state.group_starts"),
    ("anchor k wrong shape", lambda t, h, s: _set(t, "state.layers.3.k", t["state.layers.3.k"][:, :-1].clone()),
     r"state.layers\[3\].k: shape"),
    ("anchor v fp16", lambda t, h, s: _set(t, "state.layers.3.v", t["state.layers.3.v"].half()),
     r"state.layers\[3\].v: dtype F16"),
    ("window_k fp16", lambda t, h, s: _set(t, "state.layers.0.window_k", t["state.layers.0.window_k"].half()),
     r"state.layers\[0\].window_k: dtype F16"),
    ("pending_k int8", lambda t, h, s: _set(t, "state.layers.1.pending_k", t["state.layers.1.pending_k"].to(torch.int8)),
     r"state.layers\[1\].pending_k: dtype I8"),
    ("fast weight wrong shape", lambda t, h, s: _set(t, "state.layers.2.fast.w.1", torch.zeros(2, 8, 8)),
     r"state.layers\[2\].fast.w\[1\]: shape"),
    ("NaN fast weight", _nan_weight, r"state.layers\[1\].fast.w\[0\]: holds NaN"),
    ("swapped layer types", _swap_layers, r"state.layers\[0\]: expected a TTTLayerState"),
    ("anchor length negative", lambda t, h, s: _set(_layer(s, ANCHOR), "length", -7), r"state.layers\[3\].length"),
    ("anchor length huge", lambda t, h, s: _set(_layer(s, ANCHOR), "length", 2**40), r"state.layers\[3\].length"),
    ("anchor evicted", lambda t, h, s: _set(_layer(s, ANCHOR), "evicted", 5), r"state.layers\[3\].length"),
    ("ttt tokens_seen off", lambda t, h, s: _set(_layer(s, 1), "tokens_seen", _layer(s, 1)["tokens_seen"] + 1),
     r"state.layers\[1\]"),
    ("ttt updates off", lambda t, h, s: _set(_layer(s, 0), "updates", 0), r"state.layers\[0\].updates"),
    ("held unit bad index", _held_index_out_of_range, r"state.layers\[0\].held.video_index"),
    ("held unit hw", lambda t, h, s: _set(_layer(s, 0)["held"]["hw"], "items", [4, 4]), r"state.layers\[0\].held.hw"),
    ("unknown field", lambda t, h, s: _set(s, "extra", 1), r"field state: MemoryState fields"),
    ("extra tensor", lambda t, h, s: _set(t, "state.extra", torch.zeros(3)), "field tensors"),
    ("tensor missing", lambda t, h, s: t.pop("state.layers.2.window_v"), r"state.layers\[2\].window_v: tensor"),
]


@pytest.mark.parametrize("name, mutate, match", CASES, ids=[c[0] for c in CASES])
def test_crafted_memory_file_is_refused_by_field_and_memory_untouched(saved, tmp_path, name, mutate, match):
    engine, good = saved
    digest = engine.state.digest()
    bad = _craft(good, tmp_path / "bad.safetensors", mutate)
    with pytest.raises(ValueError, match=match):
        engine.load(bad)
    assert engine.state.digest() == digest
    assert engine.frames_in_memory == 9


def test_the_good_file_loads_and_every_case_changes_it(saved, tmp_path):
    """The crafted files differ from a file that loads only by the mutation (guards the test itself)."""
    engine, good = saved
    copy = _craft(good, tmp_path / "copy.safetensors", lambda t, h, s: None)
    fresh = StreamingEngine.from_preset("tiny", device="cpu")
    fresh.load(copy)
    assert fresh.state.digest() == engine.state.digest()


def test_a_claimed_huge_tensor_is_refused_before_any_allocation(saved, tmp_path):
    """A safetensors header claiming a 2^37-element anchor cache (512 GiB) over a few bytes of data."""
    engine, good = saved
    digest = engine.state.digest()
    with safe_open(str(good), framework="pt") as handle:
        metadata = handle.metadata()
    shape = [2, 2**32, 16]
    header = {"__metadata__": metadata,
              "state.layers.3.k": {"dtype": "F32", "shape": shape, "data_offsets": [0, 2 * 2**32 * 16 * 4]}}
    blob = json.dumps(header).encode()
    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 64)
    with pytest.raises(ValueError, match="not a valid memory file"):
        engine.load(bad)
    assert engine.state.digest() == digest


def test_not_a_memory_file_and_wrong_format_are_refused(saved, tmp_path):
    engine, good = saved
    digest = engine.state.digest()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match="not a valid memory file"):
        engine.load(junk)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "something/1"})
    with pytest.raises(ValueError, match="field format"):
        engine.load(tmp_path / "other.safetensors")
    assert engine.state.digest() == digest


def test_an_older_format_is_refused_by_load_but_may_be_replaced_by_a_save(saved, tmp_path):
    from spatial_ttt_ros.ros.memory_jobs import is_memory_file

    engine, good = saved
    tensors = load_file(str(good))
    with safe_open(str(good), framework="pt") as handle:
        metadata = dict(handle.metadata())
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**metadata, "format": "spatial_ttt_memory/1"})
    with pytest.raises(ValueError, match="field format: 'spatial_ttt_memory/1'"):
        engine.load(old)
    assert is_memory_file(old) and is_memory_file(good)
    (tmp_path / "doc.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b'{"a": 1}')
    assert not is_memory_file(tmp_path / "doc.safetensors")
    engine.save(old)  # replaced by the current format
    StreamingEngine.from_preset("tiny", device="cpu").load(old)
