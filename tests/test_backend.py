"""Backend: explicit choice, no silent fallback, array type in = out, same init on both."""

import builtins
import sys
import types

import numpy as np
import pytest

from overfeat_np import backend as B
from overfeat_np.layers import Conv2D, Linear


def test_numpy_backend_and_unknown_name():
    assert B.get_backend("numpy") is np
    assert B.get_backend(np) is np
    with pytest.raises(B.BackendError, match=r"unknown backend 'torch'.*numpy.*cupy"):
        B.get_backend("torch")


def _without_cupy(monkeypatch):
    """Make `import cupy` fail as on a machine where it is not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kw):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def _fake_cupy(monkeypatch, count):
    """A cupy module whose runtime reports `count` GPUs, or raises like a machine without a driver."""
    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_cupy_missing_raises_with_install_instructions(monkeypatch):
    _without_cupy(monkeypatch)
    with pytest.raises(B.BackendError, match=r"CuPy is not installed.*pip install -e \"\.\[gpu\]\""):
        B.get_backend("cupy")
    with pytest.raises(B.BackendError, match="not installed"):
        Conv2D(3, 4, 3, backend="cupy")  # constructors never fall back to numpy either
    assert not B.cupy_available()


@pytest.mark.parametrize("count", [RuntimeError("cudaErrorNoDevice"), 0])
def test_cupy_without_gpu_raises_with_install_instructions(monkeypatch, count):
    _fake_cupy(monkeypatch, count)
    with pytest.raises(B.BackendError, match=r"no (usable )?NVIDIA GPU.*pip install"):
        B.get_backend("cupy")
    assert not B.cupy_available()


def test_cupy_with_a_gpu_is_returned(monkeypatch):
    fake = _fake_cupy(monkeypatch, 1)
    assert B.get_backend("cupy") is fake


def test_get_array_module_follows_the_inputs():
    assert B.get_array_module(np.zeros(2), 3.0, [1]) is np
    assert B.get_array_module() is np
    assert B.backend_name(np) == "numpy"


def test_to_numpy_and_to_device_on_host():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert B.to_numpy(a) is a
    assert B.to_device(a, "numpy") is a
    np.testing.assert_array_equal(B.to_numpy([1, 2]), [1, 2])


def test_round_trip_through_a_backend(backend):
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    d = B.to_device(a, backend)
    assert B.get_array_module(d) is B.get_backend(backend)
    back = B.to_numpy(d)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, a)


def test_rng_normal_is_seeded_float32_and_has_the_asked_std():
    a = B.rng_normal(0, (200, 300), 1e-2)
    assert a.dtype == np.float32 and a.shape == (200, 300)
    np.testing.assert_array_equal(a, B.rng_normal(0, (200, 300), 1e-2))
    np.testing.assert_array_equal(a, B.rng_normal(np.random.default_rng(0), (200, 300), 1e-2))
    assert abs(a.std() - 1e-2) < 2e-4 and abs(a.mean()) < 2e-4


def test_initialisation_is_identical_across_backends(backend):
    """One seed, the same weights on NumPy and on `backend` (drawn on the host, then moved)."""
    for make in (lambda b: Conv2D(3, 8, 5, seed=42, backend=b), lambda b: Linear(10, 7, seed=42, backend=b)):
        here, there = make("numpy"), make(backend)
        for key in here.params:
            assert B.get_array_module(there.params[key]) is B.get_backend(backend)
            np.testing.assert_array_equal(B.to_numpy(there.params[key]), here.params[key])


@pytest.mark.gpu
@pytest.mark.skipif(not B.cupy_available(), reason="needs CuPy: a visible GPU, or the CPU double the tests install where none is")
def test_a_conv_layer_runs_on_the_gpu():
    import cupy

    layer = Conv2D(3, 8, 3, 1, 1, seed=0, backend="cupy")
    x = cupy.asarray(np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32))
    y, cache = layer.forward(x)
    dx, grads = layer.backward(cupy.ones_like(y), cache)
    assert isinstance(y, cupy.ndarray) and isinstance(dx, cupy.ndarray) and isinstance(grads["W"], cupy.ndarray)
    ref = Conv2D(3, 8, 3, 1, 1, seed=0)
    np.testing.assert_allclose(B.to_numpy(y), ref.forward(B.to_numpy(x))[0], rtol=1e-4, atol=1e-5)


def test_rng_normal_in_blocks_equals_one_draw():
    """Drawn block by block to keep float64 temporaries small; the values are those of one draw
    (and the generator continues where one draw would leave it)."""
    from overfeat_np.backend import _DRAW_BLOCK, rng_normal

    shape = (3, _DRAW_BLOCK // 2 + 7)  # more than one block, not a multiple of it
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    want = r1.normal(0.0, 0.01, size=shape).astype(np.float32)
    got = rng_normal(r2, shape, 0.01)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, want)
    assert r1.normal() == r2.normal()
