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


def test_input_health_names_overload_and_inputs_that_contribute_nothing():
    from taaf_ros.inference.stats import InputHealth

    h = InputHealth()
    total = {"events.messages": 0, "events.decoded": 0, "audio.messages": 0,
             "audio.decoded": 0, "windows.cut": 0, "windows.late": 0, "windows.windows": 0,
             "windows.events": 0, "windows.audio_coverage": 0.0}
    assert h.update(0.0, total) == []
    # Audio missing from windows because it came after max_wait_s: named with its delay, and
    # not called overload (inference kept up: no window dropped).
    total |= {"windows.cut": 20, "windows.late.audio": 6, "windows.windows": 20,
              "windows.events": 4000, "windows.audio_coverage": 20.0}
    got = " ".join(h.update(1.0, total, {"delay.audio": "230 ms"}))
    assert got.startswith("audio: missing from 6 of 20 windows in the last 3 s") and \
        "(230 ms after its time, 95th percentile): raise max_wait_s" in got, got
    assert "overloaded" not in got and "events: missing" not in got
    # Events and audio arrive, but the windows hold none of either: both named.
    total |= {"events.messages": 100, "events.decoded": 20_000, "audio.messages": 100,
              "audio.decoded": 8000, "windows.windows": 40, "windows.cut": 40}
    got = " ".join(h.update(2.0, total))
    assert "none in the 20 windows" in got and "held 0 % real audio" in got
    # Windows dropped because inference fell behind: overload.
    total |= {"windows.cut": total["windows.cut"] + 20, "windows.dropped": 7}
    got = " ".join(h.update(3.0, total))
    assert "overloaded: 7 windows dropped in the last 1.0 s (inference fell behind)" in got
    # Warnings stay 10 s after the last report that raised them, then go.
    assert h.update(30.0, total) == []


def test_latency_percentiles_cover_the_last_period_only():
    """/diagnostics report what inference costs now: a slow start-up fades out of the figures
    after the period, and a period without windows says so (NaN, 0 windows)."""
    import math

    from taaf_ros.inference.stats import LatencyStats

    s = LatencyStats(period_s=10.0)
    for i in range(100):
        s.add(50.0, now_s=i * 0.05)  # 5 s of slow windows
    for i in range(200):
        s.add(2.0, now_s=5.0 + i * 0.05)  # then 10 s of fast ones
    now = s.percentiles(now_s=15.0)
    assert now["p50"] == 2.0 and now["p99"] == 2.0 and now["n"] == 200
    assert s.percentiles(now_s=7.0)["max"] == 50.0
    idle = s.percentiles(now_s=40.0)
    assert idle["n"] == 0 and math.isnan(idle["p50"])
    kv = dict(diagnostic_values(
        level=WARN, message="m", device="cpu", inputs={}, rates={}, buffers={},
        scheduler=SchedulerStats(), window_latency=idle, inference_latency=now, predictions=0))
    assert kv["inference_ms.p50"] == "2.00" and kv["inference_ms.windows"] == "200"
    assert kv["window_latency_ms.windows"] == "0"
