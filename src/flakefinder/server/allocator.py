"""Large image buffers go back to the operating system when freed (glibc's malloc).

glibc serves allocations above its mmap threshold (128 KiB) with ``mmap`` and returns them on
``free``, but raises that threshold to the size of every such block freed, up to 32 MiB. After
the first decoded image is freed, the next ones (a working image is 24 MB) come from the heap
arenas of whichever worker thread decoded them, and those arenas keep the memory: a server that
decodes large images in a thread pool grows by hundreds of MiB it never uses again
(``benchmarks/bench_detect_memory.py``: a batch of 30 large PNGs peaked at 1,215 MiB with the
moving threshold, 546 MiB with it pinned). Pinning the threshold at 1 MiB keeps every image
buffer an ``mmap`` of its own. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD_BYTES = 1 << 20


def return_large_buffers_to_os(threshold_bytes: int = THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold at ``threshold_bytes``; whether the C library took it."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
