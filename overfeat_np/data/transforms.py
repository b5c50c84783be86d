"""Image transforms of Section 3 of the paper, moving boxes along with the pixels.

Training: resize so the smallest side is 256, take a random 221x221 (accurate model) or
231x231 (fast model) crop, flip it horizontally half of the time. Evaluation: the same resize
and a center crop. Every function takes an HWC uint8 image and (k, 4) float boxes
(left, top, right, bottom; right/bottom exclusive) and returns both, transformed together.

The geometric functions keep all k boxes (clipped, possibly to zero area) so that callers can
keep labels aligned; `drop_degenerate` then removes the empty ones with their labels, which is
what the composite `TrainTransform` / `EvalTransform` do.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..backend import get_array_module
from .image_io import CorruptImageError

# ImageNet training-set per-channel RGB mean and standard deviation in 0..255 units: the
# widely used (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225) times 255.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def resize_smallest(image: np.ndarray, boxes, size: int = 256):
    """Resize image (H, W, 3) so its smaller side is `size` (aspect kept; PIL bilinear, which
    antialiases when shrinking). Returns image (H', W', 3) and boxes (k, 4) scaled to it."""
    h, w = image.shape[:2]
    boxes = _as_boxes(boxes)
    if min(h, w) == size:
        return image, boxes.copy()
    if h <= w:
        nh, nw = size, max(1, round(w * size / h))
    else:
        nh, nw = max(1, round(h * size / w)), size
    out = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    # Scale by the realised ratios (rounding makes them differ slightly between x and y).
    scale = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    return out, boxes * scale


def crop(image: np.ndarray, boxes, top: int, left: int, height: int, width: int):
    """Cut image[top:top+height, left:left+width]; boxes (k, 4) are shifted and clipped to it
    (a box outside the window keeps its place in the array with zero area)."""
    h, w = image.shape[:2]
    if not (0 <= top and top + height <= h and 0 <= left and left + width <= w):
        raise ValueError(f"crop {height}x{width} at (top={top}, left={left}) does not fit in a "
                         f"{h}x{w} image")
    out = image[top:top + height, left:left + width]
    boxes = _as_boxes(boxes) - np.array([left, top, left, top], np.float32)
    boxes = np.clip(boxes, 0, np.array([width, height, width, height], np.float32))
    return out, boxes


def random_crop(image: np.ndarray, boxes, size, rng: np.random.Generator):
    """Crop a `size` (int or (h, w)) window at a uniformly random position drawn from `rng`.
    Returns image (h, w, 3) and boxes (k, 4) shifted and clipped."""
    ch, cw = _pair(size)
    h, w = image.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the {h}x{w} image; resize first")
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop(image, boxes, top, left, ch, cw)


def center_crop(image: np.ndarray, boxes, size):
    """Crop the central `size` (int or (h, w)) window. Returns image (h, w, 3), boxes (k, 4)."""
    ch, cw = _pair(size)
    h, w = image.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the {h}x{w} image; resize first")
    return crop(image, boxes, (h - ch) // 2, (w - cw) // 2, ch, cw)


def hflip(image: np.ndarray, boxes=None):
    """Mirror left-right: image (H, W, 3) -> a contiguous (H, W, 3) copy; given boxes (k, 4),
    returns (image, boxes) with the boxes mirrored too (x -> W - x)."""
    mirrored = np.ascontiguousarray(image[:, ::-1])
    return mirrored if boxes is None else (mirrored, flip_boxes(boxes, image.shape[1]))


def flip_boxes(boxes, w: int) -> np.ndarray:
    """Boxes (k, 4) of a W-wide image mirrored left-right: x -> W - x."""
    boxes = _as_boxes(boxes)
    return np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(image - mean) / std per channel; image uint8 (H, W, 3), any strides -> float32 (3, H, W)."""
    planes = image.transpose(2, 0, 1)
    x = np.empty(planes.shape, np.float32)
    # uint8 -> float32 is exact, so subtracting in one pass equals converting, then subtracting.
    np.subtract(planes, np.asarray(mean, np.float32).reshape(-1, 1, 1), out=x)
    x *= (1.0 / np.asarray(std, np.float32)).reshape(-1, 1, 1)
    return x


