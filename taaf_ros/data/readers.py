"""Readers for event files and for datasets in the EAD layout.

Every event reader returns ``EVENT_DTYPE`` (x, y uint16; t int64 µs; p uint8, 1 = ON) and raises
``EventFileError`` (a ``ValueError``) on a corrupt or unrecognised file.

EAD layout::

    <root>/meta.json                       classes, sensor_size, audio_rate, ...
    <root>/<split>/<class>/<id>.events.npy structured events
    <root>/<split>/<class>/<id>.wav        the matching audio
    <root>/samples.csv                     optional: each id's group (taaf_dataset writes it)

docs/data.md describes the layout in full (taaf_dataset's version 2 adds the optional files).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from taaf_ros.audio.wav import read_wav
from taaf_ros.defaults import FSDD_RATE_HZ
from taaf_ros.events.types import EVENT_DTYPE, empty_events

NMNIST_OVERFLOW_Y = 240
"""N-MNIST marks a timestamp wrap with a record whose y is 240 (its sensor has 34 rows)."""
_NMNIST_T_BITS = 23


class EventFileError(ValueError):
    """An event file that cannot be read: wrong size, missing fields, bad values."""


def _to_event_dtype(x, y, t, p, source: str) -> np.ndarray:
    """Cast field arrays to EVENT_DTYPE, refusing values that would not fit."""
    x, y, t, p = (np.asarray(a) for a in (x, y, t, p))
    n = x.shape[0]
    if not (x.ndim == y.ndim == t.ndim == p.ndim == 1) or not (
            y.shape[0] == t.shape[0] == p.shape[0] == n):
        raise EventFileError(f"{source}: fields x, y, t, p must be 1-D and equally long")
    for name, a in (("x", x), ("y", y)):
        if n and (a.min() < 0 or a.max() > np.iinfo(np.uint16).max):
            raise EventFileError(f"{source}: {name} out of uint16 range")
    events = empty_events(n)
    events["x"], events["y"], events["t"] = x, y, t
    events["p"] = p > 0  # any non-zero polarity (or True) is ON
    return events


# ---------------------------------------------------------------- N-MNIST .bin
def decode_nmnist_bin(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode N-MNIST / N-Caltech101 ``.bin`` bytes.

    Each event is 40 bits big-endian: x (8), y (8), p (1, 1 = ON), t (23, µs). A record with
    y = 240 marks a wrap of the 23-bit clock: 2**23 µs is added to every later event.
    """
    if len(raw) % 5:
        raise EventFileError(f"{source}: {len(raw)} bytes is not a whole number of 5-byte events")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == NMNIST_OVERFLOW_Y
    t = t + np.cumsum(overflow) * (1 << _NMNIST_T_BITS)
    keep = ~overflow
    return _to_event_dtype(x[keep], y[keep], t[keep], p[keep], source)


def read_nmnist_bin(path: str | Path) -> np.ndarray:
    """Read an N-MNIST ``.bin`` file (see ``decode_nmnist_bin``)."""
    return decode_nmnist_bin(Path(path).read_bytes(), str(path))


def encode_nmnist_bin(events: np.ndarray) -> bytes:
    """Encode events as N-MNIST ``.bin`` bytes; the inverse of ``decode_nmnist_bin``.

    Raises:
        ValueError: x or y above 255, y equal to the overflow marker 240, negative or
            decreasing times.
    """
    ev = np.asarray(events)
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    t, p = ev["t"].astype(np.int64), (ev["p"] > 0).astype(np.int64)
    if ev.size and (x.max() > 255 or y.max() > 255 or np.any(y == NMNIST_OVERFLOW_Y)):
        raise ValueError("N-MNIST .bin holds x, y < 256 and y != 240")
    if ev.size and (t.min() < 0 or np.any(np.diff(t) < 0)):
        raise ValueError("N-MNIST .bin needs non-negative, time-sorted events")
    wraps = t >> _NMNIST_T_BITS
    n_markers = int(wraps[-1]) if ev.size else 0
    rec = np.zeros((ev.size + n_markers, 5), np.uint8)
    # Position of each event after the overflow markers inserted before it.
    pos = np.arange(ev.size) + wraps
    low = t & ((1 << _NMNIST_T_BITS) - 1)
    rec[pos, 0], rec[pos, 1] = x, y
    rec[pos, 2] = (p << 7) | (low >> 16)
    rec[pos, 3] = (low >> 8) & 0xFF
    rec[pos, 4] = low & 0xFF
    # Marker k (1-based) goes just before the first event with wraps >= k.
    for k in range(1, n_markers + 1):
        at = int(np.searchsorted(wraps, k)) + k - 1
        rec[at] = (0, NMNIST_OVERFLOW_Y, 0, 0, 0)
    return rec.tobytes()


