"""The process's memory allocator: keep freed memory for reuse instead of handing it back to the OS.

glibc's ``malloc`` serves every block over its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it on ``free``, and gives the free top of its heap back above a trim threshold. A training step
allocates and frees the same large activations every step (at the paper's size, 88 MB per feed-forward
activation), so each step page-faults and zeroes them again: system time, not compute. `keep_freed_memory`
turns both off for the calling process, so freed blocks stay in the heap and the next step reuses them. Nothing
else changes: the same allocations, the same results; the process's resident memory stays at its high-water
mark instead of shrinking between steps. Measured in docs/performance.md (`bench/training_variants.py`).
Freed blocks of a size no later request fits can pile up (CPU-size training: about 15% above the default's
resident memory after two epochs, bench/memory_trend.py), so `release_freed_memory` hands all free memory
back at once: trials call it after every epoch.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters of glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 2**31 - 1  # bytes: mallopt takes an int; 2 GiB of free heap top is still given back


# The same settings as environment variables, which glibc reads when a process starts, before any thread: for
# processes others start, such as Ray's workers (a sweep's runtime_env). A worker's trial thread allocates
# from an arena Ray's own threads may already have created; only these apply to every arena from the start.
GLIBC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library already loaded into this process
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # glibc only (musl's mallopt is a stub)


def keep_freed_memory() -> bool:
    """Stop glibc from unmapping freed blocks and trimming the heap, for this process; True if it took effect.

    Also limits glibc to one arena: a thread's own arena grows in heaps of at most 64 MB and serves larger
    blocks with ``mmap`` whatever the settings, so threads started after this call share the main heap. A
    thread that had already allocated keeps its arena, and so can one started later if other threads had
    made arenas before the call: for other processes (Ray's workers) pass ``GLIBC_ENV`` in their environment.
    A no-op returning False where the C library is not glibc (macOS, musl): those allocators keep their own
    caches. Safe to call more than once; affects allocations made after the call.
    """
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = [mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD), mallopt(M_ARENA_MAX, 1)]
    return all(done)


def release_freed_memory() -> bool:
    """Give the free memory of glibc's heap back to the OS now (``malloc_trim(0)``); True if some went back.

    The next allocations page-fault it in again once; call it between epochs, not between steps.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(libc.malloc_trim(0))  # 1 if memory went back
