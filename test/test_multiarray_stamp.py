"""Tests of the MultiArray stamp convention (std_msgs audio without a header)."""

from __future__ import annotations

import pytest

from taaf_ros.audio import multiarray_stamp
from taaf_ros.audio.multiarray_stamp import multiarray_stamp_ns, stamped_layout_dims


def test_multiarray_stamp_convention_round_trip():
    from types import SimpleNamespace as D

    dims = [D(label=a, size=b, stride=c) for a, b, c in stamped_layout_dims(80, 17 * 10**17)]
    assert dims[0].label == "samples" and dims[0].size * dims[1].size == 80
    assert multiarray_stamp_ns(dims) == 17 * 10**17
    assert multiarray_stamp_ns([]) is None
    assert multiarray_stamp_ns([D(label="samples", size=80)]) is None
    assert multiarray_stamp_ns([D(label="t_ns=-5", size=1)]) is None
    assert multiarray_stamp_ns([D(label="t_ns=12", size=2)]) is None


def test_multiarray_stamp_on_real_messages():
    std_msgs = pytest.importorskip("std_msgs.msg")
    msg = std_msgs.Int16MultiArray(data=list(range(80)))
    msg.layout.dim = [std_msgs.MultiArrayDimension(label=a, size=b, stride=c)
                      for a, b, c in stamped_layout_dims(80, 1_795_000_000_123_456_789)]
    assert multiarray_stamp_ns(msg.layout.dim) == 1_795_000_000_123_456_789
    assert multiarray_stamp_ns(std_msgs.Int16MultiArray().layout.dim) is None


def test_doctests():
    import doctest

    assert doctest.testmod(multiarray_stamp).failed == 0
