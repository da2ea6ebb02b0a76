"""glibc's allocator set for CPU training's large, short-lived tensors.

A CPU training step allocates and frees tensors of a few MB each (a LIF layer's spikes and
membrane, a convolution's output, their gradients). With glibc's defaults freed blocks of that
size can go back to the kernel (blocks served by mmap, a trimmed heap), and the next step takes
page faults to get them again: 7 ms of a 61 ms step on the 2-core CPU (B=32). Keeping freed
memory in the process removes that; the price is that the process keeps its peak working set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MiB come from the heap
_TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept up to 1 GiB
_TOP_PAD = 64 << 20  # the heap grows in steps of 64 MiB


def retain_freed_memory() -> bool:
    """Have glibc serve blocks up to 32 MiB from its heap and keep freed memory; False (and
    nothing changed) where the C library has no ``mallopt`` or refuses a setting."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the three together: setting one alone turns off glibc's own adaptive threshold
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_TOP_PAD, _TOP_PAD)))
