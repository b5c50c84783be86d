"""Layers: forward against independent references, backward against numerical gradients.

Hypothesis draws only valid geometries; max-pool inputs are tie-free (a permutation of distinct
values) and ReLU inputs stay away from the kink at 0, so finite differences are meaningful.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import correlate

from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.functional import maxpool_backward, maxpool_forward
from overfeat_np.gradcheck import check_layer_gradients
from overfeat_np.im2col import conv_outsize
from overfeat_np.layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential

seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_geometries(draw, max_n=2, max_c=3, max_size=7):
    """(N, C, H, W), out channels, kernel, stride, padding with the kernel inside the padded input."""
    n, c, f = draw(st.integers(1, max_n)), draw(st.integers(1, max_c)), draw(st.integers(1, 3))
    k, stride, pad = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * pad), max(1, k - 2 * pad) + max_size - 1))
    w = draw(st.integers(max(1, k - 2 * pad), max(1, k - 2 * pad) + max_size - 1))
    return (n, c, h, w), f, k, stride, pad


@st.composite
def pool_geometries(draw):
    """(N, C, H, W), window, stride (None = window) with the window inside the input."""
    k = draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(k, k + 6)), draw(st.integers(k, k + 6))
    return (n, c, h, w), k, stride


def tie_free(shape, seed):
    """Distinct values (a random permutation), so every window has a unique maximum."""
    return np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape).astype(np.float64) / 7


def away_from_zero(shape, seed, margin=0.1):
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, 1.0, size=shape)


def conv_reference(x, W, b, stride, pad):
    """Cross-correlation with scipy.signal.correlate, one (sample, filter) pair at a time."""
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.stack([np.stack([correlate(xn, wf, mode="valid")[0] for wf in W]) for xn in xpad])
    return out[:, :, ::stride, ::stride] + b[None, :, None, None]


# --- convolution ---------------------------------------------------------------------------------
@given(conv_geometries(max_n=3, max_c=4, max_size=10), seeds)
def test_conv_forward_matches_scipy_correlate(geom, seed):
    shape, f, k, stride, pad = geom
    rng = np.random.default_rng(seed)
    layer = Conv2D(shape[1], f, k, stride, pad, seed=seed)
    layer.params["b"] = rng.standard_normal(f).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    y, _ = layer.forward(x)
    assert y.dtype == np.float32
    assert y.shape == (shape[0],) + layer.output_shape(shape[1:])
    ref = conv_reference(x.astype(np.float64), layer.params["W"].astype(np.float64),
                         layer.params["b"].astype(np.float64), stride, pad)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-6)


def test_conv_is_cross_correlation_not_convolution():
    """A kernel with a single 1 at its top-left picks x[i, j] for output (i, j): no flip."""
    layer = Conv2D(1, 1, 3)
    layer.params["W"] = np.zeros((1, 1, 3, 3), np.float32)
    layer.params["W"][0, 0, 0, 0] = 1
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(layer.forward(x)[0][0, 0], x[0, 0, :3, :3])


@given(conv_geometries(), seeds)
def test_conv_gradients_full(geom, seed):
    shape, f, k, stride, pad = geom
    layer = Conv2D(shape[1], f, k, stride, pad, seed=seed)
    layer.params["W"] *= 50  # O(1) weights: the check should not pass merely because W is tiny
    check_layer_gradients(layer, np.random.default_rng(seed).standard_normal(shape), mode="full")


@pytest.mark.parametrize("c,f,k,stride,pad,size", [(16, 32, 3, 1, 1, 12), (3, 8, 11, 4, 0, 35),
                                                   (8, 16, 5, 1, 0, 14)])
def test_conv_gradients_directional_bigger(c, f, k, stride, pad, size):
    layer = Conv2D(c, f, k, stride, pad, seed=1)
    x = np.random.default_rng(2).standard_normal((4, c, size, size))
    check_layer_gradients(layer, x, mode="directional")


def test_conv_without_input_gradient():
    """need_input_grad=False (the first layer) returns dx None and the same parameter gradients."""
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    full, first = Conv2D(3, 4, 3, 2, 1, seed=0), Conv2D(3, 4, 3, 2, 1, seed=0, need_input_grad=False)
    y, cache = full.forward(x)
    dy = np.ones_like(y)
    dx, g = full.backward(dy, cache)
    dx0, g0 = first.backward(dy, first.forward(x)[1])
    assert dx is not None and dx0 is None
    for key in g:
        np.testing.assert_array_equal(g[key], g0[key])
    check_layer_gradients(first, x, check_input=False)


def test_conv_init_follows_the_paper():
    """Section 3: weights ~ N(0, 1e-2), biases 0, float32, shapes (out, in, kh, kw) and (out,)."""
    layer = Conv2D(64, 128, 3, seed=0)
    W, b = layer.params["W"], layer.params["b"]
    assert W.shape == (128, 64, 3, 3) and b.shape == (128,)
    assert W.dtype == b.dtype == np.float32
    assert abs(W.mean()) < 5e-4 and abs(W.std() - 1e-2) < 5e-4
    assert not b.any()
    np.testing.assert_array_equal(W, Conv2D(64, 128, 3, seed=0).params["W"])
    assert not np.array_equal(W, Conv2D(64, 128, 3, seed=1).params["W"])


# --- max pooling ----------------------------------------------------------------------------------
@given(pool_geometries(), seeds)
def test_maxpool_forward_matches_loops(geom, seed):
    shape, k, stride = geom
    s = k if stride is None else stride
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    y, _ = MaxPool2D(k, stride).forward(x)
    oh, ow = conv_outsize(shape[2], k, s, 0), conv_outsize(shape[3], k, s, 0)
    ref = np.empty(shape[:2] + (oh, ow), np.float32)
    for a in range(oh):
        for b in range(ow):
            ref[:, :, a, b] = x[:, :, a * s:a * s + k, b * s:b * s + k].max(axis=(2, 3))
    np.testing.assert_array_equal(y, ref)


@given(pool_geometries(), seeds)
def test_maxpool_gradients_tie_free(geom, seed):
    shape, k, stride = geom
    check_layer_gradients(MaxPool2D(k, stride), tie_free(shape, seed), mode="full")


@pytest.mark.parametrize("k,stride", [(2, None), (3, None), (3, 2), (2, 1)])
def test_maxpool_ties_send_gradient_to_exactly_one_element(k, stride):
    """The documented tie rule: on a constant input each window passes its whole gradient to one
    element, the first of the window (its top-left); the total gradient is conserved."""
    s = k if stride is None else stride
    x = np.ones((2, 3, 7, 8), np.float32)
    y, cache = MaxPool2D(k, stride).forward(x)
    dy = np.random.default_rng(0).uniform(1, 2, y.shape).astype(np.float32)
    dx = MaxPool2D(k, stride).backward(dy, cache)[0]
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), dy.sum(axis=(2, 3)), rtol=1e-5)
    oh, ow = y.shape[2:]
    ref = np.zeros_like(dx)
    for a in range(oh):
        for b in range(ow):
            ref[:, :, a * s, b * s] += dy[:, :, a, b]  # first element of each window
    np.testing.assert_allclose(dx, ref, rtol=1e-6)
    if s >= k:  # disjoint windows: exactly one non-zero per window
        assert np.count_nonzero(dx) == dy.size


def test_maxpool_tie_goes_to_first_maximum_in_scan_order():
    """The window is scanned column by column: (1, 0) comes before (0, 1)."""
    x = np.array([[0, 5], [5, 5]], np.float32)[None, None]
    y, cache = maxpool_forward(x, 2)
    dx = maxpool_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0], [1, 0]])


@given(pool_geometries(), seeds, st.sampled_from(["nchw", "batch-last"]))
def test_maxpool_backward_with_ties_matches_loops(geom, seed, layout):
    """Inputs of a few integer levels (ties everywhere) against a per-window loop applying the
    documented rule: the first maximum in column-by-column scan order takes the gradient."""
    shape, k, stride = geom
    s = k if stride is None else stride
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(np.float32)
    dy_shape = shape[:2] + (conv_outsize(shape[2], k, s, 0), conv_outsize(shape[3], k, s, 0))
    dy = rng.uniform(1, 2, dy_shape).astype(np.float32)
    if layout == "batch-last":
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    _, cache = maxpool_forward(x, k, stride)
    dx = maxpool_backward(dy, cache)
    ref = np.zeros(shape, np.float64)
    for n in range(shape[0]):
        for c in range(shape[1]):
            for a in range(dy_shape[2]):
                for b in range(dy_shape[3]):
                    win = x[n, c, a * s:a * s + k, b * s:b * s + k]
                    j, i = divmod(int(np.argmax(win.T)), k)  # argmax of the transpose: column order
                    ref[n, c, a * s + i, b * s + j] += dy[n, c, a, b]
    np.testing.assert_allclose(dx, ref, rtol=1e-6)


def test_maxpool_floor_size_leaves_uncovered_rows_with_zero_gradient():
    x = tie_free((1, 2, 5, 5), 0).astype(np.float32)
    y, cache = MaxPool2D(2).forward(x)
    assert y.shape == (1, 2, 2, 2)
    dx = MaxPool2D(2).backward(np.ones_like(y), cache)[0]
    assert not dx[:, :, 4, :].any() and not dx[:, :, :, 4].any()


# --- pointwise and dense -------------------------------------------------------------------------
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), seeds)
def test_relu_forward_and_gradients(shape, seed):
    x = away_from_zero(tuple(shape), seed)
    y, _ = ReLU().forward(x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    check_layer_gradients(ReLU(), x, mode="full")


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), seeds)
def test_linear_forward_and_gradients(n, fin, fout, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(fin, fout, seed=seed)
    layer.params["b"] = rng.standard_normal(fout).astype(np.float32)
    x = rng.standard_normal((n, fin)).astype(np.float32)
    ref = np.einsum("ni,oi->no", x.astype(np.float64), layer.params["W"].astype(np.float64))
    np.testing.assert_allclose(layer.forward(x)[0], ref + layer.params["b"], rtol=1e-5, atol=1e-7)
    check_layer_gradients(layer, x, mode="full")


def test_linear_gradients_directional_bigger():
    check_layer_gradients(Linear(300, 200, seed=0), np.random.default_rng(0).standard_normal((8, 300)),
                          mode="directional")


def test_flatten_is_c_order_and_its_gradient_is_a_reshape():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    y, _ = Flatten().forward(x)
    np.testing.assert_array_equal(y[1], x[1].ravel())
    assert Flatten().output_shape((3, 4, 5)) == (60,)
    check_layer_gradients(Flatten(), x / 10, mode="full")


def small_net(seed=0, dropout=0.0):
    return Sequential(Conv2D(2, 3, 3, padding=1, seed=seed), ReLU(), MaxPool2D(2),
                      Conv2D(3, 4, 3, seed=seed + 1), ReLU(), Flatten(),
                      Linear(4, 5, seed=seed + 2), Dropout(dropout, seed=seed), Linear(5, 3, seed=seed + 3))


def test_sequential_gradients_and_flat_keys():
    net = small_net(dropout=0.5)
    for layer in net.layers:
        if "W" in layer.params:
            layer.params["W"] *= 30
    assert sorted(net.params) == ["0.W", "0.b", "3.W", "3.b", "6.W", "6.b", "8.W", "8.b"]
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    check_layer_gradients(net, x, train=True, mode="full")
    check_layer_gradients(net, x, train=False, mode="directional")


def test_sequential_output_shape_matches_forward_and_load_params_round_trips():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    y, _ = net.forward(x)
    assert y.shape == (3,) + net.output_shape((2, 6, 6))
    other = small_net(seed=7)
    other.load_params(net.params)
    np.testing.assert_array_equal(other.forward(x)[0], y)


@given(conv_geometries(), seeds)
def test_output_shape_matches_forward(geom, seed):
    shape, f, k, stride, pad = geom
    x = np.zeros(shape, np.float32)
    for layer in (Conv2D(shape[1], f, k, stride, pad, seed=seed), ReLU(), Flatten()):
        assert layer.forward(x)[0].shape == (shape[0],) + layer.output_shape(shape[1:])
    if min(shape[2:]) >= k:
        pool = MaxPool2D(k, stride)
        assert pool.forward(x)[0].shape == (shape[0],) + pool.output_shape(shape[1:])


def test_layers_are_reentrant():
    """No activation state on the layer: interleaved forwards keep their own caches."""
    layer = Conv2D(2, 3, 3, seed=0)
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    y1, c1 = layer.forward(x1)
    layer.forward(x2)  # a second forward in between must not disturb the first cache
    dy = rng.standard_normal(y1.shape)
    dx_late, g_late = layer.backward(dy, c1)
    dx_now, g_now = layer.backward(dy, layer.forward(x1)[1])
    np.testing.assert_array_equal(dx_late, dx_now)
    np.testing.assert_array_equal(g_late["W"], g_now["W"])


@pytest.mark.parametrize("layer,shape", [(Conv2D(2, 3, 3, 2, 1), (2, 2, 7, 7)), (MaxPool2D(2), (2, 2, 6, 6)),
                                         (ReLU(), (2, 3)), (Linear(4, 3), (2, 4)), (Flatten(), (2, 2, 3, 3)),
                                         (Dropout(0.5, seed=0), (50, 4))])
def test_backward_never_writes_into_dy(layer, shape):
    y, cache = layer.forward(np.random.default_rng(0).standard_normal(shape).astype(np.float32), train=True)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    before = dy.copy()
    layer.backward(dy, cache)
    np.testing.assert_array_equal(dy, before)


# --- memory order ---------------------------------------------------------------------------------
def _batch_last(a):
    """Is `a` (N, C, H, W) a view of contiguous (C, H, W, N) memory?"""
    return a.transpose(1, 2, 3, 0).flags.c_contiguous


def test_conv_stack_hands_on_batch_last_activations_and_gradients():
    """Conv outputs are views of the GEMM's (F, OH, OW, N) memory and ReLU and pooling keep that
    order, forward and backward, so no conv needs a transposing copy of its input or its dy."""
    stack = Sequential(Conv2D(3, 4, 3, seed=0), ReLU(), MaxPool2D(2), Conv2D(4, 5, 3, seed=1), ReLU())
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    a, caches = x, []
    for layer in stack.layers:
        a, cache = layer.forward(a)
        caches.append(cache)
        assert _batch_last(a), layer
    d = np.ones_like(a)
    for layer, cache in zip(stack.layers[::-1], caches[::-1]):
        d, _ = layer.backward(d, cache)
        assert _batch_last(d), layer


@pytest.mark.parametrize("layout", ["nchw", "batch-last", "channel-major", "strided"])
def test_layers_give_the_same_numbers_for_any_memory_order(layout):
    """Forward and backward of conv, ReLU and pooling do not depend on how x and dy lie in memory."""
    rng = np.random.default_rng(0)
    x, dy_pool = tie_free((2, 3, 8, 8), 0).astype(np.float32) - 9, rng.standard_normal((2, 3, 4, 4))

    def arrange(a):
        if layout == "batch-last":
            return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
        if layout == "channel-major":
            return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        if layout == "strided":
            big = np.zeros(a.shape[:2] + (a.shape[2] + 1, 2 * a.shape[3]), a.dtype)
            big[:, :, 1:, ::2] = a
            return big[:, :, 1:, ::2]
        return np.ascontiguousarray(a)

    for layer, dy in ((Conv2D(3, 4, 3, padding=1, seed=0), rng.standard_normal((2, 4, 8, 8))),
                      (ReLU(), rng.standard_normal(x.shape)), (MaxPool2D(2), dy_pool)):
        dy = dy.astype(np.float32)
        y_ref, c_ref = layer.forward(x)
        dx_ref, g_ref = layer.backward(dy, c_ref)
        y, cache = layer.forward(arrange(x))
        dx, g = layer.backward(arrange(dy), cache)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, dx_ref)
        for k in g_ref:
            np.testing.assert_array_equal(g[k], g_ref[k])


# --- dropout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_train_scales_survivors_and_eval_is_identity(p):
    x = np.random.default_rng(0).uniform(1, 2, (200, 100)).astype(np.float32)
    layer = Dropout(p, seed=0)
    assert layer.forward(x, train=False)[0] is x
    y, _ = layer.forward(x, train=True)
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.02  # 20000 draws: 4+ standard deviations
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert y.dtype == np.float32


def test_dropout_is_seeded_and_draws_a_new_mask_each_call():
    x = np.ones((30, 40), np.float32)
    a, b = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    ya1, ya2 = a.forward(x, train=True)[0], a.forward(x, train=True)[0]
    np.testing.assert_array_equal(ya1, b.forward(x, train=True)[0])
    np.testing.assert_array_equal(ya2, b.forward(x, train=True)[0])
    assert not np.array_equal(ya1, ya2)


def test_dropout_gradient_uses_the_forward_mask():
    layer = Dropout(0.3, seed=0)
    x = np.random.default_rng(0).standard_normal((20, 10))
    y, cache = layer.forward(x, train=True)
    dx, _ = layer.backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx != 0, y != 0)
    check_layer_gradients(Dropout(0.3, seed=0), x, train=True, mode="full")
    check_layer_gradients(Dropout(0.3, seed=0), x, train=False, mode="full")


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_rate(p):
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(p)


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,x,match", [
    (Conv2D(3, 4, 3), np.zeros((2, 3, 8), np.float32), r"Conv2D.*\(N, 3, H, W\).*\(2, 3, 8\)"),
    (Conv2D(3, 4, 3), np.zeros((2, 4, 8, 8), np.float32), r"Conv2D.*\(N, 3, H, W\).*\(2, 4, 8, 8\)"),
    (Conv2D(3, 4, 5, padding=1), np.zeros((1, 3, 2, 2), np.float32), r"Conv2D.*kernel 5x5.*padded input 4x4"),
    (Conv2D(3, 4, 3), np.zeros((1, 3, 8, 8), np.int64), r"Conv2D.*float.*int64.*\(1, 3, 8, 8\)"),
    (MaxPool2D(2), np.zeros((2, 8, 8), np.float32), r"MaxPool2D.*4-D.*\(2, 8, 8\)"),
    (MaxPool2D(3), np.zeros((1, 2, 2, 5), np.float32), r"MaxPool2D.*window 3x3.*2x5"),
    (MaxPool2D(2), np.zeros((1, 2, 4, 4), np.uint8), r"MaxPool2D.*float.*uint8"),
    (Linear(5, 3), np.zeros((2, 4), np.float32), r"Linear.*\(N, 5\).*\(2, 4\)"),
    (Linear(5, 3), np.zeros((2, 5, 1), np.float32), r"Linear.*2-D.*\(2, 5, 1\)"),
    (Linear(5, 3), np.zeros((2, 5), np.int32), r"Linear.*float.*int32"),
])
def test_bad_input_raises_a_clear_error(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(x)


# --- backends --------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape", [
    (lambda b: Conv2D(3, 4, 3, 2, 1, seed=0, backend=b), (2, 3, 9, 9)),
    (lambda b: MaxPool2D(2), (2, 3, 8, 8)),
    (lambda b: ReLU(), (2, 3, 4, 4)),
    (lambda b: Linear(6, 4, seed=0, backend=b), (3, 6)),
    (lambda b: Flatten(), (2, 3, 2, 2)),
    (lambda b: Dropout(0.5, seed=0), (4, 6)),
])
def test_array_type_in_equals_array_type_out(backend, make, shape):
    """Same results on both backends, and the output lives where the input lives."""
    xp = get_backend(backend)
    x_host = tie_free(shape, 0).astype(np.float32) - 3
    x = xp.asarray(x_host)
    layer, ref = make(backend), make("numpy")
    y, cache = layer.forward(x, train=True)
    dx, grads = layer.backward(y * 0.5, cache)
    assert type(y) is type(x) and type(dx) is type(x)
    assert all(type(g) is type(x) for g in grads.values())
    if isinstance(layer, Dropout) and backend != "numpy":
        # The device draws its own masks (no host draw, no transfer): the same seed gives the same
        # mask on this backend, a 0 / 1/(1-p) mask, applied in both directions.
        mask = to_numpy(cache)
        assert set(np.unique(mask)) <= {0.0, 2.0} and 0 < mask.mean() < 2
        np.testing.assert_array_equal(to_numpy(y), x_host * mask)
        np.testing.assert_array_equal(to_numpy(dx), x_host * mask * 0.5 * mask)
        np.testing.assert_array_equal(to_numpy(make(backend).forward(x, train=True)[1]), mask)
        return
    y_ref, cache_ref = ref.forward(x_host, train=True)
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(dx), ref.backward(y_ref * 0.5, cache_ref)[0], rtol=1e-5, atol=1e-6)
