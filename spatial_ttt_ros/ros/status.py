"""MemoryStatus and /diagnostics contents from the node's counters (messages only, no rclpy)."""

from __future__ import annotations

from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from spatial_ttt_ros.msg import MemoryStatus
from spatial_ttt_ros.ros.conversions import seconds_to_time_msg
from spatial_ttt_ros.ros.ingest import IngestCounts
from spatial_ttt_ros.ros.worker import WorkerSnapshot

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass(frozen=True)
class StatusView:
    """One consistent look at the node, taken once per status period."""

    state: str  # lifecycle state label
    ingest: IngestCounts
    worker: WorkerSnapshot | None  # None while no engine is loaded
    device: str
    model_id: str
    last_error: str
    ingest_fps: float
    camera_k: tuple[float, ...] = ()  # fx, fy, cx, cy from the latest CameraInfo
    callback_errors: int = 0  # callbacks that raised (caught by spin_resilient; the node went on)
    last_callback_error: str = ""
    responses_lost: int = 0  # service responses rmw could not deliver (ros/lost_responses.py)
    requests_taken: int = 0  # service requests the node's callbacks took
    rectification: str = "off"  # Rectifier.state()

    @property
    def rejected(self) -> int:
        return self.ingest.rejected + self.ingest.refused + (self.worker.frames_rejected if self.worker else 0)

    @property
    def dropped(self) -> int:
        return self.worker.frames_dropped if self.worker else 0


def memory_status(view: StatusView, stamp: object) -> MemoryStatus:
    msg = MemoryStatus()
    msg.header.stamp = stamp
    msg.frames_received = view.ingest.received
    msg.frames_synced = view.ingest.synced
    msg.keyframes = view.ingest.keyframes
    msg.frames_dropped = view.dropped
    msg.frames_rejected = view.rejected
    msg.ingest_fps = float(view.ingest_fps)
    msg.device = view.device
    msg.model_id = view.model_id
    msg.last_error = view.last_error
    msg.responses_lost = view.responses_lost
    encodings = sorted(view.ingest.encodings.items())
    msg.image_encodings = [name for name, _ in encodings]
    msg.image_encoding_frames = [c.frames for _, c in encodings]
    msg.image_encoding_rejected = [c.rejected for _, c in encodings]
    msg.image_encoding_status = [c.status or "received, not decoded yet" for _, c in encodings]
    msg.rectification = view.rectification
    w = view.worker
    if w is not None:
        msg.frames_in_memory = w.frames_in_memory
        msg.queue_depth = w.queue_depth
        c = w.counters
        if c is not None:
            msg.tokens = int(c.tokens)
            msg.chunk_updates = int(c.updates)
            parts = sorted(c.bytes_by_part.items())
            msg.memory_parts = [name for name, _ in parts]
            msg.memory_bytes = [int(n) for _, n in parts]
            msg.memory_bytes_total = sum(msg.memory_bytes)
            msg.memory_stamp = seconds_to_time_msg(c.last_stamp_s)
            msg.anchor_budget_tokens, msg.anchor_tokens = int(c.anchor_budget_tokens), int(c.anchor_tokens)
            msg.anchor_evicted_tokens, msg.anchor_evicted_groups = int(c.evicted_tokens), int(c.evicted_groups)
    return msg


class Health:
    """The diagnostic level over time: ERROR when the worker died (held for `hold_s` after its
    restart so a 1 Hz aggregator sees it), a callback raised (held as long) or the engine failed
    to load; WARN while frames were
    dropped or rejected within `hold_s`, or the node is not active; OK otherwise."""

    def __init__(self, hold_s: float = 5.0) -> None:
        self.hold_s = hold_s
        self._previous: StatusView | None = None
        self._events: dict[str, tuple[float, str]] = {}  # kind -> (time, message)

    def _recent(self, kind: str, now: float) -> str:
        when, message = self._events.get(kind, (-1e18, ""))
        return message if now - when <= self.hold_s else ""

    def update(self, view: StatusView, now: float, restarted: str = "", configure_error: str = "") -> tuple[bytes, str]:
        prev = self._previous
        self._previous = view
        if restarted:
            summary = restarted.strip().splitlines()[-1] if restarted.strip() else "unknown error"
            self._events["died"] = (now, f"engine worker died ({summary}); restarted")
        if view.callback_errors > (prev.callback_errors if prev is not None else 0):
            self._events["callback"] = (now, f"a callback failed ({view.callback_errors} in all): "
                                             f"{view.last_callback_error}")
        if prev is not None and view.dropped > prev.dropped:
            self._events["drop"] = (now, f"dropping frames: {view.dropped - prev.dropped} in the last period "
                                         f"(ingest queue full, {view.dropped} in all)")
        if prev is not None and view.rejected > prev.rejected:
            self._events["reject"] = (now, f"rejecting frames: {view.rejected} in all; last: {view.last_error}")
        if died := self._recent("died", now):
            return ERROR, died
        if failed := self._recent("callback", now):
            return ERROR, failed
        if view.worker is not None and not view.worker.alive:
            return ERROR, "engine worker is not running"
        if configure_error and view.worker is None:
            return ERROR, f"engine not loaded: {configure_error}"
        if view.state != "active":
            return WARN, f"node is {view.state}"
        for kind in ("drop", "reject"):
            if message := self._recent(kind, now):
                return WARN, message
        if view.worker is not None and view.worker.busy_s > 30.0:
            return WARN, f"engine busy on one item for {view.worker.busy_s:.0f} s"
        counters = view.worker.counters if view.worker is not None else None
        if counters is not None and counters.evicted_groups > 0:  # the budget at work: information
            return OK, (f"ok; anchor-KV budget of {counters.anchor_budget_tokens} tokens reached: "
                        f"{counters.evicted_groups} oldest frame groups evicted")
        return OK, "ok"


def diagnostics(view: StatusView, level: bytes, message: str, name: str, stamp: object) -> DiagnosticArray:
    w = view.worker
    values = {
        "state": view.state, "device": view.device, "model_id": view.model_id,
        "frames_received": view.ingest.received, "frames_synced": view.ingest.synced,
        "frames_gated": view.ingest.gated, "keyframes": view.ingest.keyframes,
        "frames_rejected": view.rejected, "frames_dropped": view.dropped,
        "ingest_fps": f"{view.ingest_fps:.2f}", "last_error": view.last_error,
        "callback_errors": view.callback_errors, "responses_lost": view.responses_lost,
        "requests_taken": view.requests_taken,
    }
    if w is not None:
        values.update(frames_in_memory=w.frames_in_memory, queue_depth=w.queue_depth, jobs_waiting=w.jobs_waiting,
                      worker_alive=w.alive, worker_restarts=w.restarts, worker_busy_s=f"{w.busy_s:.1f}")
        if w.counters is not None:  # the anchor-KV budget: evictions are expected, information only
            c = w.counters
            values.update(anchor_budget_tokens=c.anchor_budget_tokens, anchor_tokens=c.anchor_tokens,
                          anchor_evicted_tokens=c.evicted_tokens, anchor_evicted_groups=c.evicted_groups)
    values["rectification"] = view.rectification
    for name, c in sorted(view.ingest.encodings.items()):
        values[f"encoding {name}"] = (f"{c.status or 'received, not decoded yet'}; {c.frames} received, "
                                      f"{c.decoded} decoded, {c.rejected} rejected")
    if view.camera_k:
        values.update(dict(zip(("fx", "fy", "cx", "cy"), (f"{v:.2f}" for v in view.camera_k))))
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=view.device,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
