"""Array backend: NumPy on the CPU or CuPy on an NVIDIA GPU, chosen by the caller.

There is no global switch. Layer code asks `get_array_module(*arrays)` (Chainer style) which
namespace the inputs live in and computes with that; entry points that start from host data take
`backend="numpy" | "cupy"` and go through `get_backend(name)`, which raises a clear error, never
falls back, when CuPy is asked for but missing or no GPU is visible. Host/device moves are the
explicit helpers `to_numpy` and `to_device`.
"""

from __future__ import annotations

import types

import numpy as np

BACKENDS = ("numpy", "cupy")
_DRAW_BLOCK = 1 << 20  # normal draws per block in rng_normal (8 MB of float64)

_CUPY_HELP = (
    "Install the GPU extra with `pip install -e \".[gpu]\"` (cupy-cuda12x, CUDA 12) on a machine "
    "with an NVIDIA GPU and driver, or pass backend='numpy' to run on the CPU."
)


class BackendError(RuntimeError):
    """Raised when a requested backend cannot be used (unknown name, CuPy missing, no GPU)."""


def _import_cupy():
    try:
        import cupy  # optional dependency, imported only when asked for
    except ImportError as exc:
        raise BackendError(f"backend='cupy' was requested but CuPy is not installed. {_CUPY_HELP}") from exc
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when the driver or device is absent
        raise BackendError(
            f"backend='cupy' was requested but no usable NVIDIA GPU is visible ({exc}). {_CUPY_HELP}"
        ) from exc
    if n < 1:
        raise BackendError(f"backend='cupy' was requested but no NVIDIA GPU is visible. {_CUPY_HELP}")
    return cupy


def get_backend(name: str = "numpy") -> types.ModuleType:
    """Return the array module for `name` ("numpy" or "cupy"); never falls back silently."""
    if isinstance(name, types.ModuleType):
        return name
    if name == "numpy":
        return np
    if name == "cupy":
        return _import_cupy()
    raise BackendError(f"unknown backend {name!r}: choose one of {BACKENDS}")


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU (used to skip GPU tests with a reason)."""
    try:
        _import_cupy()
    except BackendError:
        return False
    return True


def get_array_module(*arrays) -> types.ModuleType:
    """The namespace (numpy or cupy) the given arrays live in; numpy for host data and scalars."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def on_cpu(xp) -> bool:
    """True for NumPy: code tuned for CPU caches asks this, never the module's name."""
    return xp is np


def device_random(xp, seed: int):
    """A seeded generator drawing on xp's device: `cupy.random.RandomState` with Philox (cheap
    to create and seed, so one per draw is fine), or the CPU double's."""
    try:
        from cupy.cuda import curand  # real CuPy only
    except ImportError:
        return xp.random.RandomState(seed)
    return xp.random.RandomState(seed, method=curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)


def backend_name(xp) -> str:
    """"numpy" or "cupy" for an array module."""
    return "cupy" if xp.__name__.startswith("cupy") else "numpy"


def to_numpy(a):
    """Copy an array to host memory as a NumPy array (a NumPy array is returned as it is)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_device(a, backend="numpy"):
    """Move a host (or device) array to `backend`: "numpy" or the numpy module -> host, "cupy" or
    the cupy module -> current GPU. Pass the module where you have it: a name asks the driver."""
    xp = get_backend(backend)
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


def rng_normal(seed_or_rng, shape, std: float, xp=np, dtype=np.float32):
    """Normal(0, std) samples drawn on the host from a seeded generator, then moved to `xp`.

    Drawing on the host is what makes initialisation identical on NumPy and CuPy for one seed.
    """
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    w = np.empty(shape, dtype)
    flat = w.reshape(-1)
    # In blocks: the generator's float64 draws stay small instead of 0.9 GB for the fast model's
    # largest layer (a heap that keeps freed blocks would hold that for the whole run). The stream
    # is sequential, so the values equal one draw of the whole array.
    for start in range(0, flat.size, _DRAW_BLOCK):
        stop = min(flat.size, start + _DRAW_BLOCK)
        flat[start:stop] = rng.normal(0.0, std, size=stop - start)
    return w if xp is np else xp.asarray(w)
