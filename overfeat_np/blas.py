"""How many BLAS threads a computation uses: one policy for every subcommand, lesson and the demo.

The default is one thread per process (`DEFAULT_THREADS`; `OVERFEAT_BLAS_THREADS=N` or
`--blas-threads N` for more). Why one: on a busy machine two OpenBLAS threads on two busy cores
spin and wait for each other (the small model trained at 50-92 images/s with the default two
threads at load 9, against 485 with one), the small model's GEMMs are too small to gain from a
second thread even on idle cores, and a GEMM's float rounding depends on the thread count, so a
fixed count is what makes a run repeatable on any machine and with any number of loader workers.
A big model on an idle machine trains faster with more (`--blas-threads` = cores; about 1.8x for
the fast model on 2 idle cores); `train` records the count in its checkpoints. `import overfeat_np`
applies the policy to the process (`apply_policy`) unless OPENBLAS_NUM_THREADS or the like is set,
so lessons and scripts follow it too.
"""

from __future__ import annotations

import contextlib
import os

from threadpoolctl import threadpool_limits

DEFAULT_THREADS = 1
ENV = "OVERFEAT_BLAS_THREADS"
# Variables by which a user already chose the BLAS's threads; `apply_policy` leaves those alone.
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def default_threads() -> int:
    """The policy's thread count: $OVERFEAT_BLAS_THREADS if set (a whole number >= 1), else 1."""
    text = os.environ.get(ENV)
    if text is None:
        return DEFAULT_THREADS
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV}={text!r} must be a whole number >= 1 (the BLAS threads of each process)")
    return n


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def limit_blas(threads: int | None):
    """Context manager: this process's BLAS limited to `threads` inside it (None: no change)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(int(threads), user_api="blas")


def apply_policy() -> int | None:
    """Set this process's BLAS to `default_threads()`, as `import overfeat_np` does, unless the
    user chose a count for the BLAS itself (OPENBLAS_NUM_THREADS and the like). So lessons,
    scripts and notebooks get the policy without asking; returns the count set, or None."""
    if ENV not in os.environ and any(v in os.environ for v in BLAS_ENV):
        return None
    n = default_threads()
    threadpool_limits(n, user_api="blas")  # process-wide, until changed again
    return n

