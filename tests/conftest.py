"""Shared test set-up: hypothesis profiles that keep CI bounded, backend parametrisation."""

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

GPU = cupy_available()
gpu_only = pytest.mark.skipif(not GPU, reason="CuPy with a visible NVIDIA GPU is needed for this test")

BACKENDS = ["numpy", pytest.param("cupy", marks=[pytest.mark.gpu, gpu_only])]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test once per backend; the CuPy run is skipped with a reason where there is no GPU."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
