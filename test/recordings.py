"""Recordings as a robot makes them, from AV-digits samples, for the dataset and deploy tests.

A timeline of samples (each digit's events and speech at its place, ``gap_s`` apart) with a
little background activity everywhere, written as

- a ROS 2 bag as ``ros2 bag record`` of metavision_driver and audio_capture writes it:
  EventPacket evt3 (one packet per 10 ms, the sensor clock from 0, header stamp = ROS time of
  the first event), AudioDataStamped (raw S16LE or MP3 frames, stamped at their first sample)
  with its latched AudioInfo, each logged a few ms after its stamp; or
- files as a Prophesee camera and a sound recorder write them: a ``.raw`` EVT 3.0 file and a
  WAV starting with the first event.

Both come with the labels CSV of the samples' spans (relative to the recording's start).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from taaf_ros.data.bags import typestore, write_bag
from taaf_ros.data.readers import EadSample, write_raw_evt3
from taaf_ros.events import encode_evt3
from taaf_ros.events.types import EVENT_DTYPE

T0_NS = 1_700_000_000_000_000_000  # a multiple of the 50 ms window grid
EVENTS_TOPIC, AUDIO_TOPIC, INFO_TOPIC = "/event_camera/events", "/audio/audio_stamped", \
    "/audio/audio_info"


@dataclass
class Timeline:
    """Events (sensor µs from 0), audio at ``rate`` from t = 0, and (start_s, end_s, label)."""

    events: np.ndarray
    audio: np.ndarray
    rate: int
    spans: list[tuple[float, float, str]]
    sensor: tuple[int, int]


def timeline(samples: list[tuple[EadSample, str]], *, lead_s: float = 0.5, gap_s: float = 0.9,
             window_s: float = 0.6, rate: int = 16000, noise_hz: float = 300.0,
             sensor: tuple[int, int] = (34, 34), seed: int = 0) -> Timeline:
    """Samples back to back at ``lead_s + i * (window_s + gap_s)``, on a quiet background."""
    rng = np.random.default_rng(seed)
    step = window_s + gap_s
    duration = lead_s + len(samples) * step
    n_noise = int(noise_hz * duration)
    noise = np.zeros(n_noise + 1, EVENT_DTYPE)
    noise["x"] = rng.integers(0, sensor[0], n_noise + 1)
    noise["y"] = rng.integers(0, sensor[1], n_noise + 1)
    noise["t"] = np.sort(rng.integers(0, int(duration * 1e6), n_noise + 1))
    noise["t"][0] = 0  # the recording starts with its first event
    noise["p"] = rng.integers(0, 2, n_noise + 1)
    parts, spans = [noise], []
    audio = (rng.standard_normal(int(duration * rate)) * 1e-3).astype(np.float32)
    for i, (s, label) in enumerate(samples):
        at = lead_s + i * step
        ev = s.events.copy()
        ev["t"] += round(at * 1e6)
        parts.append(ev)
        pcm = resample_poly(s.pcm, rate, s.sample_rate).astype(np.float32)
        k = round(at * rate)
        pcm = pcm[: len(audio) - k]
        audio[k:k + len(pcm)] += pcm
        spans.append((round(at, 6), round(at + window_s, 6), label))
    ev = np.concatenate(parts)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    return Timeline(ev, np.clip(audio, -1, 1), rate, spans, sensor)


def write_labels(path: Path, recording: str, spans: list[tuple[float, float, str]],
                 extra: str = "") -> Path:
    rows = [f"{recording},{a},{b},{label}{extra}" for a, b, label in spans]
    path.write_text("recording,start,end,label" + (",split" if extra else "") + "\n"
                    + "\n".join(rows) + "\n")
    return path


def bag_messages(tl: Timeline, *, coding: str = "wave", packet_s: float = 0.01,
                 chunk_s: float = 0.02, t0_ns: int = T0_NS, sensor_reset_us: int | None = None,
                 audio_delay_ms: float = 3.0):
    """The timeline's (topic, type, log ns, message), in log order. ``sensor_reset_us``: the
    camera's time base restarts from 0 at that time of the recording (its header stamps go on,
    as after a camera reset under a running driver). ``audio_delay_ms``: how long after its
    last sample an audio message is delivered (audio_capture's MP3: about 35 ms more than a
    frame's 72)."""
    store = typestore()
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def header(ns: int):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")

    msgs = [(INFO_TOPIC, "audio_common_msgs/msg/AudioInfo", t0_ns,
             T["audio_common_msgs/msg/AudioInfo"](channels=1, sample_rate=tl.rate,
                                                  sample_format="S16LE", bitrate=192,
                                                  coding_format=coding))]
    t = tl.events["t"]
    step = round(packet_s * 1e6)
    clock = 0
    for seq, a in enumerate(range(0, int(t[-1]) + 1, step)):
        lo, hi = np.searchsorted(t, [a, a + step])
        ev = tl.events[lo:hi]
        stamp = t0_ns + (int(ev["t"][0]) if len(ev) else a + step) * 1000
        if sensor_reset_us is not None and a >= sensor_reset_us:
            if a - step < sensor_reset_us:
                clock = 0  # the camera's clock starts again
            ev = ev.copy()
            ev["t"] -= sensor_reset_us
        words = encode_evt3(ev, clock) if len(ev) else b""
        clock = int(ev["t"][-1]) if len(ev) else clock
        msg = T["event_camera_msgs/msg/EventPacket"](
            header=header(stamp), height=tl.sensor[1], width=tl.sensor[0], seq=seq,
            time_base=stamp, encoding="evt3", is_bigendian=False,
            events=np.frombuffer(words, np.uint8).copy())
        msgs.append((EVENTS_TOPIC, "event_camera_msgs/msg/EventPacket",
                     t0_ns + (a + step) * 1000 + 2_000_000, msg))
    Audio, Data = T["audio_common_msgs/msg/AudioDataStamped"], T["audio_common_msgs/msg/AudioData"]
    if coding == "mp3":
        from test_audio_compressed import encode_mp3

        pieces = encode_mp3(tl.audio, tl.rate)
        n = 1152  # samples an MP3 frame covers
    else:
        n = round(chunk_s * tl.rate)
        s16 = (tl.audio * 32767).astype("<i2")
        pieces = [(s16[i:i + n].tobytes(), i) for i in range(0, len(s16), n)]
    for data, first in pieces:
        stamp = t0_ns + max(first, 0) * 10**9 // tl.rate
        log = stamp + n * 10**9 // tl.rate + round(audio_delay_ms * 1e6)
        msgs.append((AUDIO_TOPIC, "audio_common_msgs/msg/AudioDataStamped", log,
                     Audio(header=header(stamp),
                           audio=Data(data=np.frombuffer(data, np.uint8).copy()))))
    msgs.sort(key=lambda m: m[2])
    return msgs


def write_robot_bag(path: Path, tl: Timeline, *, coding: str = "wave",
                    storage: str = "sqlite3") -> Path:
    return write_bag(path, bag_messages(tl, coding=coding), storage)


def write_camera_files(folder: Path, name: str, tl: Timeline) -> Path:
    """``<name>.raw`` (EVT 3.0) and ``<name>.wav`` (16-bit PCM); returns the .raw path."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / f"{name}.raw"
    write_raw_evt3(raw, tl.events, tl.sensor)
    wavfile.write(folder / f"{name}.wav", tl.rate, (tl.audio * 32767).astype(np.int16))
    return raw


def offline_evaluation(root: Path, classifier) -> list[tuple[int, str, np.ndarray]]:
    """(window start ns, sample id, class probabilities) of every sample of a taaf_dataset
    dataset, through the offline front end: what the node's windows must equal."""
    return [(start, sid, res.probs) for start, sid, res in offline_results(root, classifier)]


def offline_results(root: Path, classifier) -> list[tuple[int, str, Any]]:
    """(window start ns, sample id, the classifier's whole WindowResult) of every sample of a
    taaf_dataset dataset, through the offline front end."""
    import csv

    from taaf_ros.data.readers import EadDataset
    from taaf_ros.frontend import sample_tensors

    rows = csv.DictReader((Path(root) / "samples.csv").read_text().splitlines())
    start_of = {r["id"]: int(r["start_ns"]) for r in rows}
    out = []
    for split in sorted({d.name for d in Path(root).iterdir() if d.is_dir()}):
        data = EadDataset(root, split)
        for i in range(len(data)):
            s = data[i]
            ev, au = sample_tensors(s.events, data.sensor_size, s.pcm, s.sample_rate,
                                    classifier.frontend)
            out.append((start_of[s.id], s.id, classifier.classify_tensors(ev, au)))
    return out
