"""How a task process's C allocator treats large buffers.

glibc's malloc serves a request above its mmap threshold (128 KiB at start) by a mapping of its
own, returned to the system when freed; but each time such a mapping is freed, it raises the
threshold to that size (up to 32 MiB). After the first multi-megabyte buffer (a downloaded
block, a chunk's Arrow column, a COPY batch) is freed, the later ones come from the heap, and the
heap keeps the pages of a freed buffer as long as a live object sits above it: the task's peak
grows by buffers it no longer holds (figures in benchmarks/RESULTS.md). Fixing the threshold turns
that adjustment off, so every large buffer goes back to the system when it is freed.

A setting of the allocator, inherited by forked processes: the forkserver that task processes
fork from applies it (``ops.preload``), and each task applies it again, for deployments that
start tasks another way. Elsewhere than on glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BUFFER_BYTES = 128 << 10  # glibc's own starting threshold, kept fixed

_applied = False


def _glibc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def return_large_buffers_to_the_system() -> bool:
    """Fix malloc's mmap threshold at ``LARGE_BUFFER_BYTES`` in this process (see the module);
    returns whether it is in force."""
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
    if not _applied:
        log.warning("malloc's mmap threshold could not be set: large freed buffers may stay in memory")
    return _applied
