"""Loading and collating one mini-batch: the work a DataLoader worker does per task."""

from __future__ import annotations

import numpy as np

from .image_io import CorruptImageError
from .transforms import normalize

_ALIGN = 8  # the labels' int64 bytes start on an 8-byte boundary of the packed buffer


def _packed_layout(x_shape) -> tuple:
    """(image bytes, offset of the labels) in a packed buffer for images of x_shape (N, 3, H, W)."""
    nbytes = int(np.prod(x_shape))
    return nbytes, -(-nbytes // _ALIGN) * _ALIGN


def pack_batch(images, labels) -> np.ndarray:
    """uint8 images [(3, H, W)] and int64 labels (N,) -> one uint8 buffer: the images as
    (N, 3, H, W), padding to 8 bytes, the labels' bytes. One copy moves both to a GPU."""
    x_shape = (len(images),) + tuple(images[0].shape)
    nbytes, offset = _packed_layout(x_shape)
    buf = np.zeros(offset + 8 * len(images), np.uint8)
    np.stack(images, out=buf[:nbytes].reshape(x_shape))
    buf[offset:].view(np.int64)[:] = labels
    return buf


def unpack_batch(buf, x_shape) -> tuple:
    """Views of a `pack_batch` buffer, host or device (no copy): (uint8 (N, 3, H, W), int64 (N,))."""
    nbytes, offset = _packed_layout(x_shape)
    return buf[:nbytes].reshape(x_shape), buf[offset:offset + 8 * x_shape[0]].view(np.int64)


def pack_arrays(arrays) -> tuple:
    """Host arrays -> (one uint8 buffer holding each array's bytes at an 8-byte boundary, layout):
    one copy moves them all to a GPU, `unpack_arrays` gives views of them there."""
    layout, offset = [], 0
    for a in arrays:
        layout.append((offset, a.dtype.str, tuple(a.shape)))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    buf = np.zeros(offset, np.uint8)
    for a, (start, _, _) in zip(arrays, layout):
        buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)[...] = a
    return buf, tuple(layout)


def unpack_arrays(buf, layout) -> list:
    """Views (no copy) of the arrays in a `pack_arrays` buffer, host or device."""
    out = []
    for start, dtype, shape in layout:
        dtype = np.dtype(dtype)
        out.append(buf[start:start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape))
    return out


def load_batch(dataset, transform, seed: int, epoch: int, indices) -> dict:
    """Load and collate dataset[indices] (n,), augmenting sample i with rng [seed, epoch, i].

    Returns a batch dict (see DataLoader) with an extra key `skipped`: [(index, path, reason)]
    for samples whose image could not be decoded. A transform that hands out uint8 images gives
    `packed` (`pack_batch`: images and labels in one buffer) and `x_shape` instead of x and
    labels (one buffer crosses the worker's pipe; the loader adds x and labels as views of it).
    """
    xs, labels, boxes, box_labels, kept, skipped = [], [], [], [], [], []
    for i in indices:
        i = int(i)
        try:
            sample = dataset[i]
        except CorruptImageError as err:
            skipped.append((i, err.path, err.reason))
            continue
        if transform is None:
            x, b, bl = normalize(sample["image"], 0.0, 1.0), sample["boxes"], sample["box_labels"]
        else:
            x, b, bl = transform(sample, np.random.default_rng([seed, epoch, i]))
        xs.append(x)
        labels.append(sample["label"])
        boxes.append(np.asarray(b, np.float32).reshape(-1, 4))
        box_labels.append(np.asarray(bl, np.int64).reshape(-1))
        kept.append(i)
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"samples of one batch have different shapes {sorted(shapes)}; use a "
                         f"transform that crops to a fixed size")
    rest = {"boxes": boxes, "box_labels": box_labels, "indices": np.array(kept, np.int64), "skipped": skipped}
    if xs and xs[0].dtype == np.uint8:
        return {"packed": pack_batch(xs, np.array(labels, np.int64)), "x_shape": (len(xs),) + xs[0].shape, **rest}
    x = np.stack(xs).astype(np.float32, copy=False) if xs else np.zeros((0, 3, 0, 0), np.float32)
    return {"x": x, "labels": np.array(labels, np.int64), **rest}
