"""Checks for the lessons' exercises, and their reference solutions.

A lesson's exercise cell asks the learner to write one function between `START OF YOUR CODE` and
`END OF YOUR CODE`; the cell after it calls a `check_*` function from here, which compares the
learner's function with the package's own code on several inputs and says what is wrong (or
that the exercise is still open, while the body raises NotImplementedError). The `solution_*`
functions are plain reference answers; the test suite runs every lesson with them filled in.
"""

from __future__ import annotations

import numpy as np

from .functional import maxpool_backward, maxpool_forward
from .im2col import conv_outsize, im2col
from .merge import match_score

NOT_DONE = "not done yet: write the function above, between START and END, and run both cells again"


def _run(fn, *args):
    """fn(*args), or None when its body still raises NotImplementedError."""
    try:
        return fn(*args)
    except NotImplementedError:
        return None


# --- lesson 01: im2col --------------------------------------------------------------------------
def solution_im2col(x, kh, kw, stride=1, pad=0):
    """x (N, C, H, W) -> columns (C*kh*kw, OH*OW*N): one strided slice per filter tap."""
    n, c, h, w = x.shape
    oh, ow = conv_outsize(h, kh, stride, pad), conv_outsize(w, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((c, kh, kw, oh, ow, n), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]  # (N, C, OH, OW)
            cols[:, i, j] = patch.transpose(1, 2, 3, 0)  # batch innermost
    return cols.reshape(c * kh * kw, oh * ow * n)


def check_im2col(fn) -> str:
    """Compare fn(x, kh, kw, stride, pad) -> (C*kh*kw, OH*OW*N) with the package's `im2col`."""
    rng = np.random.default_rng(0)
    for n, c, h, w, k, s, p in [(1, 1, 5, 5, 3, 1, 0), (2, 3, 7, 6, 3, 1, 1), (3, 2, 9, 8, 3, 2, 1), (2, 2, 6, 6, 2, 2, 0)]:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        got = _run(fn, x, k, k, s, p)
        if got is None:
            return NOT_DONE
        want, _ = im2col(x, k, k, s, p)
        case = f"x {x.shape}, {k}x{k} filter, stride {s}, pad {p}"
        assert got.shape == want.shape, f"{case}: columns have shape {got.shape}, expected {want.shape}"
        if not np.array_equal(got, want):
            hint = ("the same numbers in another order: check the column order (oh, ow, n), batch innermost"
                    if np.array_equal(np.sort(got, axis=None), np.sort(want, axis=None)) else "wrong values")
            raise AssertionError(f"{case}: {hint}")
    return "correct: your im2col equals the package's on 4 geometries"


# --- lesson 02: max pooling backward --------------------------------------------------------------
def solution_maxpool_backward(dout, x, k):
    """dout (N, C, H/k, W/k), x (N, C, H, W) -> dx: each window's gradient to its (first) maximum."""
    n, c, h, w = x.shape
    win = x[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, h // k, w // k, k * k)
    first = win.argmax(axis=-1)  # the first maximum of each window, row by row
    dwin = np.zeros_like(win)
    np.put_along_axis(dwin, first[..., None], dout[..., None], axis=-1)
    dx = np.zeros_like(x)
    dx[:, :, :h // k * k, :w // k * k] = dwin.reshape(n, c, h // k, w // k, k, k).transpose(0, 1, 2, 4, 3, 5) \
        .reshape(n, c, h // k * k, w // k * k)
    return dx


def check_maxpool_backward(fn) -> str:
    """Compare fn(dout, x, k) -> dx with the package's max pooling backward on tie-free inputs."""
    rng = np.random.default_rng(1)
    for n, c, h, w, k in [(1, 1, 4, 4, 2), (2, 3, 6, 9, 3), (2, 2, 7, 5, 2)]:
        x = rng.permutation(n * c * h * w).reshape(n, c, h, w).astype(np.float64)  # no ties
        y, cache = maxpool_forward(x, k)
        dout = rng.standard_normal(y.shape)
        got = _run(fn, dout, x, k)
        if got is None:
            return NOT_DONE
        want = np.asarray(maxpool_backward(dout, cache))
        case = f"x {x.shape}, {k}x{k} pooling"
        assert got.shape == x.shape, f"{case}: dx has shape {got.shape}, expected the input's {x.shape}"
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{case}: wrong gradient")
    return "correct: your max pooling backward equals the package's on 3 shapes"


# --- lesson 06: the match score of greedy merge -----------------------------------------------------
def solution_match_score(a, b):
    """Boxes a (4,), b (4,) as (left, top, right, bottom) -> centre distance / mean side + 1 - IoU."""
    ca, cb = np.array([a[0] + a[2], a[1] + a[3]]) / 2, np.array([b[0] + b[2], b[1] + b[3]]) / 2
    side = ((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1])) / 4
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(np.linalg.norm(ca - cb) / side + 1 - inter / union)


def check_match_score(fn) -> str:
    """Compare fn(a, b) -> float with `merge.match_score` on pairs of boxes."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        lt = rng.uniform(0, 50, (2, 2))
        boxes = np.concatenate([lt, lt + rng.uniform(5, 40, (2, 2))], axis=1).astype(np.float32)
        got = _run(fn, boxes[0], boxes[1])
        if got is None:
            return NOT_DONE
        want = float(match_score(boxes[:1], boxes[1:])[0, 0])
        assert abs(got - want) < 1e-4 * max(1.0, want), f"boxes {boxes[0]}, {boxes[1]}: got {got:.5f}, expected {want:.5f}"
    return "correct: your match score equals the package's on 20 pairs"
