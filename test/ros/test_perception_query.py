"""/spatial_query and the memory services over real ROS services, answered by the real (tiny)
engine: every kind, bad requests, busy / timeout, a flood of concurrent queries, save -> reset
-> load. The tiny model is random, so answers are checked for coherence, not correctness."""

from __future__ import annotations

import math
import string
import threading
from types import SimpleNamespace

import pytest
import rclpy
from std_srvs.srv import Trigger

from spatial_ttt_ros.ros.hosting import hosted_perception_node
from spatial_ttt_ros.srv import MemoryFile, SpatialQuery

FRAMES = 8
PARAMS = {"keyframe_max_rate_hz": 0.0, "max_concurrent_queries": 4, "max_new_tokens": 6}

REQUESTS = {
    "count": dict(objects=["chair"]),
    "abs_distance": dict(objects=["chair", "table"]),
    "object_size": dict(objects=["sofa"]),
    "room_size": dict(objects=[]),
    "rel_distance": dict(objects=["lamp", "chair", "table", "sofa"], options=["chair", "table", "sofa"]),
    "rel_direction": dict(objects=["sofa", "tv", "lamp"]),
    "route_plan": dict(objects=["bed", "door", "sofa"], options=["Turn Left", "Turn Right", "Turn Back"]),
    "appearance_order": dict(objects=["chair", "table", "lamp"],
                             options=["chair, table, lamp", "lamp, chair, table", "table, lamp, chair"]),
    "free_form": dict(question="What is on the floor near the sofa?"),
}
NUMERIC = {"count": "count", "abs_distance": "m", "object_size": "m", "room_size": "m^2"}


def query(kind: str, **fields: object) -> SpatialQuery.Request:
    return SpatialQuery.Request(kind=kind, **fields)


