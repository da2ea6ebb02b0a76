"""The one event type used everywhere: a structured numpy array (x, y, t, p).

Audio events from the cochlea front end use the same dtype with ``x`` = frequency channel and
``y`` = 0, so that one binning path serves both modalities.
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
"""x, y: pixel (uint16); t: microseconds (int64); p: polarity, 1 = ON (brighter / louder)."""


def empty_events(n: int = 0) -> np.ndarray:
    """A zero-filled event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Build an event array from four equally long sequences (cast to the field types)."""
    x = np.asarray(x)
    n = x.shape[0]
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events
