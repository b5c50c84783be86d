"""A strict CPU stand-in for CuPy, so the GPU code path runs (and is checked) on every CI machine.

    from overfeat_np import cupy_double
    with cupy_double.installed():          # sys.modules["cupy"] is the double inside
        model = build_model("small", 6, backend="cupy")
        cupy_double.COUNTS.reset(); ...; print(cupy_double.COUNTS)

It reproduces what breaks real CuPy programs, not CuPy's speed: a device array (`DeviceArray`,
`cupy.ndarray` here) wraps a NumPy array but is not one, so
- converting it to NumPy implicitly raises TypeError (`np.asarray(a)`, `np.testing` on it, any
  NumPy function given it), as `np.asarray(cupy_array)` does;
- mixing it with a host ndarray (not 0-d) in one operation, index or assignment raises TypeError
  (CuPy: "Unsupported type <class 'numpy.ndarray'>"); Python and NumPy scalars are fine;
- reductions return 0-d device arrays, never host scalars;
- the host learns a device value only by `.get()` / `cupy.asnumpy` (counted as a transfer and a
  synchronisation) or `float()`, `int()`, `bool()`, `.item()`, `.tolist()` (synchronisations);
  `cupy.asarray`/`cupy.array` of host data is a counted host->device transfer;
  `cuda.runtime.getDeviceCount()` is a counted driver query;
- operations whose output size depends on the data wait for the device in CuPy too, and count as
  synchronisations here: indexing with a boolean array, `nonzero`, `flatnonzero`, `argwhere`,
  `unique`, `compress`, `extract` and one-argument `where`.
Every operation runs the very NumPy code the host backend runs, so results are bit-identical
to NumPy's wherever the same operations run. The random module is seeded NumPy (PCG64), a
different stream from cuRAND: code must be reproducible per backend, not across them. What it
cannot tell: whether CuPy has a function (every NumPy name is there), CuPy's own dtype rules
where they differ from NumPy's, and anything about speed or device memory.

`install()` / `uninstall()` / `installed()` put it in `sys.modules["cupy"]`; the test suite
does so where no real GPU is visible (`backend.cupy_available()` false), and uses real CuPy
where one is.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
             "a NumPy array explicitly.")


class Counters:
    """What crossed between host and device since the last `reset()`."""

    FIELDS = ("to_device", "to_device_bytes", "to_host", "to_host_bytes", "syncs", "driver_queries")

    def __init__(self):
        self.reset()

    def reset(self):
        for f in self.FIELDS:
            setattr(self, f, 0)

    def snapshot(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self):
        return "Counters(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items()) + ")"


COUNTS = Counters()


def _mixing(x):
    return TypeError(f"Unsupported type {type(x)}: a host numpy.ndarray cannot be mixed with device "
                     "arrays (move it explicitly with cupy.asarray)")


def _unwrap(x):
    """Device arrays -> their NumPy array; host ndarrays (not 0-d) -> TypeError; containers recursed."""
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x
        raise _mixing(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    """NumPy results -> device arrays (scalars become 0-d arrays, as CuPy's reductions return)."""
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


# Output size known only from the data: CuPy reads it back from the device, a synchronisation.
_DATA_SIZED = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}


def _has_bool_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, DeviceArray) and k.dtype == bool and k.ndim > 0 for k in keys)


