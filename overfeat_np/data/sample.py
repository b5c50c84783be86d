"""The sample format shared by every dataset in this package.

`ds[i]` returns a dict with exactly these keys:

- image: uint8 (H, W, 3), RGB
- label: int, class of the dominant (first) object; -1 when the image holds no object
- boxes: float32 (k, 4), (left, top, right, bottom) in pixels of `image`; right/bottom are
  exclusive, so the whole image is (0, 0, W, H)
- box_labels: int64 (k,), class of each box

Datasets also expose `classes` (list of names, index = label) and `num_classes`.
One exception, for speed: `ImageFolderDataset(pil_images=True)` hands out `image` as the decoded
RGB PIL image, which only TrainTransform / EvalTransform read (and check_sample rejects).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SAMPLE_KEYS = ("image", "label", "boxes", "box_labels")


def make_sample(image, label, boxes=None, box_labels=None) -> dict:
    """Build a sample dict with the canonical dtypes; boxes (k, 4), box_labels (k,)."""
    boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes
    box_labels = np.zeros((0,), np.int64) if box_labels is None else box_labels
    return {
        "image": image if isinstance(image, Image.Image) else np.asarray(image, dtype=np.uint8),
        "label": int(label),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "box_labels": np.asarray(box_labels, dtype=np.int64).reshape(-1),
    }


def check_sample(sample: dict, num_classes: int | None = None) -> None:
    """Raise ValueError (TypeError for a non-int label) describing the first way `sample` departs from the format above."""
    if set(sample) != set(SAMPLE_KEYS):
        raise ValueError(f"sample keys {sorted(sample)} != {sorted(SAMPLE_KEYS)}")
    img, boxes, bl = sample["image"], sample["boxes"], sample["box_labels"]
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
            and img.shape[2] == 3):
        raise ValueError(f"image must be uint8 (H, W, 3), got {getattr(img, 'shape', None)}")
    if not isinstance(sample["label"], (int, np.integer)):
        raise TypeError(f"label must be an int, got {type(sample['label']).__name__}")
    if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be float32 (k, 4), got {boxes.dtype} {boxes.shape}")
    if bl.dtype != np.int64 or bl.shape != (boxes.shape[0],):
        raise ValueError(f"box_labels must be int64 ({boxes.shape[0]},), got {bl.dtype} {bl.shape}")
    h, w = img.shape[:2]
    if len(boxes) and (np.any(boxes[:, :2] < 0) or np.any(boxes[:, 2] > w)
                       or np.any(boxes[:, 3] > h) or np.any(boxes[:, 2:] <= boxes[:, :2])):
        raise ValueError(f"boxes {boxes.tolist()} not inside the {w}x{h} image or degenerate")
    if num_classes is not None:
        labels = np.append(bl, sample["label"])
        if np.any(labels < -1) or np.any(labels >= num_classes) or np.any(bl < 0):
            raise ValueError(f"labels {labels.tolist()} out of range for {num_classes} classes")
