"""The taaf_ros stamp convention for std_msgs MultiArray audio (no header): written by the
replay node, read by the perception node."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

STAMP_LABEL_PREFIX = "t_ns="
"""taaf_ros convention for stamping std_msgs MultiArray audio (which has no header): the
layout carries a dimension of size 1 labelled ``t_ns=<int>``, the ROS time (ns) of the chunk's
first sample. See :func:`stamped_layout_dims` and docs/ros.md."""


def stamped_layout_dims(n_samples: int, t_ns: int) -> list[tuple[str, int, int]]:
    """(label, size, stride) of the layout dims of a mono chunk stamped at t_ns.

    ``[("samples", n, n), ("t_ns=<t_ns>", 1, 1)]``: the data are an n x 1 array (so the dims
    stay true to the data for any MultiArray reader) and the second dim's label holds the stamp.

    >>> stamped_layout_dims(80, 1_700_000_000_000_000_000)
    [('samples', 80, 80), ('t_ns=1700000000000000000', 1, 1)]
    """
    n = int(n_samples)
    return [("samples", n, n), (f"{STAMP_LABEL_PREFIX}{int(t_ns)}", 1, 1)]


def multiarray_stamp_ns(dims: Iterable[Any]) -> int | None:
    """The stamp (ns) of a MultiArray layout written by :func:`stamped_layout_dims`, else None.

    ``dims`` are ``layout.dim`` (objects with ``label`` and ``size``). A label that starts with
    ``t_ns=`` but does not hold a positive integer, or a stamp dim whose size is not 1, counts
    as no stamp (the caller falls back to the receipt time).

    >>> from types import SimpleNamespace as D
    >>> multiarray_stamp_ns([D(label="samples", size=80), D(label="t_ns=1234", size=1)])
    1234
    >>> multiarray_stamp_ns([D(label="t_ns=soon", size=1)]) is None
    True
    """
    for d in dims:
        label = str(getattr(d, "label", ""))
        if label.startswith(STAMP_LABEL_PREFIX) and int(getattr(d, "size", 1)) == 1:
            digits = label[len(STAMP_LABEL_PREFIX):]
            if digits.isdigit() and int(digits) > 0:
                return int(digits)
            return None
    return None
