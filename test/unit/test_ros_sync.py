"""The approximate-time synchroniser (rclpy-free) and, where message_filters exists, its parity
with message_filters.ApproximateTimeSynchronizer on the same stamp sequences."""

from __future__ import annotations

import random

import pytest

from spatial_ttt_ros.ros.sync import ApproximateTimeSynchronizer, stamp_ns

MS = 1_000_000


def run(events: list[tuple[int, int]], n_inputs: int = 2, queue_size: int = 10, slop_s: float = 0.05) -> list[tuple]:
    """Feed (input, stamp_ns) events; returns the matched stamp tuples in emission order."""
    sync = ApproximateTimeSynchronizer(n_inputs, queue_size, slop_s)
    out: list[tuple] = []
    sync.register_callback(lambda *payloads: out.append(tuple(payloads)))
    for index, stamp in events:
        sync.add(index, stamp, stamp)
    return out


def test_pairs_exact_and_near_stamps_once():
    events = [(0, 100 * MS), (1, 100 * MS), (0, 200 * MS), (1, 230 * MS), (1, 300 * MS)]
    assert run(events) == [(100 * MS, 100 * MS), (200 * MS, 230 * MS)]


def test_picks_the_nearest_partner_and_removes_both():
    # Two poses within slop of the image: the nearer one wins; the other stays queued.
    events = [(1, 90 * MS), (1, 110 * MS), (0, 108 * MS), (0, 150 * MS)]
    assert run(events, slop_s=0.05) == [(108 * MS, 110 * MS)]  # 150 vs 90: 60 ms, over the slop
    assert run(events, slop_s=0.1) == [(108 * MS, 110 * MS), (150 * MS, 90 * MS)]


def test_spread_must_be_strictly_below_slop():
    assert run([(0, 0 + 10 * MS), (1, 60 * MS)], slop_s=0.05) == []  # exactly 50 ms apart
    assert run([(0, 10 * MS), (1, 59 * MS)], slop_s=0.05) == [(10 * MS, 59 * MS)]


def test_queue_size_evicts_the_oldest_stamp():
    events = [(0, i * 100 * MS) for i in range(1, 5)] + [(1, 100 * MS), (1, 400 * MS)]
    # queue_size 2 keeps images 300 and 400 ms: the pose at 100 ms finds no partner.
    assert run(events, queue_size=2) == [(400 * MS, 400 * MS)]
    assert run(events, queue_size=10) == [(100 * MS, 100 * MS), (400 * MS, 400 * MS)]


def test_same_stamp_on_one_input_replaces_the_payload():
    sync = ApproximateTimeSynchronizer(2, 10, 0.05)
    out: list[tuple] = []
    sync.register_callback(lambda *p: out.append(p))
    sync.add(0, 5 * MS, "first")
    sync.add(0, 5 * MS, "second")
    assert sync.add(1, 5 * MS, "pose")
    assert out == [("second", "pose")]
    assert not sync.add(1, 5 * MS, "pose again")  # each set is emitted once


def test_three_inputs_and_clear():
    events = [(0, 100 * MS), (1, 101 * MS), (2, 99 * MS)]
    assert run(events, n_inputs=3) == [(100 * MS, 101 * MS, 99 * MS)]
    sync = ApproximateTimeSynchronizer(2, 10, 0.05)
    out: list[tuple] = []
    sync.register_callback(lambda *p: out.append(p))
    sync.add(0, MS, "image")
    sync.clear()
    sync.add(1, MS, "pose")
    assert out == []


@pytest.mark.parametrize("bad", [dict(n_inputs=0), dict(queue_size=0), dict(slop_s=-0.1)])
def test_rejects_bad_configuration(bad):
    kwargs = dict(n_inputs=2, queue_size=10, slop_s=0.05) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        ApproximateTimeSynchronizer(**kwargs)


def test_stamp_ns_rounds_float_seconds():
    assert stamp_ns(1.5) == 1_500_000_000
    assert stamp_ns(0.1 + 0.2) == 300_000_000


def random_events(seed: int, n: int = 200, start_s: int = 1000) -> list[tuple[int, int]]:
    """A camera at ~30 Hz with jitter and a pose at ~50 Hz, interleaved with network reordering;
    every stamp positive (from `start_s`), as a ROS Time must be."""
    rng = random.Random(seed)
    t0 = start_s * 10**9
    events = [(0, t0 + int(i * 33 * MS + rng.randint(-3, 3) * MS)) for i in range(n)]
    events += [(1, t0 + int(i * 20 * MS + rng.randint(-2, 2) * MS)) for i in range(n * 33 // 20)]
    events.sort(key=lambda e: e[1] + rng.randint(0, 15) * MS)
    return events


def test_every_match_is_within_slop_and_each_message_is_used_once():
    out = run(random_events(0), slop_s=0.01, queue_size=5)
    assert out
    assert all(abs(a - b) < 10 * MS for a, b in out)
    assert len({a for a, _ in out}) == len(out) and len({b for _, b in out}) == len(out)


@pytest.mark.parametrize("seed", range(5))
def test_parity_with_message_filters(seed):
    message_filters = pytest.importorskip("message_filters")
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    class Stamped:
        def __init__(self, stamp: int) -> None:
            self.header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9))
            self.stamp = stamp

    events = random_events(seed)
    for queue_size, slop_s in ((3, 0.005), (10, 0.02), (30, 0.1)):
        inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        reference = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop_s)
        expected: list[tuple] = []
        reference.registerCallback(lambda *msgs, out=expected: out.append(tuple(m.stamp for m in msgs)))
        for index, stamp in events:
            inputs[index].signalMessage(Stamped(stamp))
        assert run(events, queue_size=queue_size, slop_s=slop_s) == expected


def test_random_events_are_valid_ros_stamps():
    assert all(stamp > 0 for seed in range(5) for _, stamp in random_events(seed))


def test_negative_stamps_never_reach_a_synchroniser():
    """message_filters' rclpy Time raises on a negative stamp inside the subscription callback, so the
    nodes refuse such messages before pairing (ros/inputs.py uses this check), with that reason."""
    from types import SimpleNamespace

    from spatial_ttt_ros.ros.conversions import stamp_problem

    assert "negative (-1 s)" in stamp_problem(SimpleNamespace(sec=-1, nanosec=5))
    assert "nanosec" in stamp_problem(SimpleNamespace(sec=1, nanosec=10**9))
    assert stamp_problem(SimpleNamespace(sec=1, nanosec=0)) == ""


def test_message_filters_itself_refuses_negative_stamps():
    message_filters = pytest.importorskip("message_filters")
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    class Stamped:
        header = Header(stamp=Time(sec=-1, nanosec=0))

    inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
    message_filters.ApproximateTimeSynchronizer(inputs, 10, 0.05)
    with pytest.raises(ValueError):
        inputs[0].signalMessage(Stamped())