@pytest.fixture(scope="module")
def live(helpers, tmp_path_factory):
    """One node with FRAMES keyframes in memory, a client node, and the rig feeding it."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    client = rclpy.create_node("query_test_client", context=context)
    memory_dir = tmp_path_factory.mktemp("memory")
    try:
        with hosted_perception_node({**PARAMS, "memory_dir": str(memory_dir)}) as node:
            rig = helpers.Rig(client, node)
            for i in range(FRAMES):
                rig.publish(100.0 + i, position=(0.5 * i, 0.0, 0.0))
            rig.wait_idle()
            state = SimpleNamespace(node=node, client=client, rig=rig, next_stamp=100.0 + FRAMES,
                                    memory_dir=memory_dir)

            def ask(request: SpatialQuery.Request, timeout_s: float = 60.0) -> SpatialQuery.Response:
                return helpers.call(client, SpatialQuery, "/spatial_query", request, timeout_s)

            state.ask = ask
            yield state
    finally:
        client.destroy_node()
        rclpy.shutdown(context=context)


def test_query_before_any_frame_fails_clearly(ros_node, perception, helpers):
    perception()
    response = helpers.call(ros_node, SpatialQuery, "/spatial_query", query("count", objects=["chair"]))
    assert not response.success
    assert "no frames in memory yet" in response.message
    assert "chair" in response.prompt and response.latency_s >= 0.0


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_every_kind_gets_a_coherent_answer(live, kind):
    frames = live.node.status_view().worker.frames_in_memory
    request = REQUESTS[kind]
    response = live.ask(query(kind, **request))
    assert response.success, response.message
    assert response.message
    for name in request.get("objects", []):
        assert name in response.prompt
    if kind == "free_form":
        assert request["question"] in response.prompt
    assert response.frames_in_memory == frames
    stamp = response.memory_stamp.sec + response.memory_stamp.nanosec * 1e-9
    assert math.isclose(stamp, live.next_stamp - 1.0)
    assert 0.0 < response.latency_s < 60.0
    assert isinstance(response.answer, str)
    if kind in NUMERIC:
        assert response.unit == NUMERIC[kind]
        assert math.isnan(response.value) or response.value >= 0.0
        assert response.choice == ""
        if math.isnan(response.value):
            assert "not a readable number" in response.message
    else:
        assert response.unit == "" and math.isnan(response.value)
    if "options" in request or kind == "rel_direction":
        assert "Options:" in response.prompt
        assert response.choice == "" or response.choice in string.ascii_uppercase[:len(request.get("options", "abc"))]
        assert (response.choice == "") == (response.choice_text == "")
    else:
        assert response.choice == "" and response.choice_text == ""


def test_bad_requests_fail_with_a_message_and_ingest_goes_on(live):
    bad = [
        query("how_far", objects=["chair"]),  # unknown kind
        query("count"),  # missing object
        query("abs_distance", objects=["chair"]),  # one object short
        query("free_form", question="x" * 100_000),  # 100 kB question
        query("count", objects=["chair"], options=["one", "two"]),  # options on a numeric kind
        query("rel_distance", objects=["lamp", "chair", "table"], options=["chair"]),  # one option
        query("rel_distance", objects=["lamp", "chair", "table"], options=["A. chair", "A. table"]),  # bad letters
        query("count", objects=["chair"], max_new_tokens=100_000),
        query("count", objects=["chair"], timeout_s=-1.0),
    ]
    for request in bad:
        response = live.ask(request)
        assert not response.success, request
        assert response.message.startswith("bad request: "), response.message
        assert math.isnan(response.value)
    before = live.node.status_view().worker.frames_in_memory
    live.rig.publish(live.next_stamp, position=(100.0, 0.0, 0.0))
    live.next_stamp += 1.0
    assert live.rig.wait_idle().worker.frames_in_memory == before + 1
    response = live.ask(query("count", objects=["chair"]))
    assert response.success and response.frames_in_memory == before + 1


def warm_client(live: SimpleNamespace, helpers: SimpleNamespace) -> object:
    """A /spatial_query client that has had one answer (so its first response was not lost) and keeps
    64 responses (the default history of 10 would drop a burst before the test spins)."""
    cli = helpers.client_for(live.client, SpatialQuery, "/spatial_query", depth=64)
    reply = helpers.call(live.client, SpatialQuery, "/spatial_query", query(""), client=cli)
    assert not reply.success and "unknown question kind" in reply.message
    return cli


def test_timeout_then_busy_while_the_engine_is_held(live, helpers):
    release = threading.Event()
    live.node._worker.submit(lambda engine: release.wait(180))  # longer than any wait below
    try:
        response = live.ask(query("count", objects=["chair"], timeout_s=0.5))
        assert not response.success and response.message.startswith("timeout")
        assert 0.4 < response.latency_s < 30.0  # the 0.5 s timeout, not the blocking job
        # Fill the admission bound with waiting queries; the next ones are refused at once.
        cli = warm_client(live, helpers)
        waiting = [cli.call_async(query("room_size", timeout_s=180.0)) for _ in range(4)]
        assert helpers.wait_for(lambda: live.node._bound.in_flight == 4, 20)
        refused = [cli.call_async(query("room_size", timeout_s=60.0)) for _ in range(3)]
        assert helpers.spin(live.client, lambda: all(f.done() for f in refused), 20)
        for future in refused:
            assert not future.result().success and future.result().message.startswith("busy")
            assert future.result().latency_s < 20.0  # refused, not queued behind the blocking job
        assert not any(f.done() for f in waiting)
    finally:
        release.set()
    assert helpers.spin(live.client, lambda: all(f.done() for f in waiting), 60)
    assert all(f.result().success for f in waiting)


def test_a_flood_of_50_concurrent_queries_never_hangs(live, helpers):
    cli = warm_client(live, helpers)
    futures = [cli.call_async(query("count", objects=["chair"], timeout_s=60.0)) for _ in range(50)]
    finished = helpers.spin(live.client, lambda: all(f.done() for f in futures), 120)
    assert finished, f"queries hung: {sum(f.done() for f in futures)} of 50 answered; {live.node.status_view()}"
    responses = [f.result() for f in futures]
    answered = [r for r in responses if r.success]
    assert all(r.success or r.message.startswith("busy") for r in responses), {r.message for r in responses}
    assert answered, "no query was answered"
    assert len({r.answer for r in answered}) == 1  # same memory, same question: same answer
    assert helpers.wait_for(lambda: live.node._bound.in_flight == 0, 20)


def test_save_reset_load_restores_frames_and_answer(live, helpers):
    path = "memory.safetensors"  # a name inside memory_dir
    question = query("abs_distance", objects=["chair", "table"], max_new_tokens=8)
    before = live.ask(question)
    assert before.success
    call = lambda srv, name, req: helpers.call(live.client, srv, name, req)  # noqa: E731

    saved = call(MemoryFile, "/save_memory", MemoryFile.Request(path=path))
    assert saved.success and saved.frames_in_memory == before.frames_in_memory, saved.message
    assert (live.memory_dir / path).is_file()
    again = call(MemoryFile, "/save_memory", MemoryFile.Request(path=path))  # our own file: replaced
    assert again.success, again.message
    reset = call(Trigger, "/reset_memory", Trigger.Request())
    assert reset.success, reset.message
    assert live.node.status_view().worker.frames_in_memory == 0
    empty = live.ask(question)
    assert not empty.success and "no frames" in empty.message

    (live.memory_dir / "garbage.safetensors").write_bytes(b"not a memory file")
    for bad in ("garbage.safetensors", "missing.safetensors"):
        response = call(MemoryFile, "/load_memory", MemoryFile.Request(path=bad))
        assert not response.success and bad in response.message
    assert not call(MemoryFile, "/save_memory", MemoryFile.Request(path="")).success  # no memory_path set

    loaded = call(MemoryFile, "/load_memory", MemoryFile.Request(path=path))
    assert loaded.success and loaded.frames_in_memory == before.frames_in_memory, loaded.message
    after = live.ask(question)
    assert after.success and after.frames_in_memory == before.frames_in_memory
    assert (after.answer, after.prompt, after.memory_stamp) == (before.answer, before.prompt, before.memory_stamp)
    # Ingest continues on the loaded memory.
    live.rig.publish(live.next_stamp, position=(200.0, 0.0, 0.0))
    live.next_stamp += 1.0
    assert live.rig.wait_idle().worker.frames_in_memory == before.frames_in_memory + 1


def test_memory_files_stay_inside_memory_dir(live, helpers, tmp_path):
    """Any peer can call save/load: nothing outside memory_dir is read, written or created, and
    nothing that is not our memory file is replaced."""
    import os

    call = lambda srv, name, req: helpers.call(live.client, srv, name, req)  # noqa: E731
    outside = tmp_path / "outside"
    outside.mkdir()
    (live.memory_dir / "escape").symlink_to(outside, target_is_directory=True)
    fifo = live.memory_dir / "pipe"
    os.mkfifo(fifo)
    (live.memory_dir / "notes.txt").write_text("keep me")
    refused = {
        str(outside / "m.safetensors"): "outside the memory directory",
        "../m.safetensors": "outside the memory directory",
        "escape/m.safetensors": "outside the memory directory",
        "new_dir/m.safetensors": "does not exist",
        "pipe": "not a regular file",
        "notes.txt": "not a spatial_ttt memory file",
        "x" * 1_000_000: "not a usable file name",
    }
    for name, why in refused.items():
        response = call(MemoryFile, "/save_memory", MemoryFile.Request(path=name))
        assert not response.success and why in response.message, response.message[:500]
        assert len(response.message) <= 400
    for name in (str(outside / "m.safetensors"), "../m.safetensors", "pipe"):
        response = call(MemoryFile, "/load_memory", MemoryFile.Request(path=name))
        assert not response.success and len(response.message) <= 400
    assert list(outside.iterdir()) == [] and not (live.memory_dir / "new_dir").exists()
    assert (live.memory_dir / "notes.txt").read_text() == "keep me" and fifo.is_fifo()
    huge = live.ask(query("k" * 1_000_000, objects=["chair"]))  # a 1 MB kind is not echoed back whole
    assert not huge.success and len(huge.message) <= 400
