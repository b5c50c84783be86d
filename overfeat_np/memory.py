"""Keep freed host memory for reuse, so a training step does not pay for fresh pages every time.

glibc's malloc serves every block above 32 MiB with its own `mmap` and returns it to the system
(`munmap`) as soon as it is freed. A training step of the fast model allocates and frees about
0.5 GB of such blocks (im2col columns, their gradients, weight gradients, activations), so every
step the kernel hands out and zeroes the same memory again: about 3 ms per 84 MiB here, some
50 ms per step of the fast model at batch 16. `reuse_freed_memory()` tells malloc to take big
blocks from its heap too and to keep freed memory, so the second step onwards reuses the first
step's pages. It is what the `overfeat-np` command line does for every subcommand; call it at the
top of your own training script to get the same. The cost is that the process keeps its peak
heap until it exits. Device memory is not concerned: CuPy's memory pool already reuses it.

This changes process-wide allocator settings, which is why the library never does it on import.
"""

from __future__ import annotations

import ctypes

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's defaults, restored by reuse_freed_memory(False)
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_KEEP = 2**31 - 1  # the largest int mallopt takes: never trim the heap top


def _mallopt():
    """glibc's `mallopt`, or None where the C library is not glibc (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process, libc's among them
        if not hasattr(libc, "gnu_get_libc_version"):  # musl: a mallopt that does nothing
            return None
        fn = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def reuse_freed_memory(enable: bool = True) -> bool:
    """Serve big blocks from malloc's heap and keep freed memory (`enable=True`), or restore
    glibc's defaults (`enable=False`). Process-wide. Returns True where it took effect (glibc),
    False where the C library has no such setting (nothing is changed then)."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_max, trim = (0, _KEEP) if enable else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    return bool(mallopt(_M_MMAP_MAX, mmap_max)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))
