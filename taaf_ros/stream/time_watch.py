"""Jumps of time the live core must know about: the node's own clock going back or leaping
forward, and an input's stamps jumping against their receipt times (found by
:class:`~taaf_ros.stream.clock.StampTimeline`). Each is counted and named, with the cause it
most likely has, in /diagnostics for ``hold_s`` after it happened.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from taaf_ros.stream.clock import JUMP_US


class TimeWatch:
    """The node's clock as the live core last saw it, and the jumps of time found.

    ``observe`` is called with the node's clock at every message and poll (from the decode and
    the inference thread); it returns how far the clock went back where it went back by more
    than ``jump_us``: the caller restarts its windows from there (``generation`` counts those
    restarts). ``sim_time``: the node follows /clock, which names the likely cause.

    >>> tw = TimeWatch(now_us=100_000_000)
    >>> tw.observe(100_050_000) is None, tw.observe(30_050_000)   # a bag played again
    (True, 70000000)
    >>> tw.warnings(time.monotonic())[0][:44]
    "the node's clock went back 70.0 s (a stepped"
    """

    def __init__(self, now_us: int, jump_us: int = JUMP_US, hold_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.jump_us, self.hold_s = int(jump_us), float(hold_s)
        self.monotonic = monotonic  # what holds are measured on: never the node's clock
        self.latest_us = int(now_us)
        self.generation = 0
        self.sim_time = False
        self.clock_back = 0
        self.clock_forward = 0
        self.stamp_jumps: dict[str, int] = {}
        self._notes: deque[tuple[float, str]] = deque(maxlen=16)
        self._lock = threading.Lock()

    def observe(self, now_us: int) -> int | None:
        """How far (µs) the node's clock went back, where that is a jump; else None."""
        now = int(now_us)
        with self._lock:
            step, self.latest_us = now - self.latest_us, max(now, self.latest_us)
            if step > 10 * self.jump_us:
                self.clock_forward += 1
                self._note(f"the node's clock jumped forward {step / 1e6:.1f} s "
                           f"({self._cause('forward')}): the windows in between were skipped")
            if step >= -self.jump_us:
                return None
            self.latest_us = now
            self.clock_back += 1
            self._note(f"the node's clock went back {-step / 1e6:.1f} s ({self._cause('back')}"
                       "): windows, buffers and smoothing restarted from there")
            return -step

    def input_jumped(self, name: str, delta_us: int) -> None:
        """The stamps of input ``name`` jumped ``delta_us`` against their receipt times."""
        with self._lock:
            self.stamp_jumps[name] = self.stamp_jumps.get(name, 0) + 1
            where = "back" if delta_us < 0 else "ahead"
            self._note(f"{name} stamps jumped {abs(delta_us) / 1e6:.1f} s {where} of their "
                       "receipt times (the driver restarted or runs on another clock, or its "
                       "clock was stepped): re-anchored at receipt, the windows across the "
                       "jump dropped")

    def input_anchored(self, name: str, offset_us: int) -> None:
        """Input ``name``'s first stamps lie ``offset_us`` from their receipt times (more
        than a jump): placed at receipt."""
        with self._lock:
            self.stamp_jumps[name] = self.stamp_jumps.get(name, 0) + 1
            where = "behind" if offset_us < 0 else "ahead of"
            self._note(f"{name} stamps are {abs(offset_us) / 1e6:.1f} s {where} their receipt "
                       "times from the start (a driver on another machine's clock, or one "
                       "that is not synchronised): placed at receipt")

    def _cause(self, direction: str) -> str:
        if self.sim_time:
            return ("use_sim_time: the bag was played again or /clock restarted"
                    if direction == "back" else "use_sim_time: /clock skipped ahead")
        return "a stepped system clock"

    def _note(self, text: str) -> None:
        self._notes.append((self.monotonic(), text))

    def warnings(self, now_s: float) -> list[str]:
        """The jumps of the last ``hold_s`` seconds, newest last, one line each."""
        with self._lock:
            seen: dict[str, None] = {}
            for t, text in self._notes:
                if now_s - t <= self.hold_s:
                    seen[text] = None
            return list(seen)

    def counters(self) -> dict[str, int]:
        """For /diagnostics: ``time.clock_back``, ``time.clock_forward`` and the inputs'
        ``time.stamp_jumps.<input>``."""
        with self._lock:
            return {"time.clock_back": self.clock_back, "time.clock_forward": self.clock_forward,
                    **{f"time.stamp_jumps.{k}": v for k, v in self.stamp_jumps.items()}}
