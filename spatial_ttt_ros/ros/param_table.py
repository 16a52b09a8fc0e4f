"""The machinery behind a node's one parameter table (no rclpy).

A node lists its parameters once, as `ParamSpec` rows (name, default, type, description, range or
choices, and when a change takes effect). From that table come:

* the frozen settings dataclass (`settings_class`): one field per row, every value checked against
  its row (type, finite, range, choices), then the node's rules across fields;
* the params YAML (`params_yaml`), wildcard-keyed (`/**:`) so it applies under any namespace or
  node name; config/*.yaml are this text (a unit test compares them);
* the ROS declarations: `ros/node_params.py` builds each ParameterDescriptor (ranges, read-only,
  constraints) from the row and validates `ros2 param set` with the same checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

# When a change of a parameter takes effect.
START = "start"  # read once when the node starts: read-only afterwards
CONFIGURE = "configure"  # read at the next configure (set it while unconfigured)
LIVE = "live"  # applied at once, in any state

MAX_ECHO = 200  # characters of a bad value quoted back in an error message


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """`text` cut to at most `limit` characters (error messages never echo unbounded input)."""
    text = str(text)
    if len(text) <= limit:
        return text
    suffix = f"... ({len(text)} characters)"
    return text[:max(limit - len(suffix), 0)] + suffix


def require(condition: bool, message: str) -> None:
    """ValueError(message) unless condition holds (parameter validation)."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    type: type  # bool, int, float or str
    description: str
    minimum: float | None = None  # inclusive; numbers only
    maximum: float | None = None  # inclusive; numbers only
    choices: tuple[str, ...] = ()  # strings only: the allowed values
    applies: str = CONFIGURE  # START, CONFIGURE or LIVE
    section: str = ""  # heading in the YAML

    def __post_init__(self) -> None:
        require(self.applies in (START, CONFIGURE, LIVE), f"{self.name}: applies must be start/configure/live")
        self.check(self.default)

    def check(self, value: Any) -> Any:
        """`value` converted to this parameter's type; ValueError naming the parameter otherwise.
        Ints are taken for floats (`-p rate:=5`); nothing else is converted."""
        name, kind = self.name, self.type
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"parameter {name} must be a {kind.__name__}, got {type(value).__name__} "
                             f"{clip(repr(value))}")
        if kind is float:
            require(math.isfinite(value), f"{name} must be a finite number, got {value}")
        if self.minimum is not None:
            require(value >= self.minimum, f"{name} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None:
            require(value <= self.maximum, f"{name} must be <= {self.maximum:g}, got {value}")
        if self.choices:
            require(value in self.choices, f"{name} must be one of {self.choices}, got {clip(repr(value))}")
        return value

    def constraints(self, when: bool = True) -> str:
        """The row's limits in words (the descriptor's additional_constraints); `when`: also when
        a change takes effect."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        number = (lambda v: str(int(v))) if self.type is int else (lambda v: f"{v:g}")
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{number(self.minimum)} to {number(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f">= {number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"<= {number(self.maximum)}")
        if when:
            parts.append({START: "read at start-up only", CONFIGURE: "takes effect at the next configure",
                          LIVE: "applied at once"}[self.applies])
        return "; ".join(parts)


def table_defaults(parameters: Iterable[ParamSpec]) -> dict[str, Any]:
    return {p.name: p.default for p in parameters}


class SettingsBase:
    """Methods of a settings dataclass made by `settings_class`."""

    PARAMETERS: ClassVar[tuple[ParamSpec, ...]] = ()

    def __post_init__(self) -> None:
        for spec in self.PARAMETERS:
            value = spec.check(getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)
        self.check_together()

    def check_together(self) -> None:
        """Rules across parameters (override)."""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Any:
        """Settings from parameter values; unknown names and bad values are a ValueError."""
        unknown = set(values) - {p.name for p in cls.PARAMETERS}
        require(not unknown, f"unknown parameters: {clip(str(sorted(unknown)))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def values(self) -> dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.PARAMETERS}


def settings_class(name: str, parameters: tuple[ParamSpec, ...], base: type = SettingsBase,
                   doc: str = "") -> type:
    """A frozen dataclass with one field per row (defaults from the table), methods from `base`."""
    names = [p.name for p in parameters]
    require(len(set(names)) == len(names), f"duplicate parameter names in {name}")
    fields = [(p.name, p.type, dataclasses.field(default=p.default)) for p in parameters]
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True,
                                     namespace={"PARAMETERS": parameters, "__doc__": doc or base.__doc__})
    cls.__module__ = base.__module__
    return cls


def yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a double-quoted YAML string


def params_yaml(parameters: tuple[ParamSpec, ...], header: str) -> str:
    """The params file for `parameters`: `header` as comments, then every default under the
    wildcard node key `/**` (any node name, any namespace), with its description above it."""
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    lines += ["[live]: `ros2 param set` applies it at once; [start-up]: read when the node starts; others: read",
              "at configure (set them while the node is unconfigured).", "/**:", "  ros__parameters:"]
    lines[-4:-2] = [f"# {line}" for line in lines[-4:-2]]
    section = None
    for spec in parameters:
        if spec.section != section and spec.section:
            lines.append(f"    # ---- {spec.section}")
        section = spec.section
        limits = spec.constraints(when=False)
        note = spec.description + (f" ({limits})" if limits else "") + {LIVE: " [live]", START: " [start-up]"}.get(
            spec.applies, "")
        lines += textwrap.wrap(note, width=96, initial_indent="    # ", subsequent_indent="    #   ")
        lines.append(f"    {spec.name}: {yaml_scalar(spec.default)}")
    return "\n".join(lines) + "\n"