class _Fn:
    """A NumPy callable seen from the device: device arguments in, device results out."""

    def __init__(self, fn, name: str = ""):
        self._fn, self._name = fn, name

    def __call__(self, *args, **kwargs):
        if self._name in _DATA_SIZED or (self._name == "where" and len(args) == 1):
            COUNTS.syncs += 1
        return _wrap(self._fn(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):  # ufunc methods: np.maximum.reduce, ...
        attr = getattr(self._fn, name)
        return _Fn(attr) if callable(attr) else attr


class DeviceArray:
    """A device array: a NumPy array the host may not read implicitly (see the module docstring)."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # numpy ufuncs given a device array defer to it, and then refuse
    __hash__ = None

    def __init__(self, a: np.ndarray):
        self._a = a

    # --- what the host may not do implicitly
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_function__(self, func, types_, args, kwargs):
        return NotImplemented  # numpy functions then raise TypeError

    # --- explicit ways to the host
    def get(self, stream=None, out=None):
        """Copy to the host: one transfer and one synchronisation."""
        COUNTS.to_host += 1
        COUNTS.to_host_bytes += self._a.nbytes
        COUNTS.syncs += 1
        return self._a.copy()

    def _sync(self):
        COUNTS.syncs += 1
        return self._a

    def __float__(self):
        return float(self._sync())

    def __int__(self):
        return int(self._sync())

    def __bool__(self):
        return bool(self._sync())

    def item(self, *args):
        return self._sync().item(*args)

    def tolist(self):
        return self._sync().tolist()

    def __repr__(self):
        return f"array({np.array2string(self._sync())}, device=cpu-double)"

    __str__ = __repr__

    # --- attributes that stay on the host side in CuPy too
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))
    device = property(lambda self: _Device(0))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __getitem__(self, key):
        if _has_bool_index(key):
            COUNTS.syncs += 1  # how many elements are selected is read back first
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):  # methods: reshape, astype, sum, argmax, copy, view, fill, ...
        if name == "_a" or name.startswith("__"):  # never NumPy's __array_interface__ & co.
            raise AttributeError(name)
        attr = getattr(self._a, name)
        return _Fn(attr, name) if callable(attr) else _wrap(attr)

    def __copy__(self):
        return DeviceArray(self._a.copy())

    def __deepcopy__(self, memo):
        return DeviceArray(self._a.copy())

    def __reduce__(self):  # pickling goes through the host, as in CuPy
        return (_from_host, (self._a,))


def _from_host(a):
    return DeviceArray(np.array(a))


def _operator(name):
    def op(self, *args):
        out = getattr(self._a, name)(*_unwrap(args))
        if out is NotImplemented:
            return out
        return self if out is self._a else _wrap(out)

    op.__name__ = name
    return op


_OPS = ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift", "rshift"]
for _n in _OPS:
    for _f in (f"__{_n}__", f"__r{_n}__", f"__i{_n}__"):
        setattr(DeviceArray, _f, _operator(_f))
for _f in ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__", "__le__", "__gt__", "__ge__",
           "__eq__", "__ne__", "__divmod__"):
    setattr(DeviceArray, _f, _operator(_f))
DeviceArray.__module__ = "cupy"  # backend.get_array_module recognises CuPy arrays by their module


# --- module functions with host/device meaning ------------------------------------------------------
def asarray(a, dtype=None, order=None):
    """Host data -> device (a counted transfer); a device array is returned as it is (or cast)."""
    if isinstance(a, DeviceArray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else DeviceArray(a._a.astype(dtype))
    host = np.asarray(_unwrap_host(a), dtype=dtype, order=order)
    COUNTS.to_device += 1
    COUNTS.to_device_bytes += host.nbytes
    return DeviceArray(np.array(host, copy=True))  # the device owns its own memory


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, DeviceArray):
        out = np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin)
        return DeviceArray(out)
    return asarray(np.array(_unwrap_host(a), dtype=dtype, order=order, ndmin=ndmin))


def _unwrap_host(a):
    """Host data for asarray: lists may hold device scalars (CuPy reads them)."""
    if isinstance(a, (list, tuple)) and any(isinstance(v, DeviceArray) for v in a):
        raise TypeError("cupy.asarray of a list holding device arrays: use cupy.stack")
    return a


def asnumpy(a, stream=None, out=None):
    """Device -> host (counted); host data is returned as a NumPy array."""
    return a.get() if isinstance(a, DeviceArray) else np.asarray(a)


def get_array_module(*args):
    return _MODULE if any(isinstance(a, DeviceArray) for a in args) else np


# --- cuda -------------------------------------------------------------------------------------------
class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        return self

    def synchronize(self):
        COUNTS.syncs += 1

    @property
    def mem_info(self):
        return (0, 0)

    def __repr__(self):
        return f"<CUDA Device {self.id} (cpu double)>"


class _Stream:
    def __init__(self, null=False, non_blocking=False):
        self.null = null

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        return self

    def synchronize(self):
        COUNTS.syncs += 1


_Stream.null = _Stream(null=True)


def _get_device_count():
    COUNTS.driver_queries += 1
    return 1


def _device_synchronize():
    COUNTS.syncs += 1


class _MemoryPool:
    """Memory accounting stand-in: the double has no device memory of its own."""

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = _MemoryPool()

cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=_get_device_count, deviceSynchronize=_device_synchronize,
                                  CUDARuntimeError=RuntimeError, runtimeGetVersion=lambda: 0),
    Device=_Device, Stream=_Stream, get_current_stream=lambda: _Stream.null,
    is_available=lambda: True,
)


def get_default_memory_pool():
    return _POOL


# --- random: seeded, drawn "on the device" ------------------------------------------------------------
class RandomState:
    """cupy.random.RandomState: seeded draws that are device arrays (NumPy PCG64 underneath)."""

    def __init__(self, seed=None, method=None):
        self.seed(seed)

    def seed(self, seed=None):
        self._g = np.random.Generator(np.random.PCG64(seed))

    def random_sample(self, size=None, dtype=float):
        return DeviceArray(np.asarray(self._g.random(size, dtype=np.dtype(dtype).type)))

    def rand(self, *size, dtype=float):
        return self.random_sample(size or None, dtype)

    def standard_normal(self, size=None, dtype=float):
        return DeviceArray(np.asarray(self._g.standard_normal(size, dtype=np.dtype(dtype).type)))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return DeviceArray(np.asarray(self._g.normal(loc, scale, size)).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return DeviceArray(np.asarray(self._g.uniform(low, high, size)).astype(dtype))

    def randint(self, low, high=None, size=None, dtype="l"):
        return DeviceArray(np.asarray(self._g.integers(low, high, size)).astype(dtype))

    def permutation(self, n):
        return DeviceArray(self._g.permutation(n))


class _Generator(RandomState):
    """cupy.random.default_rng's Generator (the methods the package may use)."""

    def random(self, size=None, dtype=np.float64):
        return self.random_sample(size, dtype)

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return self.randint(low, high, size, dtype)


random = types.SimpleNamespace(RandomState=RandomState, default_rng=lambda seed=None: _Generator(seed))


# --- the module object installed as `cupy` ---------------------------------------------------------------
_OWN = {
    "ndarray": DeviceArray, "asarray": asarray, "array": array, "asnumpy": asnumpy,
    "get_array_module": get_array_module, "cuda": cuda, "random": random,
    "get_default_memory_pool": get_default_memory_pool, "COUNTS": COUNTS, "__version__": "13.0.0+cpu-double",
}


class _CupyModule(types.ModuleType):
    """`cupy` as seen by the package: its own names above, every other name NumPy's, made strict."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(np, name)  # AttributeError for names NumPy lacks too
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants (float32, newaxis, inf)
        return _Fn(attr, name)


_MODULE = _CupyModule("cupy", "The overfeat_np CPU double of CuPy (overfeat_np.cupy_double).")
_MODULE.__dict__.update(_OWN)
_MODULE.__path__ = []  # a package, so `import cupy.cuda`-style lookups fail cleanly


def module() -> types.ModuleType:
    """The module object the double installs as `cupy`."""
    return _MODULE


def is_installed() -> bool:
    return sys.modules.get("cupy") is _MODULE


def install() -> types.ModuleType:
    """Put the double in sys.modules["cupy"] (replacing whatever is there); returns it."""
    sys.modules["cupy"] = _MODULE
    return _MODULE


def uninstall():
    """Remove the double from sys.modules (a real CuPy imports again afterwards)."""
    if is_installed():
        del sys.modules["cupy"]


@contextlib.contextmanager
def installed():
    """Context manager: the double is `cupy` inside, the previous state is restored after."""
    previous = sys.modules.get("cupy")
    install()
    try:
        yield _MODULE
    finally:
        if previous is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = previous
