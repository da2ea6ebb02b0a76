"""Labelled spans of a live-timed recording -> training samples the node would see.

Each sample is one window of the model's length on the node's window grid (multiples of
``grid_us`` of the ROS clock, the node's ``hop_s``). A window's events are the decoded events
in ``[start, end)``, stored relative to the window start; its audio is what the node's streaming
cochlea holds for the window (:class:`~taaf_ros.stream.audio_frames.StreamingCochlea`: the
stream resampled to the model's rate as a whole, the window cut from its ring buffer), so
``frontend.sample_tensors`` of a sample equals the tensors the node computes for that window.

A window is cut as the node's scheduler cuts it: once every modality of the recording has
reached its end (data that comes later is the node's late data, left out as the node leaves it
out); what is still pending when the recording ends is cut with what arrived.
Memory: events are kept from the oldest pending window on, audio in a ring of ``audio_buffer_s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from taaf_ros.events.types import empty_events
from taaf_ros.frontend import FrontEndConfig
from taaf_ros.stream.audio_frames import StreamingCochlea
from taaf_ros.stream.clock import grid_ceil

from .recording import Piece

BACKGROUND = "background"


def span_windows(start_us: int, end_us: int, window_us: int, grid_us: int, stride_us: int
                 ) -> list[int]:
    """Start times of the sample windows of one span, on the ``grid_us`` grid.

    A span no longer than a window gives the one window centred on it (to the nearest grid
    point); a longer span gives every window inside it, ``stride_us`` apart.

    >>> span_windows(1_000_000, 1_400_000, 600_000, 50_000, 600_000)  # short: centred
    [900000]
    >>> span_windows(1_000_000, 2_300_000, 600_000, 50_000, 300_000)  # long: inside it
    [1000000, 1300000, 1600000]
    """
    if end_us - start_us <= window_us:
        centre = (start_us + end_us - window_us) / 2
        return [round(centre / grid_us) * grid_us]
    first = grid_ceil(start_us, grid_us)
    return list(range(first, end_us - window_us + 1, stride_us))


@dataclass(frozen=True)
class WindowRequest:
    """A window to cut: [start_us, start_us + window) with its label; ``span``: the labels
    file's line (0 for background windows)."""

    start_us: int
    label: str
    line: int


@dataclass
class CutSample:
    """One cut window: events (relative µs), model-rate audio, and what they cover."""

    request: WindowRequest
    events: np.ndarray
    pcm: np.ndarray
    audio_coverage: float
    events_reached: bool  # the event stream covers the window, from its start to its end
    audio_reached: bool


