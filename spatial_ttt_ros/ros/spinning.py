"""Spinning that a failing callback does not end (both nodes' main loops and NodeHost)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException


def spin_resilient(executor: Executor, logger: Any, on_error: Callable[[BaseException], None] | None = None) -> None:
    """executor.spin() that a failing callback does not end: the exception is logged and passed to
    `on_error` (the node counts it and reports ERROR on /diagnostics), and spinning goes on. A
    response sent on a service destroyed by a transition meanwhile (InvalidHandle) is a warning.
    Shutdown and interrupts still end it."""
    while True:
        try:
            executor.spin()
            return
        except InvalidHandle as exc:
            logger.warning(f"a callback outlived its service or subscription (lifecycle transition): {exc}")
        except (ExternalShutdownException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if not executor.context.ok():
                return
            logger.error(f"a callback raised; the node goes on: {traceback.format_exc()}")
            if on_error is not None:
                on_error(exc)
