"""The debug picture of one window, as an RGB array (the node wraps it in sensor_msgs/Image)."""

from __future__ import annotations

import numpy as np

from taaf_ros.inference.pipeline import WindowResult


def render_window(res: WindowResult, scale: int = 4) -> np.ndarray:
    """uint8 (H, W, 3): the event frame summed over time (ON red, OFF green, x ``scale``), the
    audio spike raster (channels x time) below it, and one yellow bar per modality whose
    length is its attention."""
    parts = []
    if res.events_frame is not None:
        f = res.events_frame.sum(axis=0)  # (2, H, W)
        norm = max(float(f.max()), 1.0)
        rgb = np.zeros((*f.shape[1:], 3), np.uint8)
        rgb[..., 0] = (255 * f[1] / norm).astype(np.uint8)
        rgb[..., 1] = (255 * f[0] / norm).astype(np.uint8)
        parts.append(rgb.repeat(scale, 0).repeat(scale, 1))
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
    parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in parts]
    return np.concatenate(parts, 0)
