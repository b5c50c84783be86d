"""Box geometry for localization and detection (OverFeat, Sermanet et al. 2014, Sections 4-5).

Boxes are float arrays of shape (N, 4) holding (left, top, right, bottom) in pixels. Areas use
the continuous convention, area = (right - left) * (bottom - top); no "+1". Everything runs on
host NumPy arrays: CuPy inputs are moved with the explicit `backend.to_numpy`. Arithmetic is
float64 inside; outputs are float32 unless `dtype` says otherwise.
"""

from __future__ import annotations

import numpy as np

from overfeat_np.backend import to_numpy

__all__ = [
    "area",
    "as_boxes",
    "box_centers",
    "box_sizes",
    "clip_boxes",
    "decode_relative",
    "encode_relative",
    "intersection",
    "iou",
    "union_box",
]


def as_boxes(boxes, name: str = "boxes", allow_single: bool = False) -> np.ndarray:
    """Validate and return `boxes` as a float64 host array of shape (N, 4).

    Raises ValueError naming `name`, the expected and the actual shape, or the NaN/inf found.
    With `allow_single`, a single box of shape (4,) is accepted and returned as (1, 4).
    """
    a = np.asarray(to_numpy(boxes), dtype=np.float64)
    if allow_single and a.shape == (4,):
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (N, 4), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf")
    return a


def _as_vector(x, n: int, name: str, dtype=np.float64) -> np.ndarray:
    """Validate a per-box vector of length `n` (shape (n,)), finite when floating."""
    a = np.asarray(to_numpy(x))
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    a = a.astype(dtype, copy=False)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return a


def _area64(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _intersection64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of float64 (N, 4) and (M, 4) -> (N, M)."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)  # (N, M)


def _iou64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of float64 (N, 4) and (M, 4) -> (N, M); 0 where the union is empty."""
    inter = _intersection64(a, b)
    union = _area64(a)[:, None] + _area64(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def area(boxes, dtype=np.float32) -> np.ndarray:
    """Areas (N,) of boxes (N, 4); an inverted box (right < left or bottom < top) has area 0."""
    return _area64(as_boxes(boxes)).astype(dtype)


def box_centers(boxes, dtype=np.float32) -> np.ndarray:
    """Centres (N, 2) as (x, y) of boxes (N, 4)."""
    b = as_boxes(boxes)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1).astype(dtype)


def box_sizes(boxes, dtype=np.float32) -> np.ndarray:
    """Sizes (N, 2) as (width, height) of boxes (N, 4)."""
    b = as_boxes(boxes)
    return np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1).astype(dtype)


def intersection(a, b, dtype=np.float32) -> np.ndarray:
    """Pairwise intersection areas (N, M) of boxes a (N, 4) and b (M, 4)."""
    return _intersection64(as_boxes(a, "a"), as_boxes(b, "b")).astype(dtype)


def iou(a, b, dtype=np.float32) -> np.ndarray:
    """Pairwise intersection over union (N, M) of boxes a (N, 4) and b (M, 4).

    The localization and detection criterion of Sections 4-5 (a guess counts when IoU >= 0.5).
    Pairs whose union is empty (two degenerate boxes) get IoU 0.
    """
    return _iou64(as_boxes(a, "a"), as_boxes(b, "b")).astype(dtype)


def clip_boxes(boxes, hw, dtype=np.float32) -> np.ndarray:
    """Clip boxes (N, 4) to an image of size hw = (height, width): x into [0, W], y into [0, H]."""
    b = as_boxes(boxes)
    if len(hw) != 2:
        raise ValueError(f"hw: expected (height, width), got {hw!r}")
    h, w = float(hw[0]), float(hw[1])
    lo = np.zeros(4)
    hi = np.array([w, h, w, h])
    return np.clip(b, lo, hi).astype(dtype)


def union_box(boxes, dtype=np.float32) -> np.ndarray:
    """The smallest box (4,) containing all boxes (N, 4), N >= 1."""
    b = as_boxes(boxes)
    if len(b) == 0:
        raise ValueError("boxes: expected at least one box, got shape (0, 4)")
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]).astype(dtype)


def _windows_like(windows, n: int) -> np.ndarray:
    """Windows as (N, 4) float64: one window (4,) is broadcast to all N boxes."""
    w = np.asarray(to_numpy(windows), dtype=np.float64)
    if w.shape == (4,):
        w = np.broadcast_to(w, (n, 4))
    if w.shape != (n, 4):
        raise ValueError(f"windows: expected shape ({n}, 4) or (4,), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("windows: expected finite coordinates, got NaN or inf")
    size = np.stack([w[:, 2] - w[:, 0], w[:, 3] - w[:, 1]], axis=1)
    if np.any(size <= 0):
        raise ValueError("windows: expected positive width and height (right > left, bottom > top)")
    return w


def encode_relative(boxes, windows, dtype=np.float32) -> np.ndarray:
    """Express boxes (N, 4) in the frame of windows (N, 4) or one window (4,) -> (N, 4).

    Section 4.2 trains the regressor on the true box "expressed in the frame of the window": the
    window is the field of view of one output location (l, t, r, b) in image pixels, and

        rel = ((l - wl) / ww, (t - wt) / wh, (r - wl) / ww, (b - wt) / wh),

    with ww = wr - wl, wh = wb - wt. A box equal to its window is (0, 0, 1, 1); a box spilling
    outside the window has coordinates below 0 or above 1. Inverse: `decode_relative`.
    """
    b = as_boxes(boxes)
    w = _windows_like(windows, len(b))
    origin = w[:, [0, 1, 0, 1]]
    scale = np.stack([w[:, 2] - w[:, 0], w[:, 3] - w[:, 1]], axis=1)[:, [0, 1, 0, 1]]
    return ((b - origin) / scale).astype(dtype)


def decode_relative(deltas, windows, dtype=np.float32) -> np.ndarray:
    """Map relative coordinates (N, 4) in windows (N, 4) or (4,) back to image pixels (N, 4).

    Inverse of `encode_relative`: box = window_origin + rel * window_size per coordinate.
    """
    d = as_boxes(deltas, "deltas")
    w = _windows_like(windows, len(d))
    origin = w[:, [0, 1, 0, 1]]
    scale = np.stack([w[:, 2] - w[:, 0], w[:, 3] - w[:, 1]], axis=1)[:, [0, 1, 0, 1]]
    return (origin + d * scale).astype(dtype)
