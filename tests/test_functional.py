"""The speed paths of `functional` compute what the plain formulas do."""

import numpy as np
import pytest

from overfeat_np import functional as F


@pytest.mark.parametrize("f, k, m", [(3, 4, 20), (3, 4, 8), (3, 4, 7), (5, 12, 6)])  # M >= 2K and M < 2K
def test_weight_gradient_equals_the_plain_product(f, k, m):
    """Whichever order the product runs in, dW = d2 @ cols^T."""
    rng = np.random.default_rng(0)
    d2, cols = rng.standard_normal((f, m)), rng.standard_normal((k, m))
    dW = F.weight_gradient(d2, cols)
    assert dW.shape == (f, k)
    np.testing.assert_allclose(dW, d2 @ cols.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, np.einsum("fm,km->fk", d2, cols), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_backward_batch_of_one_is_the_outer_product(dtype):
    """At N = 1 dW is computed as an outer product: the same numbers as the GEMM (one term each,
    so equal to the last bit), and the other gradients as at any batch."""
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal((1, 37)).astype(dtype), rng.standard_normal((11, 37)).astype(dtype)
    dout = rng.standard_normal((1, 11)).astype(dtype)
    dx, dW, db = F.linear_backward(dout, (x, W))
    assert dW.dtype == dtype and dW.shape == (11, 37)
    np.testing.assert_array_equal(dW, np.outer(dout[0], x[0]))
    np.testing.assert_array_equal(dW, dout.T @ x)
    np.testing.assert_allclose(dx, dout @ W, rtol=1e-6)
    np.testing.assert_array_equal(db, dout[0])
