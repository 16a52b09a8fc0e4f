"""A node's parameter table in ROS: declarations with descriptors, and `ros2 param set` checked
with the same rules as configure.

Descriptors carry the row's description, its limits in words (`additional_constraints`), the
numeric range (`integer_range` / `floating_point_range`) and `read_only` for START rows.
Declarations use dynamic typing so `-p status_rate_hz:=5` (an int) is taken for a float; the
row's `check` converts and validates. A start-up value the descriptor refuses does not kill the
node: the default is declared instead and the reason is returned, for configure to report.
"""

from __future__ import annotations

import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from spatial_ttt_ros.ros.param_table import CONFIGURE, START, ParamSpec, clip

INT64 = (-(2**63), 2**63 - 1)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor of one table row."""
    d = ParameterDescriptor(description=spec.description, additional_constraints=spec.constraints(),
                            read_only=spec.applies == START, dynamic_typing=True)
    if spec.minimum is None and spec.maximum is None:
        return d
    if spec.type is int:
        low = INT64[0] if spec.minimum is None else int(spec.minimum)
        high = INT64[1] if spec.maximum is None else int(spec.maximum)
        d.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    elif spec.type is float:
        low = -math.inf if spec.minimum is None else float(spec.minimum)
        high = math.inf if spec.maximum is None else float(spec.maximum)
        d.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return d


def declare_table(node: Node, parameters: tuple[ParamSpec, ...]) -> list[str]:
    """Declare every row on `node`; returns why start-up values were refused (defaults used)."""
    refused = []
    for spec in parameters:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            node.declare_parameter(spec.name, spec.default, descriptor(spec), ignore_override=True)
            refused.append(f"{spec.name}: {clip(str(exc))}")
    return refused


def table_values(node: Node, parameters: tuple[ParamSpec, ...]) -> dict[str, Any]:
    return {p.name: node.get_parameter(p.name).value for p in parameters}


def check_changes(settings_cls: Any, current: dict[str, Any], changes: dict[str, Any],
                  state: str = "unconfigured") -> tuple[str, Any]:
    """Validate a `ros2 param set` of the table's parameters: ("", new settings) or (reason, None).

    START rows are refused; CONFIGURE rows only while the node is unconfigured (they take effect
    at the next configure); LIVE rows always. The result is checked as a whole, with the rules
    configure applies.
    """
    specs = {p.name: p for p in settings_cls.PARAMETERS}
    checked = {}
    for name, value in changes.items():
        spec = specs[name]
        try:
            checked[name] = spec.check(value)
        except ValueError as exc:
            return clip(str(exc), 300), None
        if spec.applies == START:
            return f"{name} is read at start-up only; restart the node to change it", None
        if spec.applies == CONFIGURE and state != "unconfigured":
            return (f"{name} takes effect at configure: deactivate and clean up the node, set it, then "
                    f"configure again (the node is {state})"), None
    try:
        return "", settings_cls.from_values({**current, **checked})
    except ValueError as exc:
        return clip(str(exc), 300), None
