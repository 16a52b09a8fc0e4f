"""The perception node: camera + pose in, a spatial memory, /spatial_query out.

A thin lifecycle adapter around rclpy-free parts: `params` (settings), `sync` (pairing where
message_filters is missing; `inputs` wires the subscriptions), `ingest` (gate + decode), `worker`
(the one thread that owns the engine), `query` (request -> prompt -> typed answer), `memory_jobs`
(save / load / reset / autosave) and `status` (MemoryStatus, /diagnostics).

Lifecycle: configure reads the parameters and loads the engine (a bad checkpoint -> FAILURE with the
reason logged and in memory_status.last_error); activate subscribes `image` (or `image`/compressed),
`pose`, optionally `camera_info`, and offers `spatial_query`, `save_memory`, `load_memory` and
`reset_memory`; deactivate stops ingest and the services (memory is kept); cleanup frees the engine.
memory_status and /diagnostics are published in every state. Parameters (ros/params.py) are read
at configure; `ros2 param set` is checked with the same rules: live ones (status rate, query
defaults, keyframe thresholds) are applied at once, the rest are taken only while unconfigured.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_srvs.srv import Trigger

from spatial_ttt_ros.data.rectify import Rectifier
from spatial_ttt_ros.msg import MemoryStatus
from spatial_ttt_ros.ros import memory_jobs, node_params, status
from spatial_ttt_ros.ros.conversions import make_decoder, seconds_to_time_msg
from spatial_ttt_ros.ros.ingest import FrameIngest, IngestCounts, StampPolicy
from spatial_ttt_ros.ros.inputs import subscribe_inputs
from spatial_ttt_ros.ros.keyframe_gate import KeyframeGate
from spatial_ttt_ros.ros.lost_responses import LostResponses
from spatial_ttt_ros.ros.param_table import clip
from spatial_ttt_ros.ros.params import NODE_NAME, PARAMETERS, SPECS, NodeSettings
from spatial_ttt_ros.ros.query import AdmissionBound, QueryResult, answer_result, failure, prepare_query
from spatial_ttt_ros.ros.worker import EngineWorker, wait_result
from spatial_ttt_ros.srv import MemoryFile, SpatialQuery

SUCCESS, FAILURE, ERROR = (TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE,
                           TransitionCallbackReturn.ERROR)
SERVICE_DRAIN_S = 5.0  # how long deactivate waits for running service calls
SERVICE_QOS = QoSProfile(depth=256, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def load_engine(settings: NodeSettings) -> Any:
    """The engine for `settings` (imported here: torch loads only when a node configures)."""
    from spatial_ttt_ros.runtime.engine import StreamingEngine

    return StreamingEngine.from_preset(**settings.engine_kwargs())


class PerceptionNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        self.responses_lost = LostResponses()
        super().__init__(NODE_NAME, **kwargs)
        self.responses_lost.logger = self.get_logger()
        self.responses_lost.watch_node(self)  # parameter and lifecycle services
        # A start-up value its descriptor refuses is replaced by the default; configure reports it.
        self._refused_params = node_params.declare_table(self, PARAMETERS)
        self.settings = NodeSettings.lenient(self._parameter_values())
        self._ingest_group = MutuallyExclusiveCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._status_pub = self.create_publisher(MemoryStatus, "memory_status", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lock = threading.Lock()
        self._serving = threading.Condition()
        self._in_service = 0  # service callbacks running now
        self._engine: Any = None
        self._worker: EngineWorker | None = None
        self._ingest: FrameIngest | None = None
        self._bound: AdmissionBound | None = None
        self._sync: Any = None
        self._subscriptions_active: list[Any] = []
        self._services_active: list[Any] = []
        self._autosave_timer: Any = None
        self._autosave: memory_jobs.Autosave | None = None
        self._camera_k: tuple[float, ...] = ()
        self._rectifier: Rectifier | None = None
        self._configure_error = ""
        self._last_error = ""
        self._seen_errors: tuple[str, str] = ("", "")
        self._health = status.Health()
        self._callback_errors = 0
        self._last_callback_exc: BaseException | None = None
        self._seen_callback_error = ""
        self._previous_tick = (time.monotonic(), 0)
        self._fps = 0.0
        self.device, self.model_id = self.settings.device, self.settings.model_preset
        self._status_timer = self.create_timer(1.0 / self.settings.status_rate_hz, self._publish_status,
                                               callback_group=self._status_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.settings.autostart:
            self._autostart_timer = self.create_timer(0.0, self._autostart, callback_group=MutuallyExclusiveCallbackGroup())

    # -------------------------------------------------------------- settings and lifecycle
    def create_service(self, *args: Any, **kwargs: Any) -> Any:
        """Every service of the node counts the responses it could not deliver."""
        return self.responses_lost.watch(super().create_service(*args, **kwargs))

    def _parameter_values(self) -> dict[str, Any]:
        return node_params.table_values(self, PARAMETERS)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """`ros2 param set`: checked as configure checks; LIVE parameters are applied at once."""
        changes = {p.name: p.value for p in params if p.name in SPECS}
        if not changes:
            return SetParametersResult(successful=True)
        reason, settings = node_params.check_changes(NodeSettings, self._parameter_values(), changes, self.state)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        with self._lock:
            if self.state != "unconfigured":
                live = {name: getattr(settings, name) for name in changes}
                settings = self.settings.replace(**live)
            previous, self.settings = self.settings, settings
        if settings.status_rate_hz != previous.status_rate_hz:
            self.destroy_timer(self._status_timer)
            self._status_timer = self.create_timer(1.0 / settings.status_rate_hz, self._publish_status,
                                                   callback_group=self._status_group)
        if self._ingest is not None and settings.gate_config() != previous.gate_config():
            self._ingest.set_gate_config(settings.gate_config())
        return SetParametersResult(successful=True)

    @property
    def state(self) -> str:
        """Current lifecycle state label ("unconfigured", "inactive", "active", ...)."""
        return self._state_machine.current_state[1]

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def configure_error(self) -> str:
        """Why the last configure failed ("" after a successful one)."""
        return self._configure_error

    def executor_threads(self) -> int:
        """Waiting queries each hold an executor thread; the rest keep ingest and status going."""
        return self.settings.max_concurrent_queries + 4

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            if self._refused_params:
                raise ValueError("refused at start-up: " + "; ".join(self._refused_params))
            settings = NodeSettings.from_values(self._parameter_values())
            self.get_logger().info(f"loading engine: {settings.engine_kwargs()}")
            engine = load_engine(settings)
        except (ValueError, OSError) as exc:
            return self._configure_failed(FAILURE, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            return self._configure_failed(ERROR, f"unexpected {type(exc).__name__}: {exc}")
        if engine.config.pose_text and settings.pose_type == "none":
            engine.close()
            return self._configure_failed(FAILURE, f"model {settings.model_preset!r} has pose_text on (every frame "
                                                   "needs its camera pose) but pose_type is none")
        self.settings, self._engine = settings, engine
        self.device, self.model_id = str(engine.device), str(engine.model_id)
        self._configure_error = self._last_error = ""
        try:
            settings.memory_root().mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            self._last_error = f"memory directory {settings.memory_root()} cannot be created: {exc}"
            self.get_logger().warning(self._last_error)
        if settings.load_on_start and settings.memory_path:
            self._load_on_start(settings)
        self._worker = EngineWorker(engine, settings.ingest_queue_size, prepare_when_idle=settings.prepare_when_idle,
                                    rewind_s=settings.stamp_rewind_s)
        self._worker.start()
        self._bound = AdmissionBound(settings.max_concurrent_queries)
        decoder = make_decoder(settings.image_transport, max_pixels=settings.max_image_pixels)
        if decoder.bridge_problem:
            self.get_logger().info(f"image conversion: {decoder.bridge_problem}; using the package's own")
        # Rectification: the camera_info callback keeps the calibration, the engine worker remaps.
        self._rectifier = None if settings.rectify == "none" else Rectifier(settings.rectify)
        stamps = StampPolicy(max_ahead_s=settings.max_stamp_ahead_s, rewind_s=settings.stamp_rewind_s,
                             now_s=lambda: self.get_clock().now().nanoseconds * 1e-9)
        self._ingest = FrameIngest(decoder, KeyframeGate(settings.gate_config()), self._worker.push,
                                   describe=decoder.describe, rectifier=self._rectifier, stamps=stamps)
        self.get_logger().info(f"engine ready: {self.model_id} on {self.device}, "
                               f"{engine.frames_in_memory} frames in memory")
        return SUCCESS

    def _configure_failed(self, code: TransitionCallbackReturn, reason: str) -> TransitionCallbackReturn:
        self._configure_error = self._last_error = f"configure failed: {reason}"
        self.get_logger().error(self._configure_error)
        return code

    def _load_on_start(self, settings: NodeSettings) -> None:
        """Load memory_path (same confinement and checks as a load_memory request); a missing file
        or a bad one leaves an empty memory and says why."""
        try:
            path = memory_jobs.confined_path("", settings.memory_path, settings.memory_root())
            if not path.exists():
                self.get_logger().info(f"load_on_start: {path} does not exist yet; starting with an empty memory")
                return
            memory_jobs.load(self._engine, path)
            self.get_logger().info(f"loaded memory from {path}: {self._engine.frames_in_memory} frames")
        except (ValueError, OSError) as exc:
            self._last_error = clip(f"load_on_start failed, starting empty: {exc}", memory_jobs.MAX_MESSAGE)
            self.get_logger().warning(self._last_error)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._create_inputs()
        except Exception as exc:
            self._destroy_inputs()
            self._last_error = f"activate failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._last_error)
            return FAILURE
        group = self._service_group
        self._services_active = [
            # A deep request queue: a burst of queries must be answered ("busy" at worst), not lost
            # from a 10-deep history while the executor threads are waiting on the engine.
            self.create_service(SpatialQuery, "spatial_query", self._counted(self._on_query), callback_group=group,
                                qos_profile=SERVICE_QOS),
            self.create_service(MemoryFile, "save_memory", self._counted(self._on_save), callback_group=group),
            self.create_service(MemoryFile, "load_memory", self._counted(self._on_load), callback_group=group),
            self.create_service(Trigger, "reset_memory", self._counted(self._on_reset), callback_group=group),
        ]
        if self.settings.autosave_period_s > 0:
            try:
                path = memory_jobs.confined_path("", self.settings.memory_path, self.settings.memory_root())
            except ValueError as exc:
                self._last_error = f"activate failed: autosave: {exc}"
                self.get_logger().error(self._last_error)
                self._destroy_inputs()
                for service in self._services_active:
                    self.destroy_service(service)
                self._services_active = []
                return FAILURE
            self._autosave = memory_jobs.Autosave(self._worker, path, self.get_logger())
            self._autosave_timer = self.create_timer(self.settings.autosave_period_s, self._autosave.tick,
                                                     callback_group=self._status_group)
        self.get_logger().info("active: ingesting and answering")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_inputs()
        # New requests already get "not active"; let running ones answer before their service goes
        # (rclpy sends a response on the service after the callback: a destroyed one raises).
        with self._serving:
            self._serving.wait_for(lambda: self._in_service == 0, timeout=SERVICE_DRAIN_S)
        for service in self._services_active:
            self.destroy_service(service)
        self._services_active = []
        if self._autosave_timer is not None:
            self.destroy_timer(self._autosave_timer)
            self._autosave_timer = self._autosave = None
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free_engine()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.on_deactivate(state)
        self._free_engine()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.on_deactivate(state)
        self._free_engine()
        return SUCCESS

    def _free_engine(self) -> None:
        worker, engine = self._worker, self._engine
        self._worker = self._ingest = self._bound = self._engine = None
        if worker is not None and not worker.stop(timeout_s=30.0):
            self.get_logger().warning("engine worker did not stop within 30 s; freeing the engine anyway")
        if engine is not None:
            engine.close()

    def close(self) -> None:
        """Free the engine and destroy the node (what main does on exit)."""
        self.on_deactivate(LifecycleState(0, "shutting_down"))
        self._free_engine()
        self.destroy_node()

    def destroy_node(self) -> None:
        """Node.destroy_node, then the lifecycle state machine. rclpy's LifecycleNode leaves the
        state machine alive: it owns the lifecycle services' endpoints and the node handle, so the
        node stayed discoverable (with a half-destroyed change_state/get_state) until the garbage
        collector happened to free this object, and a later node of the same name in the process
        could not be reached by new clients."""
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    # -------------------------------------------------------------- inputs
    def _create_inputs(self) -> None:
        self._subscriptions_active, self._sync = subscribe_inputs(
            self, self.settings, self._ingest, self._ingest_group, self._on_camera_info)

    def _destroy_inputs(self) -> None:
        for sub in self._subscriptions_active:
            self.destroy_subscription(sub)
        self._subscriptions_active = []
        self._sync = None

    def input_publishers(self) -> dict[str, int]:
        """Matched publishers per input topic (empty while inactive): a sender can wait for both
        sides of the match before its first frame, which best-effort delivery would otherwise lose."""
        return {sub.topic_name: sub.get_publisher_count() for sub in self._subscriptions_active}

    def _on_camera_info(self, msg: CameraInfo) -> None:
        k = list(msg.k)
        self._camera_k = (k[0], k[4], k[2], k[5])
        rectifier = self._rectifier
        if rectifier is not None:
            rectifier.on_camera_info(msg)

    # -------------------------------------------------------------- services
    def _counted(self, callback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """`callback`, counted while it runs (deactivate waits for the count to reach zero)."""
        def run(request: Any, response: Any) -> Any:
            with self._serving:
                self._in_service += 1
            try:
                return callback(request, response)
            finally:
                with self._serving:
                    self._in_service -= 1
                    self._serving.notify_all()
        return run

    def _on_query(self, request: SpatialQuery.Request, response: SpatialQuery.Response) -> SpatialQuery.Response:
        start = time.monotonic()
        try:
            result = self._answer(request)
        except Exception as exc:  # a bug must not take the executor (and the node) down with it
            self.get_logger().error(f"spatial_query failed: {traceback.format_exc()}")
            result = failure(f"internal error: {type(exc).__name__}: {exc}")
        for name in ("success", "message", "answer", "value", "unit", "choice", "choice_text", "prompt"):
            setattr(response, name, getattr(result, name))
        response.frames_in_memory = result.frames_in_memory
        response.position_set = result.position is not None
        if result.position is not None:
            response.position.x, response.position.y = float(result.position[0]), float(result.position[1])
        response.frame_id = result.frame_id
        response.memory_stamp = seconds_to_time_msg(result.memory_stamp_s)
        response.latency_s = time.monotonic() - start
        return response

    def _answer(self, request: SpatialQuery.Request) -> QueryResult:
        worker, bound, s = self._worker, self._bound, self.settings
        if worker is None or bound is None or self.state != "active":
            return failure(f"node is not active (state: {self.state})")
        try:
            query = prepare_query(request.kind, list(request.objects), request.question, list(request.options),
                                  request.max_new_tokens, request.timeout_s,
                                  default_max_new_tokens=s.max_new_tokens,
                                  max_new_tokens_limit=s.max_new_tokens_limit,
                                  default_timeout_s=s.query_timeout_s, append_many_rooms=s.append_many_rooms)
        except ValueError as exc:
            return failure(f"bad request: {exc}")
        snap = worker.snapshot()
        if snap.frames_in_memory == 0 and snap.queue_depth == 0:
            return failure("no frames in memory yet: nothing has been seen to answer from "
                           "(is the camera publishing, and the pose in sync?)", query.prompt)
        if not bound.try_acquire():
            return failure(f"busy: {bound.limit} queries already in flight (max_concurrent_queries)", query.prompt,
                           snap.frames_in_memory)
        prompt, tokens = query.prompt, query.max_new_tokens
        future = worker.submit(lambda engine: engine.ask(prompt.text, max_new_tokens=tokens))
        future.add_done_callback(lambda _: bound.release())
        try:
            answer = wait_result(future, query.timeout_s)
        except TimeoutError:
            return failure(f"timeout: no answer within {query.timeout_s:g} s", prompt, snap.frames_in_memory)
        except CancelledError:
            return failure("cancelled: the engine stopped (node deactivated or shutting down)", prompt)
        except ValueError as exc:
            return failure(str(exc), prompt, snap.frames_in_memory)
        except Exception as exc:
            return failure(f"engine error: {type(exc).__name__}: {exc}", prompt, snap.frames_in_memory)
        ingest = self._ingest
        frame_id = (ingest.counts().pose_frame_id if ingest is not None else "") or s.map_frame
        return answer_result(prompt, answer, frame_id)

    def _file_job(self, response: Any, requested_path: str | None, what: str,
                  job: Callable[[Any, str], int], reopen_gate: bool = False) -> Any:
        """Run a memory job on the worker and fill a MemoryFile / Trigger response. reopen_gate: the
        memory was replaced, so the next frame is a keyframe again."""
        try:
            if self._worker is None:
                raise ValueError(f"node is not configured (state: {self.state})")
            path = None if requested_path is None else memory_jobs.confined_path(
                requested_path, self.settings.memory_path, self.settings.memory_root())
        except ValueError as exc:
            response.success, response.message = False, clip(str(exc), memory_jobs.MAX_MESSAGE)
            return response
        worker, ingest = self._worker, self._ingest
        label = what if path is None else f"{what} {path}"
        ok, message, frames = memory_jobs.run(worker, lambda engine: job(engine, path), label,
                                              max(60.0, self.settings.query_timeout_s))
        response.success, response.message = ok, message
        if hasattr(response, "frames_in_memory"):
            response.frames_in_memory = frames
        if not ok:
            self._last_error = message
        elif reopen_gate and ingest is not None:
            ingest.reset_gate()
        return response

    def _on_save(self, request: MemoryFile.Request, response: MemoryFile.Response) -> MemoryFile.Response:
        return self._file_job(response, request.path, "save", memory_jobs.save)

    def _on_load(self, request: MemoryFile.Request, response: MemoryFile.Response) -> MemoryFile.Response:
        worker = self._worker
        return self._file_job(response, request.path, "load",
                              lambda engine, path: memory_jobs.load(engine, path, worker), reopen_gate=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        worker = self._worker
        return self._file_job(response, None, "reset", lambda engine, _: memory_jobs.reset(engine, worker),
                              reopen_gate=True)

    # -------------------------------------------------------------- status
    def record_callback_error(self, exc: BaseException) -> None:
        """A callback raised (spin_resilient caught it): count it, report it, go on."""
        with self._lock:
            if exc is self._last_callback_exc:  # rclpy can raise one callback's exception twice
                return
            self._last_callback_exc = exc
            self._callback_errors += 1
            self._last_error = clip(f"callback failed: {type(exc).__name__}: {exc}", 400)
            self._seen_callback_error = self._last_error

    def status_view(self) -> status.StatusView:
        """The counters as the next memory_status would report them (ingest_fps: last period's)."""
        worker, ingest = self._worker, self._ingest
        snap = worker.snapshot() if worker is not None else None
        counts = ingest.counts() if ingest is not None else IngestCounts()
        self._track_last_error(counts.last_reject, snap.last_error if snap else "")
        return status.StatusView(state=self.state, ingest=counts, worker=snap, device=self.device,
                                 model_id=self.model_id, last_error=self._last_error, ingest_fps=self._fps,
                                 camera_k=self._camera_k, callback_errors=self._callback_errors,
                                 last_callback_error=self._seen_callback_error,
                                 responses_lost=self.responses_lost.count,
                                 requests_taken=self.responses_lost.taken,
                                 rectification=self._rectifier.state() if self._rectifier is not None else "off")

    def _publish_status(self) -> None:
        if not self.context.ok():  # shutting down (SIGINT): nothing can be published any more
            return
        try:
            self._publish_status_once()
        except Exception:  # status must keep coming; a failure here is logged, not fatal
            if not self.context.ok():
                return
            self.get_logger().error(f"status publishing failed: {traceback.format_exc()}")

    def _publish_status_once(self) -> None:
        restarted = self._worker.ensure_alive() if self._worker is not None else ""
        if restarted:
            self.get_logger().error(f"engine worker died and was restarted:\n{restarted}")
        view = self.status_view()
        now, ingested = time.monotonic(), view.worker.frames_ingested if view.worker else 0
        then, before = self._previous_tick
        self._fps = max(0, ingested - before) / max(now - then, 1e-6)
        self._previous_tick = (now, ingested)
        view = dataclasses.replace(view, ingest_fps=self._fps)
        level, message = self._health.update(view, now, restarted, self._configure_error)
        stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(status.memory_status(view, stamp))
        self._diag_pub.publish(status.diagnostics(view, level, message, f"{self.get_name()}: spatial memory", stamp))

    def _track_last_error(self, reject: str, worker_error: str) -> None:
        """last_error is the newest of: a rejected frame, a worker/job error, a failed transition."""
        with self._lock:
            seen_reject, seen_worker = self._seen_errors
            if reject and reject != seen_reject:
                self._last_error = f"rejected frame: {reject}"
            if worker_error and worker_error != seen_worker:
                self._last_error = worker_error
            self._seen_errors = (reject, worker_error)
