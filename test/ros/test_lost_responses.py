"""Lost service responses are counted for the node whose send lost them (rclpy warns
"failed to send response (timeout)" and the client never hears back)."""

from __future__ import annotations

import threading

from std_srvs.srv import Trigger

from spatial_ttt_ros.ros.lost_responses import LostResponses


class Handle:
    """rcl's service handle as rclpy uses it; `lose` makes it behave as rcl does on RCL_RET_TIMEOUT:
    a RuntimeWarning raised at the Python frame that called it (PyErr_WarnFormat, stack level 1)."""

    def __init__(self, lose: bool) -> None:
        self.lose, self.sent = lose, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def service_send_response(self, response, request_id):
        import sys
        import warnings

        self.sent += 1
        if self.lose:
            caller = sys._getframe(1)
            warnings.warn_explicit("failed to send response (timeout): client will not receive response",
                                   RuntimeWarning, caller.f_code.co_filename, caller.f_lineno,
                                   module=caller.f_globals["__name__"])


class Service:
    srv_type, srv_name = Trigger, "/probe"

    @staticmethod
    def callback(request, response):
        return response

    def __init__(self, lose: bool) -> None:
        self.handle = Handle(lose)


def test_lost_responses_are_counted_per_node_on_any_thread():
    a, b = LostResponses(), LostResponses()
    lossy, fine, other = a.watch(Service(True)), a.watch(Service(False)), b.watch(Service(True))
    header = object()  # a request id (a service-info header would be unpacked first)
    for _ in range(3):
        lossy.send_response(Trigger.Response(), header)
    fine.send_response(Trigger.Response(), header)
    assert a.count == 3 and b.count == 0 and lossy.handle.sent == 3 and fine.handle.sent == 1
    threads = [threading.Thread(target=other.send_response, args=(Trigger.Response(), header)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (a.count, b.count) == (3, 4)
    assert a.watch(lossy) is lossy
    lossy.send_response(Trigger.Response(), header)  # watched twice, counted once
    assert a.count == 4
    lossy.callback(Trigger.Request(), Trigger.Response())  # a request taken
    assert (a.taken, b.taken) == (1, 0)


def test_the_nodes_report_the_count(perception, helpers):
    node = perception({"status_rate_hz": 10.0})
    assert all(getattr(s, "_lost_responses", None) is node.responses_lost for s in node.services)
    node.responses_lost.send(Service(True), Trigger.Response(), object())
    assert node.status_view().responses_lost == 1
