"""Spinning that a failing callback does not end (both nodes' main loops and NodeHost), and the
end of rclpy's signal handling that both main loops need before they shut their executor down."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.signals import uninstall_signal_handlers


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


def end_signal_handling() -> None:
    """Join rclpy's signal-handling thread; call it once spinning has ended, before executor.shutdown().

    On SIGINT/SIGTERM rclpy's C handler wakes a native thread of rclpy's, which triggers every
    executor's SIGINT guard condition and only then shuts the contexts down. SIGINT also reaches
    Python's handler (rclpy chains to it), so KeyboardInterrupt ends spinning as soon as that guard
    condition wakes the executor, while the thread may still be walking the guard condition list.
    executor.shutdown() then unregisters and frees the guard condition and the list, and the thread
    reads freed memory: SIGSEGV in rcl_trigger_guard_condition while the main thread already closes
    the node (rclpy 9.1.2; about 1 recorder test in 10-60 under CPU load). rclpy.try_shutdown() joins
    the thread too, but only after everything is destroyed. Afterwards SIGINT and SIGTERM have the
    handlers they had before rclpy.init() (Python's), as after rclpy.try_shutdown()."""
    uninstall_signal_handlers()
