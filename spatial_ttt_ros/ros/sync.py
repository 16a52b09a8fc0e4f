"""Approximate-time pairing of stamped messages, with message_filters' semantics (no rclpy).

`message_filters.ApproximateTimeSynchronizer` (the Python one of ROS 2) is what the perception node
uses wherever it is importable; the PyPI-only stack has no message_filters, so this module carries
the same algorithm and the node falls back to it. Behaviour, matched on purpose (a parity test
feeds both the same stamp sequences where message_filters exists):

* one queue per input, keyed by stamp in nanoseconds: a second message with the same stamp on the
  same input replaces the first; past `queue_size` entries the oldest stamp is evicted;
* when a message arrives, each other queue is searched for stamps within `slop` of it (nearest
  first); the first combination, in that order, whose whole spread is strictly below `slop` and
  whose entries are all still queued is emitted once and removed from every queue;
* messages that never match are not emitted; they leave their queue when evicted by newer ones.

Stamps are integers in nanoseconds; `stamp_ns` converts float seconds.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

NS_PER_S = 1_000_000_000


def stamp_ns(seconds: float) -> int:
    """Float seconds -> integer nanoseconds (rounded, as builtin_interfaces/Time holds them)."""
    return int(round(seconds * NS_PER_S))


class ApproximateTimeSynchronizer:
    """Pair messages from `n_inputs` streams whose stamps lie within `slop_s` of each other.

    `add(index, stamp_ns, payload)` feeds one input; every matched set is passed to the callbacks
    as payloads in input order (`callback(*payloads)`). Thread-safe: inputs may arrive from
    different threads; callbacks run on the thread that completed the set, under the lock.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop_s: float) -> None:
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s >= 0.0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        self.queue_size = int(queue_size)
        # rclpy's Duration(seconds=slop) truncates to whole nanoseconds; so does message_filters.
        self.slop_ns = int(slop_s * NS_PER_S)
        self.queues: list[dict[int, Any]] = [{} for _ in range(n_inputs)]
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()

    def register_callback(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def clear(self) -> None:
        """Forget every queued message (e.g. after a memory reset)."""
        with self._lock:
            for queue in self.queues:
                queue.clear()

    def add(self, index: int, stamp: int, payload: Any) -> bool:
        """Queue `payload` stamped `stamp` [ns] on input `index`; True when it completed a set."""
        with self._lock:
            matched = self._add_locked(index, int(stamp), payload)
            if matched is None:
                return False
            for callback in self._callbacks:
                callback(*matched)
            return True

    def _add_locked(self, index: int, stamp: int, payload: Any) -> Sequence[Any] | None:
        my_queue = self.queues[index]
        my_queue[stamp] = payload
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        # For every other input: its stamps within slop of the new one, nearest first.
        candidates: list[list[int]] = []
        for i, queue in enumerate(self.queues):
            if i == index:
                continue
            # message_filters sorts by distance only, a stable sort: equally near stamps keep
            # the queue's insertion order.
            near = sorted((abs(s - stamp), k, s) for k, s in enumerate(queue) if abs(s - stamp) <= self.slop_ns)
            if not near:
                return None
            candidates.append([s for _, _, s in near])
        for combo in itertools.product(*candidates):
            stamps = list(combo)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) < self.slop_ns and all(s in q for q, s in zip(self.queues, stamps)):
                matched = [q[s] for q, s in zip(self.queues, stamps)]
                for q, s in zip(self.queues, stamps):
                    del q[s]
                return matched
        return None
