"""Count service responses that rmw could not deliver (a node's side of a known ROS 2 failure).

A response is sent on the server's response writer; when that writer has not yet matched the
client's response reader (a new client on a loaded machine, DDS discovery still in flight), rmw
gives up after a short wait and rclpy only warns: RuntimeWarning "failed to send response
(timeout)". The client then waits for an answer that never comes. `LostResponses.watch` replaces a
service's `send_response` with one that sends the same way rclpy does, but from this module, where
a warnings filter turns exactly that warning into an exception: it is counted for the node (and
logged), not printed. The nodes report the count (memory_status.responses_lost, /diagnostics
`responses_lost`). A client that saw no answer and sees the count grow knows a request was served
and its answer lost: it may send the request again (if it is safe to repeat). The requests the
services took are counted too (`requests_taken`): a client whose request is not among them after a
while knows the request itself was lost.

The filter is process-wide state of Python's warnings module, limited to warnings raised from this
module's frames (rclpy raises it at the Python frame that called into rcl); it is added again if
something (a test harness) reset the filters.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

MESSAGE = "failed to send response"
_FILTER = ("error", MESSAGE, RuntimeWarning, __name__)


def _ensure_filter() -> None:
    """The warning raised from this module's frames becomes an exception (idempotent)."""
    for action, message, category, module, _ in warnings.filters:
        if (action, getattr(message, "pattern", message), category, getattr(module, "pattern", module)) == (
                "error", MESSAGE, RuntimeWarning, __name__):
            return
    warnings.filterwarnings(*_FILTER)


class LostResponses:
    """The responses one node failed to deliver; thread-safe."""

    def __init__(self, logger: Any = None) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._count = 0
        self._taken = 0  # requests whose callback started, on every watched service

    @property
    def taken(self) -> int:
        """Requests the node's services have taken (a client that got no answer and sees this not
        grow knows its request never arrived)."""
        with self._lock:
            return self._taken

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def watch(self, service: Any) -> Any:
        """Send `service`'s responses through `send` (rclpy's executor calls send_response after the
        callback); returns the service."""
        if getattr(service, "_lost_responses", None) is not self:
            service.send_response = lambda response, header: self.send(service, response, header)
            callback = service.callback

            def counted(*args: Any) -> Any:
                with self._lock:
                    self._taken += 1
                return callback(*args)

            service.callback = counted
            service._lost_responses = self
        return service

    def watch_node(self, node: Any) -> None:
        """Watch every service the node has now (parameter and lifecycle services included)."""
        for service in node.services:
            self.watch(service)

    def send(self, service: Any, response: Any, header: Any) -> None:
        """rclpy's Service.send_response, with a lost response counted instead of warned about."""
        if not isinstance(response, service.srv_type.Response):
            raise TypeError(f"expected {service.srv_type.Response}, got {type(response)}")
        request_id = header.request_id if isinstance(header, _rclpy.rmw_service_info_t) else header
        _ensure_filter()
        try:
            with service.handle:
                service.handle.service_send_response(response, request_id)
        except RuntimeWarning as exc:
            if MESSAGE not in str(exc):
                raise
            with self._lock:
                self._count += 1
                count = self._count
            if self.logger is not None:
                self.logger.warning(f"response on {service.srv_name} lost ({count} in all): {exc}")
