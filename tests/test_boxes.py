"""Box geometry (overfeat_np.boxes) against naive per-pair loops and exact properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from overfeat_np import boxes as B

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def box_arrays(draw, min_n=0, max_n=8, lo=-50.0, hi=200.0, min_side=0.0):
    """Valid (N, 4) float64 boxes: left < right, top < bottom (sides >= min_side)."""
    n = draw(st.integers(min_n, max_n))
    xy = draw(arrays(np.float64, (n, 2), elements=st.floats(lo, hi, allow_nan=False)))
    wh = draw(arrays(np.float64, (n, 2), elements=st.floats(min_side, 100.0, allow_nan=False)))
    return np.concatenate([xy, xy + wh], axis=1)


def naive_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, (l1, t1, r1, b1) in enumerate(a):
        for j, (l2, t2, r2, b2) in enumerate(b):
            iw = max(0.0, min(r1, r2) - max(l1, l2))
            ih = max(0.0, min(b1, b2) - max(t1, t2))
            inter = iw * ih
            union = (r1 - l1) * (b1 - t1) + (r2 - l2) * (b2 - t2) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_hand_computed_values():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10], [2, 2, 4, 4]], float)
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175; disjoint; identical; nested 4 / 100
    np.testing.assert_allclose(B.iou(a, b)[0], [25 / 175, 0, 1, 4 / 100], rtol=1e-6)
    np.testing.assert_allclose(B.intersection(a, b)[0], [25, 0, 100, 4])
    np.testing.assert_allclose(B.area(b), [100, 100, 100, 4])
    np.testing.assert_allclose(B.box_centers(b)[0], [10, 10])
    np.testing.assert_allclose(B.box_sizes(b)[3], [2, 2])
    assert B.iou(a, b).dtype == np.float32


@SETTINGS
@given(box_arrays(), box_arrays())
def test_iou_matches_naive_loop(a, b):
    got = B.iou(a, b, dtype=np.float64)
    assert got.shape == (len(a), len(b))
    np.testing.assert_allclose(got, naive_iou(a, b), rtol=1e-12, atol=1e-12)
    assert np.all((got >= 0) & (got <= 1 + 1e-12))
    np.testing.assert_allclose(got, B.iou(b, a, dtype=np.float64).T)  # symmetric


@SETTINGS
@given(box_arrays(min_n=1, min_side=0.5), st.floats(0.1, 10.0), st.floats(-100, 100))
def test_iou_invariant_to_scale_and_shift(a, s, d):
    np.testing.assert_allclose(
        B.iou(a, a, dtype=np.float64), B.iou(a * s + d, a * s + d, dtype=np.float64), atol=1e-9
    )


@SETTINGS
@given(box_arrays(min_n=1, min_side=0.5))
def test_self_iou_is_one(a):
    np.testing.assert_allclose(np.diag(B.iou(a, a, dtype=np.float64)), 1.0)


@SETTINGS
@given(box_arrays(), st.integers(1, 300), st.integers(1, 300))
def test_clip_boxes_stays_in_image(a, h, w):
    c = B.clip_boxes(a, (h, w), dtype=np.float64)
    assert np.all((c[:, [0, 2]] >= 0) & (c[:, [0, 2]] <= w))
    assert np.all((c[:, [1, 3]] >= 0) & (c[:, [1, 3]] <= h))
    inside = np.all((a >= 0) & (a <= [w, h, w, h]), axis=1)
    np.testing.assert_array_equal(c[inside], a[inside])  # boxes inside are untouched


@SETTINGS
@given(box_arrays(min_n=1))
def test_union_box_contains_all(a):
    u = B.union_box(a, dtype=np.float64)
    assert np.all(a[:, :2] >= u[:2]) and np.all(a[:, 2:] <= u[2:])


def test_encode_window_itself_is_unit_box():
    w = np.array([[10, 20, 110, 70], [0, 0, 5, 8]], float)
    np.testing.assert_allclose(B.encode_relative(w, w), [[0, 0, 1, 1]] * 2)
    # the right half of the window: x from 0.5 to 1, full height
    np.testing.assert_allclose(B.encode_relative([[60, 20, 110, 70]], w[0]), [[0.5, 0, 1, 1]])
    np.testing.assert_allclose(B.decode_relative([[0, 0, 1, 1]], w[1]), [w[1]])


@SETTINGS
@given(box_arrays(min_n=1, max_n=6), st.data())
def test_encode_decode_round_trip(a, data):
    n = len(a)
    windows = data.draw(box_arrays(min_n=n, max_n=n, min_side=1.0))
    rel = B.encode_relative(a, windows, dtype=np.float64)
    np.testing.assert_allclose(B.decode_relative(rel, windows, dtype=np.float64), a, rtol=0, atol=1e-9)
    # a single window (4,) broadcasts over all boxes
    rel1 = B.encode_relative(a, windows[0], dtype=np.float64)
    np.testing.assert_allclose(B.decode_relative(rel1, windows[0], dtype=np.float64), a, atol=1e-9)
    # float32 output round trip, to float32 precision
    back = B.decode_relative(B.encode_relative(a, windows), windows)
    np.testing.assert_allclose(back, a, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "fn", [lambda x: B.area(x), lambda x: B.iou(x, x), lambda x: B.box_centers(x)]
)
def test_bad_shapes_raise_with_shape(fn):
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\), got \(3, 5\)"):
        fn(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[0, 0, np.nan, 1]]))


def test_named_arguments_in_errors():
    with pytest.raises(ValueError, match=r"^b: expected shape \(N, 4\), got \(4,\)"):
        B.iou(np.zeros((2, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"windows: expected shape \(2, 4\) or \(4,\), got \(3, 4\)"):
        B.encode_relative(np.zeros((2, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="windows: expected positive width"):
        B.encode_relative(np.zeros((1, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="hw"):
        B.clip_boxes(np.zeros((1, 4)), (1, 2, 3))


def test_empty_inputs():
    e = np.zeros((0, 4))
    assert B.iou(e, np.ones((3, 4))).shape == (0, 3)
    assert B.area(e).shape == (0,)


@pytest.mark.gpu
def test_cupy_inputs_are_moved_to_host():
    from overfeat_np.backend import cupy_available

    if not cupy_available():
        pytest.skip("needs CuPy: a visible GPU, or the CPU double the tests install where none is")
    import cupy

    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    got = B.iou(cupy.asarray(a), cupy.asarray(a))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, B.iou(a, a))
