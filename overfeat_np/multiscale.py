"""Multi-scale, multi-view classification (Section 3.3 of Sermanet et al., ICLR 2014; Table 5).

The image is resized to each scale, run densely (`dense.dense_forward`, fine stride by default)
as it is and horizontally flipped; each class keeps its best value over the spatial map of each
(scale, flip); those C-vectors are averaged; top-1/top-5 are read off the mean.

Softmax, then max: every location's scores go through a softmax over classes first, and the
spatial max is taken of probabilities. Raw scores of different scales and locations are not on a
common footing (a softmax is invariant to adding a constant per location, raw maxima are not),
probabilities are; the paper's network ends in a softmax, so its "class outputs" are these.

Scales: Table 5's input sizes all have the form input_size + (k*n - 1) * fine_stride, with n the
number of coarse positions per axis (the "pre-reshape" column, `TABLE5_POSITIONS`): sizes for
which every pooling offset gives the same map and the fine map is exactly k*n positions wide.
`scales_for(config)` applies that rule to any model: it gives Table 5 for the accurate model and
the analogous `SCALES_FAST` (215 + 32 n) for the fast one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from .backend import backend_name, get_array_module, to_device, to_numpy
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_smallest
from .dense import dense_forward, output_stride
from .models import accurate_config, fast_config

# Coarse (pre-reshape) positions per axis of Table 5's six scales, (rows, columns).
TABLE5_POSITIONS = ((1, 1), (2, 3), (3, 5), (5, 7), (6, 8), (7, 10))


def scales_for(config, positions=TABLE5_POSITIONS) -> tuple:
    """Input sizes (H, W) with `positions` coarse positions and equal maps at every offset.

    size = input_size + (k*n - 1) * fine_stride for n coarse positions (Table 5's rule).
    """
    k, s = config.convs[-1].pool, output_stride(config, fine_stride=True)
    return tuple(tuple(config.input_size + (k * n - 1) * s for n in hw) for hw in positions)


SCALES_ACCURATE = scales_for(accurate_config())  # Table 5: 245x245, 281x317, ..., 461x569
SCALES_FAST = scales_for(fast_config())  # 247x247, 279x311, 311x375, 375x439, 407x471, 439x535


def select_scales(scales, which) -> tuple:
    """Scales by the paper's 1-based numbers: which = (1, 2, 4, 6) or "1,2,4,6" (Table 2's 4 scales)."""
    if isinstance(which, str):
        which = [int(w) for w in which.split(",") if w.strip()]
    bad = [w for w in which if not 1 <= w <= len(scales)]
    if bad:
        raise ValueError(f"select_scales: scale numbers {bad} out of range 1..{len(scales)}")
    return tuple(scales[w - 1] for w in which)


def _check_image(image):
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}; load it with overfeat_np.data.image_io.load_rgb")


def resize(image, hw):
    """Resize a uint8 (H, W, 3) image to exactly hw = (H', W') (PIL bilinear, antialiased when
    shrinking; samples only inside the image, so edges never pull in padding)."""
    h, w = int(hw[0]), int(hw[1])
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def scale_images(image, scales) -> list:
    """The image at every scale: uint8 (H, W, 3) -> list of uint8 (H_s, W_s, 3).

    Rule: the whole image is resized to exactly the scale's size, its longer side along the
    scale's longer side (a portrait image gets the scale transposed), so every scale is covered
    completely, nothing is cropped, and the maps have the sizes `map_shapes` predicts. The price is
    a mild change of aspect ratio (Table 5's scales have ratios 1.0 to 1.24).
    """
    _check_image(image)
    portrait = image.shape[0] > image.shape[1]
    out = []
    for hw in scales:
        hs, ws = sorted(hw) if not portrait else sorted(hw, reverse=True)
        out.append(resize(image, (hs, ws)))
    return out


def hflip(image):
    """Mirror left-right: (H, W, 3) -> (H, W, 3), a contiguous copy."""
    return np.ascontiguousarray(image[:, ::-1])


def to_input(images, mean=None, std=None, xp=np):
    """uint8 images (N, H, W, 3) or list of equal-sized (H, W, 3) -> float32 (N, 3, H, W) on `xp`,
    normalised per channel with mean/std in 0..255 units (default: ImageNet's, as in training)."""
    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    x = np.stack([normalize(im, mean, std) for im in images])
    return x if xp is np else to_device(x, backend_name(xp))


def softmax(scores, axis=1):
    """Numerically stable softmax along `axis` (classes), any namespace."""
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class ScaleMap(NamedTuple):
    """One (scale, flip) of `classify_multiscale`: the probability map, in image orientation."""

    size: tuple  # (H, W) the image was resized to
    flipped: bool  # True: computed on the mirrored image; `probs` is mirrored back, which lines its
    # locations up with the unflipped map's exactly when (W - input_size) % stride == 0 (all scales_for sizes)
    probs: np.ndarray  # (C, H', W') softmax probabilities per output location (host)


def classify_multiscale(model, image, scales=None, fine_stride=True, flip=True, mean=None, std=None):
    """Section 3.3's classifier: image uint8 (H, W, 3) -> (scores (C,), list of ScaleMap).

    scores[c] = mean over (scale, flip) of the spatial max of class c's softmax probability; it is
    the paper's averaged vector (rank it with `top_k`; it does not sum to 1). scales default to
    `scales_for(model.config)` (all six); pick a subset with `select_scales`.
    """
    scales = scales_for(model.config) if scales is None else scales
    xp = model.xp
    per_scale, best = [], []
    for img in scale_images(image, scales):
        views = [img, hflip(img)] if flip else [img]
        p = to_numpy(softmax(dense_forward(model, to_input(views, mean, std, xp), fine_stride)))  # (V, C, H', W')
        for v, flipped in enumerate([False, True][:len(views)]):
            m = p[v][:, :, ::-1] if flipped else p[v]
            per_scale.append(ScaleMap(img.shape[:2], flipped, np.ascontiguousarray(m)))
            best.append(p[v].max(axis=(1, 2)))
    return np.mean(best, axis=0), per_scale


def ten_views(image, size, short_side=None) -> np.ndarray:
    """The 4 corner + centre crops of `size` and their mirrors: uint8 (10, size, size, 3).

    The image is first resized (aspect kept) so its shorter side is `short_side`, by default the
    paper's 256:221 ratio of resize to crop (256 for the accurate model's 221 crops).
    """
    _check_image(image)
    short_side = round(size * 256 / 221) if short_side is None else int(short_side)
    if short_side < size:
        raise ValueError(f"ten_views: short_side {short_side} is smaller than the {size}x{size} crop")
    img, _ = resize_smallest(image, np.zeros((0, 4), np.float32), short_side)
    h, w = img.shape[:2]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2)]
    crops = [img[t:t + size, left:left + size] for t, left in corners]
    return np.stack(crops + [hflip(c) for c in crops])


def ten_view(model, image, short_side=None, mean=None, std=None):
    """The 10-view baseline (Table 2): softmax probabilities averaged over `ten_views` -> (C,)."""
    x = to_input(ten_views(image, model.config.input_size, short_side), mean, std, model.xp)
    scores, _ = model.forward(x)
    return to_numpy(softmax(scores).mean(axis=0))


def top_k(scores, k=5) -> np.ndarray:
    """Indices of the k largest scores, best first: scores (C,) -> (k,) int64."""
    scores = to_numpy(scores)
    k = min(k, scores.shape[0])
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")].astype(np.int64)
