"""Keep freed memory in the process: glibc's malloc returns every block of 128 KiB or more to
the kernel on ``free`` and maps it afresh on the next ``malloc``, so each new tensor of a
batched bound (a few MB) starts with a page fault per 4 KiB. The bound engines allocate a
new tensor per step: with the defaults a (50, 1000, 29) float64 multiply took 13 ms against
1.4 ms into an existing tensor, and the differential engine's branch and bound on ACAS Xu 5_3
property 1 ran 1.46x slower (``bench/results/diff_throughput.md``).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds so freed blocks are reused.
It changes nothing where the C library is not glibc. The command line calls it at start; a
program that imports nnbisim as a library decides for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap, and are reused
TRIM_THRESHOLD = (1 << 31) - 1  # the heap's free top is kept (up to 2 GiB)


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed blocks instead of unmapping them; True where it took."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
