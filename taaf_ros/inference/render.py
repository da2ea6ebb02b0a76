"""The debug picture of one window, as an RGB array (the node wraps it in sensor_msgs/Image)."""

from __future__ import annotations

import numpy as np

from taaf_ros.inference.classifier import WindowResult

MAX_VIEW_SIDE = 4096
"""Sensor sides beyond this are drawn from the network's input instead (a view is W x H x 3)."""


def render_window(res: WindowResult, scale: int = 4, *, events: np.ndarray | None = None,
                  sensor_size: tuple[int, int] | None = None, label: str = "",
                  confidence: float | None = None, modalities: tuple[str, ...] = ()
                  ) -> np.ndarray:
    """uint8 (H, W, 3): the window's events (ON red, OFF green), the audio spike raster
    (channels x time) below, one yellow bar per modality whose length is its attention, and
    the label with its confidence.

    With ``events`` (the window's raw events) and ``sensor_size`` the event picture is at the
    sensor's resolution, pixel for pixel, so it overlays the camera's own image in rviz or
    rqt_image_view; without them it is the network's input frame summed over time, x ``scale``.

    >>> res = WindowResult(np.ones(2) / 2, np.array([0.7, 0.3]), np.zeros((8, 2)),
    ...                    None, None)
    >>> from taaf_ros.events.types import make_events
    >>> ev = make_events([0, 639], [0, 479], [0, 1], [1, 0])
    >>> img = render_window(res, events=ev, sensor_size=(640, 480), label="3", confidence=0.9)
    >>> img.shape[1], img[0, 0].tolist(), img[479, 639].tolist()
    (640, [255, 0, 0], [0, 255, 0])
    """
    parts = []
    if events is not None and sensor_size is not None and max(sensor_size) <= MAX_VIEW_SIDE:
        parts.append(_sensor_view(events, sensor_size))
    elif res.events_frame is not None:
        f = res.events_frame.sum(axis=0)  # (2, H, W)
        parts.append(_colour(f[1], f[0]).repeat(scale, 0).repeat(scale, 1))
    width = max([p.shape[1] for p in parts] + [136])
    if res.audio_frame is not None:
        a = res.audio_frame.sum(axis=1).T  # (C, T)
        raster = (255 * a / max(float(a.max()), 1.0)).astype(np.uint8)
        raster = np.repeat(raster, max(1, width // raster.shape[1]), 1)[:, :width]
        parts.append(np.stack([raster] * 3, -1).repeat(2, 0))
    bars = np.zeros((8 * len(res.modality_attention), width, 3), np.uint8)
    for i, a in enumerate(res.modality_attention):
        bars[8 * i + 1: 8 * i + 7, : int(width * float(a))] = (255, 255, 0)
    parts.append(bars)
    if label:
        parts.append(_caption(label, confidence, res.modality_attention, modalities, width))
    parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in parts]
    return np.concatenate(parts, 0)


def _colour(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    norm = max(float(on.max(initial=0)), float(off.max(initial=0)), 1.0)
    rgb = np.zeros((*on.shape, 3), np.uint8)
    rgb[..., 0] = (255 * on / norm).astype(np.uint8)
    rgb[..., 1] = (255 * off / norm).astype(np.uint8)
    return rgb


def _sensor_view(events: np.ndarray, sensor_size: tuple[int, int]) -> np.ndarray:
    """Per-pixel ON and OFF counts at the sensor's resolution (events outside it dropped)."""
    w, h = int(sensor_size[0]), int(sensor_size[1])
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    inside = (x < w) & (y < h)
    idx = (y * w + x)[inside]
    on = events["p"][inside] != 0
    counts_on = np.bincount(idx[on], minlength=w * h).reshape(h, w)
    counts_off = np.bincount(idx[~on], minlength=w * h).reshape(h, w)
    return _colour(counts_on, counts_off)


def _caption(label: str, confidence: float | None, attention: np.ndarray,
             modalities: tuple[str, ...], width: int) -> np.ndarray:
    """A 14-pixel strip: 'label 0.93 | events 0.62 audio 0.38' in white (Pillow's font)."""
    from PIL import Image, ImageDraw

    text = label if confidence is None else f"{label} {confidence:.2f}"
    if modalities:
        text += " | " + " ".join(f"{m} {float(a):.2f}" for m, a in
                                 zip(modalities, attention, strict=False))
    img = Image.new("RGB", (width, 14))
    ImageDraw.Draw(img).text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(img, dtype=np.uint8)
