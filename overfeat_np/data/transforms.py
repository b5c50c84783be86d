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
from .image_io import CorruptImageError, image_hw

# ImageNet training-set per-channel RGB mean and standard deviation in 0..255 units: the
# widely used (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225) times 255.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def smallest_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(H', W') of an h x w image resized so its smaller side is `size`, aspect kept (rounded)."""
    if min(h, w) == size:
        return h, w
    if h <= w:
        return size, max(1, round(w * size / h))
    return max(1, round(h * size / w)), size


def resize_smallest(image: np.ndarray, boxes, size: int = 256):
    """Resize image (H, W, 3) so its smaller side is `size` (aspect kept; PIL bilinear, which
    antialiases when shrinking). Returns image (H', W', 3) and boxes (k, 4) scaled to it."""
    h, w = image.shape[:2]
    boxes = _as_boxes(boxes)
    nh, nw = smallest_side_shape(h, w, size)
    if (nh, nw) == (h, w):
        return image, boxes.copy()
    out = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    return out, boxes * _resize_ratios(h, w, nh, nw)


def _resize_ratios(h, w, nh, nw) -> np.ndarray:
    # The realised ratios (rounding makes them differ slightly between x and y), per box coordinate.
    return np.array([nw / w, nh / h, nw / w, nh / h], np.float32)


def resized_crop(image, boxes, size: int | None, top: int, left: int, height: int, width: int):
    """The window (top, left, height, width) of `image` (H, W, 3) resized to smallest side `size`
    (None: not resized), and boxes (k, 4) moved with it, shifted and clipped to the window.
    image may also be an RGB PIL image (`ImageFolderDataset(pil_images=True)`), which is then
    resampled as it is, without the copy into and out of an array; the crop is uint8 (h, w, 3).

    The same as `crop(*resize_smallest(image, boxes, size), top, left, height, width)` to within
    two grey levels (the filter weights agree to rounding, and PIL rounds each of its two passes
    to 8 bits; on photos almost every pixel is equal) and exactly the same boxes, but only the
    window is resampled: PIL's resize with a source box computes each output pixel from the same
    filter taps as the full resize (its kernel is clipped at the image's edges, not the box's),
    so a 231 crop of a 500x375 photo costs about 60% of the full resize (bench_loader.py)."""
    h, w = image_hw(image)
    nh, nw = (h, w) if size is None else smallest_side_shape(h, w, size)
    if not (0 <= top and top + height <= nh and 0 <= left and left + width <= nw):
        raise ValueError(f"crop {height}x{width} at (top={top}, left={left}) does not fit in the "
                         f"{nh}x{nw} image (resized from {h}x{w})")
    pil = isinstance(image, Image.Image)
    if (nh, nw) == (h, w):
        return crop(np.asarray(image) if pil else image, boxes, top, left, height, width)
    ratios = _resize_ratios(h, w, nh, nw)
    sx, sy = w / nw, h / nh
    source = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
    out = (image if pil else Image.fromarray(image)).resize((width, height), Image.BILINEAR,
                                                           box=source)
    out = np.asarray(out)
    return out, _crop_boxes(_as_boxes(boxes) * ratios, top, left, height, width)


def _crop_boxes(boxes: np.ndarray, top, left, height, width) -> np.ndarray:
    boxes = boxes - np.array([left, top, left, top], np.float32)
    return np.clip(boxes, 0, np.array([width, height, width, height], np.float32))


def random_offset(h: int, w: int, size, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a `size` (int or (h, w)) window placed uniformly at random in an h x w
    image, drawn from `rng` (two integers: top, then left)."""
    ch, cw = _pair(size)
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the {h}x{w} image; resize first")
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))


def center_offset(h: int, w: int, size) -> tuple[int, int]:
    """(top, left) of the central `size` (int or (h, w)) window of an h x w image (floor)."""
    ch, cw = _pair(size)
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the {h}x{w} image; resize first")
    return (h - ch) // 2, (w - cw) // 2


def crop(image: np.ndarray, boxes, top: int, left: int, height: int, width: int):
    """Cut image[top:top+height, left:left+width]; boxes (k, 4) are shifted and clipped to it
    (a box outside the window keeps its place in the array with zero area)."""
    h, w = image.shape[:2]
    if not (0 <= top and top + height <= h and 0 <= left and left + width <= w):
        raise ValueError(f"crop {height}x{width} at (top={top}, left={left}) does not fit in a "
                         f"{h}x{w} image")
    return image[top:top + height, left:left + width], _crop_boxes(_as_boxes(boxes), top, left,
                                                                      height, width)


def random_crop(image: np.ndarray, boxes, size, rng: np.random.Generator):
    """Crop a `size` (int or (h, w)) window at a uniformly random position drawn from `rng`.
    Returns image (h, w, 3) and boxes (k, 4) shifted and clipped."""
    top, left = random_offset(*image.shape[:2], size, rng)
    return crop(image, boxes, top, left, *_pair(size))


def center_crop(image: np.ndarray, boxes, size):
    """Crop the central `size` (int or (h, w)) window. Returns image (h, w, 3), boxes (k, 4)."""
    return crop(image, boxes, *center_offset(*image.shape[:2], size), *_pair(size))


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

    def _resized_shape(self, image) -> tuple[int, int]:
        h, w = image_hw(image)
        return (h, w) if self.resize is None else smallest_side_shape(h, w, self.resize)

    def as_uint8(self) -> TrainTransform:
        """The same transform handing out uint8 crops (same crops and flips for the same rng)."""
        return TrainTransform(self.crop, self.resize, self.mean, self.std, self.flip, as_uint8=True)

    def __call__(self, sample: dict, rng: np.random.Generator):
        image, boxes = sample["image"], sample["boxes"]
        # The crop is drawn in the resized image's frame, then only it is resampled
        # (resized_crop): the pixels of resizing, then cropping, at a fraction of the cost.
        h, w = self._resized_shape(image)
        top, left = random_offset(h, w, self.crop, rng)
        image, boxes = resized_crop(image, boxes, self.resize, top, left, *_pair(self.crop))
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

    _resized_shape = TrainTransform._resized_shape

    def as_uint8(self) -> EvalTransform:
        """The same transform handing out uint8 crops (see TrainTransform)."""
        return EvalTransform(self.crop, self.resize, self.mean, self.std, as_uint8=True)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None):
        image, boxes = sample["image"], sample["boxes"]
        top, left = center_offset(*self._resized_shape(image), self.crop)
        image, boxes = resized_crop(image, boxes, self.resize, top, left, *_pair(self.crop))
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
