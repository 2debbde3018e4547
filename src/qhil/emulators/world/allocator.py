"""Keep freed batch buffers in the process heap (glibc).

Every batch allocates and frees arrays of a few MB. With glibc's defaults such blocks
are returned to the OS when freed and mapped afresh for the next batch, and the first
touch of every fresh page is a page fault: ~3 us per 4 KiB on the VMs CI runs on, i.e.
~6 ns per float64 element, as much as the physics costs. `keep_freed_memory` raises
the mmap threshold to 32 MiB (glibc's maximum) and the trim threshold to 256 MiB, once
per process, so the heap keeps those pages for the next batch. Elsewhere than glibc it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's allocator for batch processing; True if it was tuned."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
