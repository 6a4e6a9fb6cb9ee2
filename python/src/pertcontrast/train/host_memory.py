"""Keep freed host memory in the process between training steps (glibc only).

A CPU step allocates dozens of cells x genes temporaries of a few MB each. glibc serves
blocks above its mmap threshold with fresh ``mmap`` calls and returns freed heap tops to
the kernel, so every step pays page faults and zero-filling for the same buffers again:
on a 256 x 2,000 minibatch that was about a quarter of the step. Raising both thresholds
lets freed blocks be reused; peak memory stays that of one step's working set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024**2  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD_BYTES = 256 * 1024**2  # above one step's temporaries: they stay, buffers go back


def reuse_freed_host_memory() -> bool:
    """Set glibc's malloc thresholds for this process; False where that is not possible
    (not Linux, not glibc). Idempotent, and it changes no results."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
