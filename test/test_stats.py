"""Tests of the diagnostics key/value pairs."""

from __future__ import annotations

from taaf_ros.inference.stats import InputCounters, diagnostic_values
from taaf_ros.stream.scheduler import WARN, SchedulerStats


def test_diagnostic_values_are_strings():
    kv = dict(diagnostic_values(
        level=WARN, message="m", device="cpu", inputs={"events": InputCounters(bad=2)},
        rates={"events.msgs": 10.0}, buffers={"events.size": 5},
        scheduler=SchedulerStats(), window_latency={"p50": 1.0},
        inference_latency={"p50": 2.0}, predictions=4))
    assert kv["level"] == "WARN" and kv["events.bad_messages"] == "2"
    assert all(isinstance(v, str) for v in kv.values())
