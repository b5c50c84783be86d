"""Loading and collating one mini-batch: the work a DataLoader worker does per task."""

from __future__ import annotations

import numpy as np

from .image_io import CorruptImageError
from .transforms import normalize


def load_batch(dataset, transform, seed: int, epoch: int, indices) -> dict:
    """Load and collate dataset[indices] (n,), augmenting sample i with rng [seed, epoch, i].

    Returns a batch dict (see DataLoader) with an extra key `skipped`: [(index, path, reason)]
    for samples whose image could not be decoded.
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
    x = np.stack(xs).astype(np.float32, copy=False) if xs else np.zeros((0, 3, 0, 0), np.float32)
    return {"x": x, "labels": np.array(labels, np.int64), "boxes": boxes,
            "box_labels": box_labels, "indices": np.array(kept, np.int64), "skipped": skipped}
