"""The live front end: decoded streams in, each window's spike tensors out. It knows nothing
of the network (the session, ``taaf_ros.inference.session``, is the one place that calls it).

Events go into the streaming front end (:class:`~taaf_ros.stream.event_frames.
StreamingEventFrames`: binned once on arrival) wherever the window, its T bins and the hop share
a useful common step; otherwise (:func:`~taaf_ros.stream.event_frames.streaming_step` is None)
into an event ring buffer, and each window is binned from it, subsampled to
``max_events_per_window``. Audio goes into the streaming cochlea
(:class:`~taaf_ros.stream.audio_frames.StreamingCochlea`: resampled once on arrival, each
analysis frame computed once); what it cannot share between windows without changing what the
network sees (the frames at a window's edges, the envelope and level crossings, which start at
each window's first sample as in training) it computes per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from taaf_ros.events.binning import fit_events
from taaf_ros.frontend import FrontEndConfig, event_tensor
from taaf_ros.params import PERCEPTION_PARAMS, defaults
from taaf_ros.stream.audio_frames import StreamingCochlea
from taaf_ros.stream.buffers import EventRingBuffer
from taaf_ros.stream.event_frames import StreamingEventFrames, streaming_step
from taaf_ros.stream.scheduler import WindowCut

_NODE_DEFAULTS = defaults(PERCEPTION_PARAMS)  # the parameter table: one source


@dataclass
class LiveSettings:
    """hop_us: window hop. history_us: how far back event counts are kept (window + waiting).
    event_front_end: "auto" (streaming where :func:`streaming_step` allows) or "per_window".
    event_buffer_capacity: events held where windows are binned per window.
    max_events_per_window: subsampling cap of that path.
    audio_buffer_s: audio held (s, at the model's sample rate).
    Defaults: the perception node's parameters of the same names."""

    hop_us: int
    history_us: int
    event_front_end: str = _NODE_DEFAULTS["event_front_end"]
    event_buffer_capacity: int = _NODE_DEFAULTS["event_buffer_capacity"]
    max_events_per_window: int = _NODE_DEFAULTS["max_events_per_window"]
    audio_buffer_s: float = _NODE_DEFAULTS["audio_buffer_s"]


class LiveFrontEnd:
    """Holds the front-end state between messages and gives each window's tensors.

    ``push_*`` run on the decode thread, :meth:`window_tensors` on the inference thread; the
    streaming front ends take their own locks.
    """

    def __init__(self, frontend: FrontEndConfig, sensor_size: tuple[int, int],
                 settings: LiveSettings) -> None:
        self.frontend = fe = frontend
        self.settings = settings
        step = (streaming_step(fe.window_us, fe.n_time_bins, settings.hop_us)
                if settings.event_front_end == "auto" else None)
        self.streaming = step is not None
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        self.frames = (StreamingEventFrames(self.sensor_size, fe.input_size, fe.fit_mode,
                                            fe.window_us, fe.n_time_bins, step,
                                            settings.history_us) if step else None)
        self.event_buf = None if step else EventRingBuffer(settings.event_buffer_capacity)
        self.outside_sensor = 0  # per-window path: events outside the sensor or the crop
        self.raw: EventRingBuffer | None = None  # see keep_raw_events
        self.audio = StreamingCochlea(fe, settings.audio_buffer_s)

    @property
    def mode(self) -> str:
        return "streaming" if self.streaming else "per-window"

    def keep_raw_events(self, capacity: int) -> None:
        """Keep the last ``capacity`` events as recorded (0: none), for a debug view of each
        window at the sensor's resolution; memory 21 bytes an event, only while asked for."""
        if capacity <= 0:
            self.raw = None
        elif self.raw is None or self.raw.capacity != capacity:
            self.raw = EventRingBuffer(capacity)

    def push_events(self, events: np.ndarray, sensor_size: tuple[int, int]) -> None:
        """Events recorded on a sensor of ``sensor_size`` (that message's own: a size holds
        for the events it came with, never for later ones)."""
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        raw = self.raw
        if raw is not None and len(events):
            raw.push(events)
        if self.frames is not None:
            self.frames.push(events, self.sensor_size)
        elif len(events):
            # Mapped onto the model's input on arrival, so that the ring holds one geometry.
            fe = self.frontend
            fitted, _ = fit_events(events, (*self.sensor_size, 2), fe.input_size,
                                   mode=fe.fit_mode)
            self.outside_sensor += len(events) - len(fitted)
            self.event_buf.push(fitted)

    def push_audio(self, samples: np.ndarray, start_us: int, sample_rate: int) -> int | None:
        """Append a chunk; return the time (µs) up to which audio is now ready, or None."""
        self.audio.push(samples, start_us, sample_rate)
        return self.audio.latest_time

    def _event_input(self, w: WindowCut) -> tuple[np.ndarray, int]:
        fe = self.frontend
        if self.frames is not None:
            return self.frames.window_tensor(w.start_us, fe.max_count)
        ev = self.event_buf.window(w.start_us, w.end_us, self.settings.max_events_per_window)
        return event_tensor(ev, fe.input_size, w.start_us, fe), len(ev)

    def window_tensors(self, w: WindowCut) -> tuple[np.ndarray | None, int,
                                                    np.ndarray | None, float]:
        """(event tensor, events in it, audio tensor, audio coverage) of the window, each
        tensor None where its modality is not present: what the session feeds the network,
        and what a training sample of that window holds (taaf_dataset)."""
        ev_present, au_present = w.present
        ev = au = None
        n_events, coverage = 0, 0.0
        if ev_present:
            ev, n_events = self._event_input(w)
        if au_present and self.audio.latest_time is not None:
            au, coverage = self.audio.window_tensor(w.start_us, w.end_us)
        return ev, n_events, au, coverage

    def raw_window(self, w: WindowCut) -> np.ndarray | None:
        """The window's events as recorded, at the sensor's resolution (only while
        :meth:`keep_raw_events` asks for them)."""
        raw = self.raw
        return None if raw is None else raw.window(w.start_us, w.end_us,
                                                    self.settings.max_events_per_window)

    def stats(self) -> dict[str, Any]:
        """Buffer and front-end counters for /diagnostics."""
        out: dict[str, Any] = {"events.front_end": self.mode}
        if self.frames is not None:
            st = self.frames.stats
            out |= {"events.binned": st.binned, "events.outside_sensor": st.outside_sensor,
                    "events.too_late": st.too_late, "events.size_changes": st.size_changes}
        else:
            b = self.event_buf
            st = b.stats
            out |= {"events.size": len(b), "events.capacity": b.capacity,
                    "events.outside_sensor": self.outside_sensor,
                    "events.overwritten": st.overwritten, "events.late_dropped": st.late_dropped,
                    "events.subsampled": st.subsampled}
        buf, au, fr = self.audio.buffer, self.audio.buffer_stats, self.audio.stats
        out |= {"audio.size": len(buf), "audio.capacity": buf.capacity,
                "audio.overwritten": au.overwritten, "audio.gaps": au.gaps,
                "audio.overlap_dropped": au.overlap_dropped,
                "audio.frames_computed": fr.frames_computed,
                "audio.frames_reused": fr.frames_reused,
                "audio.resampler_restarts": fr.resampler_restarts,
                "audio.input_overlap_dropped": fr.overlap_dropped}
        return out