def write_nmnist_bin(path: str | Path, events: np.ndarray) -> None:
    """Write events as an N-MNIST ``.bin`` file (for tests and exports)."""
    Path(path).write_bytes(encode_nmnist_bin(events))


# ---------------------------------------------------------------- .npy
def read_npy_events(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` of structured events (fields x, y, t, p; any integer/bool types).

    An unstructured (N, 4) integer array is read as columns x, y, t, p.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EventFileError(f"{path}: not a readable .npy file ({exc})") from exc
    if arr.dtype == EVENT_DTYPE and arr.ndim == 1:
        return arr
    if arr.dtype.names:
        missing = {"x", "y", "t", "p"} - set(arr.dtype.names)
        if missing:
            raise EventFileError(f"{path}: missing fields {sorted(missing)}")
        return _to_event_dtype(arr["x"], arr["y"], arr["t"], arr["p"], str(path))
    if arr.ndim == 2 and arr.shape[1] == 4 and np.issubdtype(arr.dtype, np.integer):
        return _to_event_dtype(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], str(path))
    raise EventFileError(f"{path}: expected structured events or an (N, 4) array, "
                         f"got {arr.dtype} {arr.shape}")


# ---------------------------------------------------------------- HDF5
def read_h5_events(path: str | Path, group: str | None = None) -> np.ndarray:
    """Read events from HDF5: datasets ``x, y, t, p`` in ``group`` (or the root, or ``events``),
    or a compound dataset ``events`` (also ``CD/events``, the Prophesee layout) with those
    fields. Times must already be µs.
    """
    import h5py  # optional dependency: only this reader needs it

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        candidates = [group] if group else ["", "events", "CD/events", "CD"]
        for name in candidates:
            if name and name not in f:
                continue
            node = f[name] if name else f
            if isinstance(node, h5py.Dataset) and node.dtype.names:
                data = node[()]
                if {"x", "y", "t", "p"} <= set(data.dtype.names):
                    return _to_event_dtype(data["x"], data["y"], data["t"], data["p"], str(path))
            elif isinstance(node, h5py.Group) and all(k in node for k in "xytp"):
                return _to_event_dtype(*(node[k][()] for k in "xytp"), str(path))
    raise EventFileError(f"{path}: no x, y, t, p datasets or compound 'events' dataset")


# ---------------------------------------------------------------- AEDAT4
def read_aedat4(path: str | Path, stream_id: int | None = None
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """(events, (width, height)) of one event stream of an AEDAT4 file (iniVation's format),
    read with the ``aedat`` library (Rust, LZ4/zstd packets). ``stream_id``: which event
    stream (default: the first); frames, IMU and trigger streams are skipped. Times are the
    file's, in µs (absolute: AEDAT4 stamps since the Unix epoch)."""
    try:
        import aedat  # optional dependency: only this reader needs it
    except ImportError as exc:
        raise EventFileError(f"{path}: reading AEDAT4 needs the 'aedat' package "
                             "(pip install 'taaf_ros[files]')") from exc
    try:
        decoder = aedat.Decoder(str(path))
        streams = {int(k): v for k, v in decoder.id_to_stream().items()
                   if v.get("type") == "events"}
        if not streams:
            raise EventFileError(f"{path}: no event stream in this AEDAT4 file")
        sid = next(iter(sorted(streams))) if stream_id is None else int(stream_id)
        if sid not in streams:
            raise EventFileError(f"{path}: no event stream {sid} (event streams: "
                                 f"{sorted(streams)})")
        parts = [pkt["events"] for pkt in decoder
                 if pkt["stream_id"] == sid and "events" in pkt]
    except EventFileError:
        raise
    except BaseException as exc:  # noqa: BLE001
        # The Rust reader panics on some malformed files: pyo3's PanicException derives from
        # BaseException, not Exception. Interrupts and exits pass through.
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise EventFileError(f"{path}: not a readable AEDAT4 file "
                             f"({type(exc).__name__}: {exc})") from exc
    size = (int(streams[sid]["width"]), int(streams[sid]["height"]))
    if not parts:
        return empty_events(0), size
    ev = np.concatenate(parts)
    return _to_event_dtype(ev["x"], ev["y"], ev["t"], ev["on"], str(path)), size


# ---------------------------------------------------------------- Prophesee .raw (EVT 3.0)
RAW_CHUNK_BYTES = 1 << 22  # 4 MiB of words per decoded chunk: ~2 M events


def read_raw_header(f: BinaryIO, source: str) -> tuple[dict[str, str], tuple[int, int]]:
    """The ``% key value`` header of a Prophesee ``.raw`` file (``f`` left at the first data
    byte) and the sensor (width, height) it declares. Only EVT 3.0 is read."""
    header: dict[str, str] = {}
    while True:
        pos = f.tell()
        first = f.read(1)
        if first != b"%":
            f.seek(pos)
            break
        line = f.readline().decode("ascii", "replace").strip()
        if line == "end":
            break
        key, _, value = line.partition(" ")
        header[key] = value.strip()
    fmt = header.get("format", "")
    evt = header.get("evt", "")
    if not (fmt.upper().startswith("EVT3") or evt == "3.0"):
        raise EventFileError(f"{source}: not an EVT 3.0 .raw file (header evt {evt!r}, format "
                             f"{fmt!r}); other RAW formats are not read")
    fields = dict(kv.split("=", 1) for kv in fmt.split(";")[1:] if "=" in kv)
    try:
        if "width" in fields:
            size = (int(fields["width"]), int(fields["height"]))
        else:
            w, h = header["geometry"].lower().split("x")
            size = (int(w), int(h))
    except (KeyError, ValueError):
        raise EventFileError(f"{source}: the header declares no sensor size (format "
                             "...;width=W;height=H or geometry WxH)") from None
    return header, size


def read_raw_evt3_chunks(path: str | Path, chunk_bytes: int = RAW_CHUNK_BYTES
                         ) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """(sensor size, events chunk by chunk) of a Prophesee ``.raw`` EVT 3.0 recording,
    decoded by one :class:`~taaf_ros.events.EventDecoder` (the node's), so memory is
    bounded by ``chunk_bytes`` whatever the file's size. Times are the sensor's, µs."""
    from taaf_ros.events import EventDecoder

    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise EventFileError(f"{path}: cannot open ({exc})") from exc
    try:
        _, size = read_raw_header(f, str(path))
    except BaseException:
        f.close()
        raise

    def chunks() -> Iterator[np.ndarray]:
        decoder = EventDecoder("evt3", size[0], size[1])
        with f:
            while block := f.read(chunk_bytes - chunk_bytes % 2):
                yield decoder.decode(block)
        if decoder.stats.truncated_bytes:
            raise EventFileError(f"{path}: ends inside an EVT 3.0 word (a truncated file)")

    return size, chunks()


def read_raw_evt3(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """All events of a Prophesee ``.raw`` EVT 3.0 file and its sensor (width, height)."""
    size, chunks = read_raw_evt3_chunks(path)
    parts = list(chunks)
    return (np.concatenate(parts) if parts else empty_events(0)), size


def write_raw_evt3(path: str | Path, events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    """Write events as a ``.raw`` file as a Prophesee camera (Metavision) writes EVT 3.0:
    the ``%`` header, then the word stream."""
    from taaf_ros.events.evt3 import encode_evt3

    w, h = int(sensor_size[0]), int(sensor_size[1])
    head = (f"% camera_integrator_name Prophesee\n% evt 3.0\n% format EVT3;height={h};"
            f"width={w}\n% generation 4.2\n% geometry {w}x{h}\n"
            "% integrator_name Prophesee\n% end\n")
    Path(path).write_bytes(head.encode("ascii") + encode_evt3(events))


def read_events(path: str | Path) -> np.ndarray:
    """Read an event file, choosing the reader by suffix (.bin, .npy, .h5/.hdf5, .aedat4,
    .raw)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return read_nmnist_bin(path)
    if suffix == ".npy":
        return read_npy_events(path)
    if suffix in (".h5", ".hdf5"):
        return read_h5_events(path)
    if suffix == ".aedat4":
        return read_aedat4(path)[0]
    if suffix == ".raw":
        return read_raw_evt3(path)[0]
    raise EventFileError(f"{path}: unknown event file type {suffix!r}")


# ---------------------------------------------------------------- EAD layout
class EadSample(NamedTuple):
    """One raw sample: events (EVENT_DTYPE), pcm float32 mono, sample_rate (Hz), label, id;
    repaired: audio values the WAV reader had to fix (NaN or infinite zeroed, clipped)."""

    events: np.ndarray
    pcm: np.ndarray
    sample_rate: int
    label: int
    id: str
    repaired: int = 0


class EadDataset:
    """Samples of one split of a dataset in the EAD layout, as raw arrays.

    Labels index ``meta.json``'s ``classes`` (else the sorted class folders). Samples are listed
    in (class, id) order; a sample needs both ``<id>.events.npy`` and ``<id>.wav``.

    Args:
        root: dataset root (holds ``meta.json`` and one folder per split).
        split: split folder name, e.g. ``"train"`` or ``"test"``.
    """

    def __init__(self, root: str | Path, split: str) -> None:
        self.root = Path(root)
        self.split = split
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"no split folder {split_dir}")
        meta_path = self.root / "meta.json"
        self.meta: dict = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.classes: list[str] = [str(c) for c in self.meta.get("classes", [])] or sorted(
            d.name for d in split_dir.iterdir() if d.is_dir())
        index = {c: i for i, c in enumerate(self.classes)}
        self.modalities: tuple[str, ...] = tuple(self.meta.get("modalities",
                                                               ("events", "audio")))
        self.samples: list[tuple[Path, Path, int, str]] = []
        # A sample is its .events.npy and its .wav; a one-modality dataset (meta.json
        # "modalities") has only that modality's file, and the other reads as empty.
        suffix = ".events.npy" if "events" in self.modalities else ".wav"
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            if class_dir.name not in index:
                raise ValueError(f"class folder {class_dir.name!r} not in meta.json classes")
            for path in sorted(class_dir.glob(f"*{suffix}")):
                sid = path.name[: -len(suffix)]
                ev_path, wav = class_dir / f"{sid}.events.npy", class_dir / f"{sid}.wav"
                if all(p.is_file() for m, p in (("events", ev_path), ("audio", wav))
                       if m in self.modalities):
                    self.samples.append((ev_path, wav, index[class_dir.name], sid))
        groups = self.root / "samples.csv"
        self.groups: dict[str, str] = {}
        #: id -> (recording, window start ns) where samples.csv gives them (taaf_dataset)
        self.places: dict[str, tuple[str, int]] = {}
        if groups.is_file():
            import csv

            rows = list(csv.DictReader(groups.read_text().splitlines()))
            self.groups = {r["id"]: r["group"] for r in rows if r.get("id") and r.get("group")}
            self.places = {r["id"]: (r["recording"], int(r["start_ns"])) for r in rows
                           if r.get("id") and r.get("recording") and r.get("start_ns")}

    @property
    def sensor_size(self) -> tuple[int, int]:
        """(width, height) of the event sensor from meta.json (default 34 x 34)."""
        w, h = self.meta.get("sensor_size", [34, 34])
        return int(w), int(h)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> EadSample:
        ev_path, wav_path, label, sid = self.samples[i]
        rate = int(self.meta.get("audio_rate", FSDD_RATE_HZ))
        pcm, repaired = np.zeros(0, np.float32), 0
        if "audio" in self.modalities:
            audio = read_wav(wav_path)
            pcm, rate, repaired = audio.samples, audio.sample_rate, audio.sanitised
        events = read_npy_events(ev_path) if "events" in self.modalities else empty_events(0)
        return EadSample(events, pcm, rate, label, sid, repaired)