def normalize_batch(x, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (N, 3, H, W) on any backend -> float32 (N, 3, H, W) there, (x - mean) / std per
    channel: bit for bit `normalize` of each image, computed where x lives (on a GPU, after a
    uint8 batch crossed in a quarter of the bytes). Scalars only, so no constant crosses."""
    xp = get_array_module(x)
    out = x.astype(xp.float32)  # exact for uint8, as in `normalize`
    inv = 1.0 / np.asarray(std, np.float32)  # the float32 reciprocals `normalize` multiplies by
    for c, (m, s) in enumerate(zip(np.asarray(mean, np.float32), inv)):
        out[:, c] -= m
        out[:, c] *= s
    return out


def _chw_uint8(image) -> np.ndarray:
    """uint8 (H, W, 3), any strides -> contiguous uint8 (3, H, W), not normalised."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def drop_degenerate(boxes, box_labels, min_size: float = 1.0):
    """Remove boxes (k, 4) narrower or shorter than `min_size` pixels, and their labels (k,)."""
    boxes = _as_boxes(boxes)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return boxes[keep], np.asarray(box_labels, np.int64).reshape(-1)[keep]


class TrainTransform:
    """Training augmentation: resize smallest side -> random crop -> random flip -> normalize.

    crop: int or (h, w), 231 (fast model) or 221 (accurate). resize: smallest side before
    cropping, or None to crop the image as it is (small synthetic images). flip: mirror with
    probability 1/2. Call as t(sample, rng) -> (x float32 (3, h, w), boxes float32 (k', 4),
    box_labels int64 (k',)); boxes that leave the crop are dropped with their labels.
    as_uint8: x is the crop as uint8 (3, h, w), not normalised (`normalize_batch` does it where
    the batch goes; `as_uint8()` gives that twin of a transform).
    """

    def __init__(self, crop=231, resize: int | None = 256, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, flip: bool = True, as_uint8: bool = False):
        self.crop, self.resize, self.flip = crop, resize, flip
        self.mean, self.std = tuple(mean), tuple(std)
        self.uint8 = bool(as_uint8)

    def as_uint8(self) -> TrainTransform:
        """The same transform handing out uint8 crops (same crops and flips for the same rng)."""
        return TrainTransform(self.crop, self.resize, self.mean, self.std, self.flip, as_uint8=True)

    def __call__(self, sample: dict, rng: np.random.Generator):
        image, boxes = sample["image"], sample["boxes"]
        if self.resize is not None:
            image, boxes = resize_smallest(image, boxes, self.resize)
        image, boxes = random_crop(image, boxes, self.crop, rng)
        if self.flip and rng.random() < 0.5:
            # A mirrored view: normalize() reads it in its one pass, no flipped copy is made.
            image, boxes = image[:, ::-1], flip_boxes(boxes, image.shape[1])
        boxes, box_labels = drop_degenerate(boxes, sample["box_labels"])
        x = _chw_uint8(image) if self.uint8 else normalize(image, self.mean, self.std)
        return x, boxes, box_labels

    def __repr__(self) -> str:
        return (f"TrainTransform(crop={self.crop}, resize={self.resize}, flip={self.flip}"
                + (", as_uint8=True)" if self.uint8 else ")"))


class EvalTransform:
    """Evaluation preprocessing: resize smallest side -> center crop -> normalize.

    Same arguments and call signature as TrainTransform; `rng` is accepted and ignored.
    """

    def __init__(self, crop=231, resize: int | None = 256, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, as_uint8: bool = False):
        self.crop, self.resize = crop, resize
        self.mean, self.std = tuple(mean), tuple(std)
        self.uint8 = bool(as_uint8)

    def as_uint8(self) -> EvalTransform:
        """The same transform handing out uint8 crops (see TrainTransform)."""
        return EvalTransform(self.crop, self.resize, self.mean, self.std, as_uint8=True)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None):
        image, boxes = sample["image"], sample["boxes"]
        if self.resize is not None:
            image, boxes = resize_smallest(image, boxes, self.resize)
        image, boxes = center_crop(image, boxes, self.crop)
        boxes, box_labels = drop_degenerate(boxes, sample["box_labels"])
        x = _chw_uint8(image) if self.uint8 else normalize(image, self.mean, self.std)
        return x, boxes, box_labels

    def __repr__(self) -> str:
        return f"EvalTransform(crop={self.crop}, resize={self.resize}" + (", as_uint8=True)" if self.uint8 else ")")


def compute_mean_std(dataset, n: int = 1000, seed: int = 0):
    """Per-channel RGB mean and std (0..255 units), float64 (3,) each, over the pixels of up to
    `n` images drawn without replacement; undecodable images are skipped."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for i in idx:
        try:
            img = dataset[int(i)]["image"].reshape(-1, 3).astype(np.float64)
        except CorruptImageError:
            continue
        total += img.sum(axis=0)
        total_sq += (img * img).sum(axis=0)
        count += len(img)
    if count == 0:
        raise ValueError("no readable image to compute statistics from")
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
