"""The perception node under bad conditions, through real topics and services on the real (tiny)
engine: a callback that raises, stamps that are negative, far ahead or restart, and
`ros2 param set` validated at set time (live ones applied, the rest refused with a reason)."""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter

NAME = "/spatial_ttt_perception"
FAST = {"keyframe_max_rate_hz": 0.0, "keyframe_min_translation_m": 0.0, "keyframe_min_rotation_deg": 0.0,
        "status_rate_hz": 10.0}


def test_a_callback_that_raises_is_counted_reported_and_the_node_goes_on(ros_node, perception, helpers):
    node = perception(FAST)
    diags: list[DiagnosticStatus] = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), 50)
    rig = helpers.Rig(ros_node, node)
    rig.publish(1.0)
    sync = node._sync  # the package's synchroniser (no message_filters here), fed by the subscriptions
    real = sync.add

    def broken(*args: object) -> None:
        sync.add = real
        raise RuntimeError("simulated callback bug")

    sync.add = broken  # raises inside a subscription callback, outside any try
    image = helpers.make_image(2.0)
    rig.pose_pub.publish(helpers.pose_msg(2.0))
    assert helpers.wait_for(lambda: (rig.image_pub.publish(image), node.status_view().callback_errors)[1] >= 1, 20)
    assert helpers.spin(ros_node, lambda: any(d.level == DiagnosticStatus.ERROR and "simulated callback bug"
                                              in d.message for d in diags), 20)
    assert any(kv.key == "callback_errors" and kv.value == "1" for d in diags for kv in d.values)
    rig.publish(3.0)  # the node goes on
    assert rig.wait_idle().worker.frames_in_memory >= 2


def test_stamps_negative_far_ahead_and_a_restarted_clock(ros_node, perception, helpers):
    node = perception(FAST)
    rig = helpers.Rig(ros_node, node)
    for stamp in (100.0, 101.0):
        rig.publish(stamp)
    assert rig.wait_idle().worker.frames_in_memory == 2

    negative = helpers.make_image(102.0)
    negative.header.stamp.sec = -5
    pose = helpers.pose_msg(102.0)
    pose.header.stamp.sec = -5
    assert helpers.wait_for(lambda: (rig.pose_pub.publish(pose), rig.image_pub.publish(negative),
                                     node.status_view().ingest.refused)[2] >= 2, 20)  # image and pose
    assert "header stamp is negative (-5 s)" in node.status_view().last_error

    ahead = time.time() + 1e6  # the node's clock is wall time here
    rig.publish(ahead)
    assert "ahead of the node's clock" in node.status_view().last_error
    rig.publish(102.0)
    assert rig.wait_idle().worker.frames_in_memory == 3  # the wild stamp blocked nothing

    rig.publish(5.0)  # the robot's clock restarted: a new segment, not "not after the last keyframe's"
    rig.publish(6.0)
    view = rig.wait_idle()
    assert view.worker.frames_in_memory == 5 and view.ingest.rewinds == 1 and view.worker.segments == 1
    assert view.worker.counters.last_stamp_s == 6.0 + view.worker.stamp_offset_s > 102.0


def set_params(helpers, client, **values) -> list:
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return helpers.call(client, SetParameters, f"{NAME}/set_parameters", request, 20.0).results


def test_param_set_is_validated_live_ones_apply_and_the_rest_wait_for_configure(ros_node, perception, helpers):
    node = perception({"status_rate_hz": 1.0})
    (ok,) = set_params(helpers, ros_node, status_rate_hz=20.0)
    assert ok.successful, ok.reason
    assert node.settings.status_rate_hz == 20.0 and node._status_timer.timer_period_ns == 50_000_000
    (ok,) = set_params(helpers, ros_node, max_new_tokens=7)  # a query default: live
    assert ok.successful and node.settings.max_new_tokens == 7
    refused = {
        "sync_slop_s": (-1.0, "out of range"),  # the descriptor's range (rclpy) or our check
        "keyframe_min_rotation_deg": ("fast", "must be a float"),
        "max_new_tokens": (100_000, "max_new_tokens"),
        "pose_type": ("bogus", "pose_type must be one of"),
        "image_transport": ("compressed", "takes effect at configure"),
        "autostart": (False, "read-only"),
    }
    for name, (value, why) in refused.items():
        (result,) = set_params(helpers, ros_node, **{name: value})
        assert not result.successful and why.lower() in result.reason.lower(), (name, result.reason)
    assert node.settings.pose_type == "pose_stamped" and node.settings.max_new_tokens == 7


def test_spin_resilient_survives_raising_callbacks_and_reports_each(helpers):
    """What both nodes' main loops (and the in-process host) spin with."""
    import threading

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from std_msgs.msg import String

    from spatial_ttt_ros.ros.spinning import spin_resilient

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("raising_node", context=context)
    errors: list[BaseException] = []
    ticks = []
    node.create_subscription(String, "/raising", lambda msg: (_ for _ in ()).throw(RuntimeError(msg.data)), 10)
    node.create_timer(0.05, lambda: ticks.append(1))
    publisher = node.create_publisher(String, "/raising", 10)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=spin_resilient, args=(executor, node.get_logger(), errors.append), daemon=True)
    thread.start()
    try:
        assert helpers.wait_for(lambda: (publisher.publish(String(data="boom")), len(errors))[1] >= 2, 20)
        assert all(isinstance(e, RuntimeError) and str(e) == "boom" for e in errors)
        before = len(ticks)
        assert helpers.wait_for(lambda: len(ticks) > before + 5, 20)  # still spinning
        assert thread.is_alive()
    finally:
        executor.shutdown(timeout_sec=10)
        thread.join(timeout=10)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
