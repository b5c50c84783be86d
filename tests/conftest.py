"""Shared test set-up: hypothesis profiles that keep CI bounded, backend parametrisation."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from overfeat_np.backend import cupy_available

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
