"""Ctrl-C and SIGTERM for the package's processes, handled on the main thread.

rclpy's own signal handlers shut the context down from a thread of their own, which then
triggers every executor's guard condition. A process that tears its executor down as soon as
it sees the shutdown can have that thread trigger a guard condition already destroyed: a
segfault (exit code -11) in ``rcl_trigger_guard_condition``, seen about once in 30 to 80 stops
of the managed node on a loaded machine. So the processes start rclpy without those handlers,
let SIGINT and SIGTERM raise KeyboardInterrupt on the main thread, spin with a timeout so that
Python gets to raise it, and tear down on the main thread alone.
"""

from __future__ import annotations

import signal
from typing import Any

SPIN_TIMEOUT_S = 0.1
"""Longest a blocked spin keeps a signal waiting (a timer would wake it sooner)."""


def _interrupt(signum: int, frame: Any) -> None:
    ignore_signals()  # the first one stops the process; a second must not cut its clean-up
    raise KeyboardInterrupt(signal.Signals(signum).name)


def init_rclpy(args: list[str] | None = None) -> None:
    """``rclpy.init`` without rclpy's signal handlers; the first SIGINT or SIGTERM raises
    KeyboardInterrupt (also where the shell started the process with SIGINT ignored), later
    ones are ignored."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def spin(executor: Any) -> None:
    """Spin until the context is shut down; a signal raises KeyboardInterrupt in here."""
    while executor.context.ok():
        executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)


def ignore_signals() -> None:
    """For the clean-up: Ctrl-C in a terminal reaches a node twice under ``ros2 launch`` (the
    terminal signals the process group, launch forwards it), and launch may follow up with
    SIGTERM; neither may cut the clean-up short (launch's last resort is SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