class WindowCutter:
    """Cuts windows from a recording's decoded pieces.

    Args:
        frontend: the model's front end (window length, the cochlea's rate).
        requests: the labelled windows, any order.
        modalities: which streams the recording has ("events", "audio").
        background_stride_us: also cut windows of the ``background`` class every this many µs
            (on the grid) that overlap no labelled span by any amount (0: none); ``spans``:
            the labelled [start, end) the background must avoid.
        audio_buffer_s: model-rate audio held; a window whose audio fell out of it (events far
            behind audio in the recording) shows it as low coverage.
    """

    def __init__(self, frontend: FrontEndConfig, requests: Iterable[WindowRequest],
                 modalities: tuple[str, ...], *, background_stride_us: int = 0,
                 spans: Iterable[tuple[int, int]] = (), audio_buffer_s: float = 30.0) -> None:
        self.window_us = frontend.window_us
        self.pending = sorted(requests, key=lambda r: r.start_us)
        self.modalities = modalities
        self.cochlea = StreamingCochlea(frontend, audio_buffer_s)
        self.rate = frontend.cochlea.sample_rate
        self._chunks: list[tuple[int, int, np.ndarray]] = []  # (first t, last t, events)
        self._events_reach: int | None = None
        self.events_from: int | None = None  # time of the first event piece (its start)
        self.events_seen = 0
        self.bg_stride = int(background_stride_us)
        self._spans = sorted(spans)
        self._bg_next: int | None = None

    # ------------------------------------------------------------------ input
    def push(self, piece: Piece) -> list[CutSample]:
        """One decoded piece; returns the windows it completed."""
        if piece.events is not None:
            ev = piece.events.events
            if len(ev):
                t = ev["t"]
                self._chunks.append((int(t.min()), int(t.max()), ev))
                self.events_seen += len(ev)
            reach = piece.events.reach_us
            if self.events_from is None:
                self.events_from = int(ev["t"].min()) if len(ev) else reach
            self._events_reach = reach if self._events_reach is None else max(
                self._events_reach, reach)
            self._start_background(int(ev["t"].min()) if len(ev) else reach)
        if piece.audio is not None and len(piece.audio.samples):
            a = piece.audio
            self.cochlea.push(a.samples, a.start_us, a.sample_rate)
            self._start_background(a.start_us)
        reach = self._reach()
        return [] if reach is None else self._cut(reach)

    def finish(self) -> list[CutSample]:
        """The recording ended: cut what is still pending with the data that arrived."""
        return self._cut(self._data_end(), final=True)

    # ------------------------------------------------------------------ cutting
    def _reach(self) -> int | None:
        reaches = []
        if "events" in self.modalities:
            reaches.append(self._events_reach)
        if "audio" in self.modalities:
            reaches.append(self.cochlea.latest_time)
        return None if any(r is None for r in reaches) else min(reaches)

    def _start_background(self, t_us: int) -> None:
        if self.bg_stride and self._bg_next is None:
            self._bg_next = grid_ceil(t_us, self.bg_stride)

    def _background_up_to(self, end: int) -> None:
        """Queue background windows that end by ``end``."""
        if self._bg_next is None:
            return
        while self._bg_next + self.window_us <= end:
            s, e = self._bg_next, self._bg_next + self.window_us
            if not any(a < e and s < b for a, b in self._spans):
                self.pending.append(WindowRequest(s, BACKGROUND, 0))
            self._bg_next += self.bg_stride
        self.pending.sort(key=lambda r: r.start_us)

    def _data_end(self) -> int:
        ends = [r for r in (self._events_reach, self.cochlea.latest_time) if r is not None]
        return max(ends) if ends else 0

    def _cut(self, reach: int, final: bool = False) -> list[CutSample]:
        self._background_up_to(reach)
        out = []
        while self.pending and (final or self.pending[0].start_us + self.window_us <= reach):
            out.append(self._sample(self.pending.pop(0)))
        starts = [r.start_us for r in self.pending[:1]] + (
            [self._bg_next] if self._bg_next is not None else [])
        self._trim(min(starts) if starts else None)
        return out

    def _sample(self, r: WindowRequest) -> CutSample:
        s, e = r.start_us, r.start_us + self.window_us
        parts = []
        for lo, hi, c in self._chunks:
            if hi < s or lo >= e:
                continue
            if lo >= s and hi < e:
                parts.append(c)
            else:
                t = c["t"]
                parts.append(c[(t >= s) & (t < e)])
        ev = np.concatenate(parts) if parts else empty_events(0)  # a copy: shifted below
        ev["t"] -= s
        w = self.cochlea.buffer.window_with_coverage(s, e)
        n = round(self.window_us * self.rate / 1e6)
        pcm = w.samples[:n]
        if len(pcm) < n:
            pcm = np.pad(pcm, (0, n - len(pcm)))
        latest = self.cochlea.latest_time
        within = (self.events_from is not None and self.events_from <= s
                  and self._events_reach is not None and self._events_reach >= e)
        return CutSample(r, ev, pcm, w.coverage, within, latest is not None and latest >= e)

    def _trim(self, keep_from: int | None) -> None:
        """Drop event chunks wholly before the oldest window still to cut."""
        if keep_from is None:
            self._chunks.clear()
            return
        self._chunks = [c for c in self._chunks if c[1] >= keep_from]


def cut_recording(pieces: Iterator[Piece], cutter: WindowCutter) -> Iterator[CutSample]:
    """Every window of a recording, as its pieces stream by."""
    for piece in pieces:
        yield from cutter.push(piece)
    yield from cutter.finish()
