"""Shared test set-up: hypothesis profiles that keep CI bounded, backend parametrisation.

Where no real GPU is visible, CuPy is the CPU double `overfeat_np.cupy_double`, installed here
for the whole session (before any test module is collected), so every "cupy" test runs in CI; a
test that needs real CUDA kernels is marked `needs_cuda` and says why.
"""

import os

# pytest -n 2 runs two workers on two cores: a multi-threaded BLAS in each would oversubscribe
# the cores, and for the small layers of the tests that is tens of times slower. Set before numpy
# loads (and inherited by lesson kernels); threadpoolctl covers a BLAS that was loaded earlier.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

from overfeat_np import cupy_double
from overfeat_np.backend import cupy_available

threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]))

# deadline=None: the first call of a numpy kernel can be slow; time belongs in benchmarks.
settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REAL_GPU = cupy_available()  # a real CuPy that sees a GPU
DOUBLE = not REAL_GPU
if DOUBLE:
    cupy_double.install()
GPU = cupy_available()  # CuPy, real or the double: true from here on
gpu_only = pytest.mark.skipif(not GPU, reason="CuPy (or its CPU double) is needed for this test")


def needs_cuda(why: str):
    """Skip where CuPy is the CPU double: `why` names the real-CUDA behaviour the test needs."""
    return pytest.mark.skipif(DOUBLE, reason=f"needs real CUDA kernels: {why}")


BACKENDS = ["numpy", pytest.param("cupy", marks=[pytest.mark.gpu, gpu_only])]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test once per backend: NumPy, then CuPy (the CPU double where no GPU is visible)."""
    return request.param


@pytest.fixture
def no_gpu(monkeypatch):
    """Inside the test, `cupy` imports but sees no GPU (as on a machine without a driver)."""
    import sys
    import types

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)


@pytest.fixture
def counts():
    """The double's transfer/sync counters, reset (skipped on a real GPU: it has no counters)."""
    if not DOUBLE:
        pytest.skip("transfer counting needs the CPU double of CuPy")
    cupy_double.COUNTS.reset()
    return cupy_double.COUNTS


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
