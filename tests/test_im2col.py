"""im2col / col2im: the column matrix against its definition, and col2im as its exact adjoint."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from overfeat_np.im2col import (
    batch_last,
    col2im,
    conv_outsize,
    im2col,
    pad_batch_last,
    stride_phases,
)


@st.composite
def geometries(draw):
    """(x shape, kh, kw, stride, pad) with the kernel fitting inside the padded input."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, pad = draw(st.integers(1, 4)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * pad), kh - 2 * pad + 9))
    w = draw(st.integers(max(1, kw - 2 * pad), kw - 2 * pad + 9))
    return (n, c, h, w), kh, kw, stride, pad


@given(st.integers(1, 40), st.integers(1, 9), st.integers(1, 5), st.integers(0, 4))
def test_conv_outsize_counts_window_positions(size, k, stride, pad):
    assume(k <= size + 2 * pad)
    positions = range(0, size + 2 * pad - k + 1, stride)  # top-left corners that fit
    assert conv_outsize(size, k, stride, pad) == len(positions)


@given(geometries(), st.integers(0, 2**32 - 1))
def test_im2col_matches_definition(geom, seed):
    """cols[(c, i, j), (oh, ow, n)] == x_padded[n, c, oh*stride + i, ow*stride + j]."""
    shape, kh, kw, s, p = geom
    n, c, h, w = shape
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    cols, (oh, ow) = im2col(x, kh, kw, s, p)
    assert (oh, ow) == (conv_outsize(h, kh, s, p), conv_outsize(w, kw, s, p))
    assert cols.shape == (c * kh * kw, oh * ow * n) and cols.dtype == np.float32
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ref = np.empty((c, kh, kw, oh, ow, n), np.float32)
    for i in range(kh):
        for j in range(kw):
            for a in range(oh):
                for b in range(ow):
                    ref[:, i, j, a, b, :] = xp[:, :, a * s + i, b * s + j].T
    np.testing.assert_array_equal(cols, ref.reshape(cols.shape))


@given(geometries(), st.integers(0, 2**32 - 1))
def test_col2im_is_adjoint_of_im2col(geom, seed):
    """<im2col(x), c> == <x, col2im(c)> for any x and c: col2im is the transpose of im2col."""
    shape, kh, kw, s, p = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols, _ = im2col(x, kh, kw, s, p)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, shape, kh, kw, s, p)
    assert back.shape == shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kh,stride,pad", [(3, 1, 1), (2, 2, 0), (3, 2, 1), (1, 1, 0)])
def test_col2im_of_ones_counts_covering_windows(kh, stride, pad):
    """Folding all-ones columns gives, per pixel, how many windows contain it (counted by loops)."""
    shape = (1, 1, 7, 6)
    cols, (oh, ow) = im2col(np.zeros(shape), kh, kh, stride, pad)
    counts = col2im(np.ones_like(cols), shape, kh, kh, stride, pad)[0, 0]
    ref = np.zeros((7 + 2 * pad, 6 + 2 * pad))
    for a in range(oh):
        for b in range(ow):
            ref[a * stride:a * stride + kh, b * stride:b * stride + kh] += 1
    np.testing.assert_array_equal(counts, ref[pad:pad + 7, pad:pad + 6])


def test_col2im_leaves_its_input_untouched():
    cols, _ = im2col(np.ones((2, 3, 5, 5), np.float32), 3, 3, 1, 1)
    before = cols.copy()
    col2im(cols, (2, 3, 5, 5), 3, 3, 1, 1)
    np.testing.assert_array_equal(cols, before)


@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5),
       st.integers(0, 2**32 - 1))
def test_stride_phases_matches_definition(s, h, w, rows, cols, seed):
    """out[:, p, q, a, b] == xt[:, a*s + p, b*s + q] where that exists, else 0, for x given as a
    plain NCHW batch and as an NCHW view of batch-last memory xt."""
    xt = np.random.default_rng(seed).standard_normal((2, h, w, 3)).astype(np.float32)
    out = stride_phases(xt.transpose(3, 0, 1, 2), s, rows, cols)
    np.testing.assert_array_equal(stride_phases(np.ascontiguousarray(xt.transpose(3, 0, 1, 2)), s, rows, cols), out)
    assert out.shape == (2, s, s, rows, cols, 3) and out.dtype == np.float32
    for p in range(s):
        for q in range(s):
            for a in range(rows):
                for b in range(cols):
                    inside = a * s + p < h and b * s + q < w
                    want = xt[:, a * s + p, b * s + q] if inside else 0
                    np.testing.assert_array_equal(out[:, p, q, a, b], want)


def test_pad_batch_last_copies_nothing_for_a_batch_last_view():
    """What the conv layers hand on, an NCHW view of (C, H, W, N) memory, is used as it is."""
    x = batch_last(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5, 2))
    assert x.shape == (2, 3, 4, 5)
    assert np.shares_memory(pad_batch_last(x, 0), x)
    np.testing.assert_array_equal(pad_batch_last(x, 0), x.transpose(1, 2, 3, 0))
    np.testing.assert_array_equal(pad_batch_last(x, 1)[:, 1:-1, 1:-1], x.transpose(1, 2, 3, 0))
    assert pad_batch_last(x, 1)[:, 0].any() == 0 and pad_batch_last(x, 1)[:, :, -1].any() == 0


def test_pad_batch_last_accepts_any_memory_order():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for a in (x, x[:, :, ::-1], np.asfortranarray(x)):
        np.testing.assert_array_equal(pad_batch_last(a, 2)[:, 2:-2, 2:-2], a.transpose(1, 2, 3, 0))


@pytest.mark.parametrize("pad", [0, 1])
def test_col2im_returns_batch_last_memory(pad):
    """dx (N, C, H, W) is a view of (C, H, W, N) memory, so the ReLU and conv below it need no copy."""
    shape = (2, 3, 6, 6)
    cols, _ = im2col(np.zeros(shape, np.float32), 3, 3, 1, pad)
    dx = col2im(np.ones_like(cols), shape, 3, 3, 1, pad)
    assert dx.shape == shape
    assert dx.transpose(1, 2, 3, 0).flags.c_contiguous == (pad == 0)
    assert dx.strides[0] < dx.strides[3] < dx.strides[2] < dx.strides[1]  # (C, H, W, N) in memory
