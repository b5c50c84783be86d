"""Multi-scale, multi-view classification (Section 3.3 of Sermanet et al., ICLR 2014; Table 5).

The image is resized to each scale (`scales`), run densely (`dense.dense_passes`, fine stride by
default) as it is and horizontally flipped; each class keeps its best value over the spatial map
of each (scale, flip); those C-vectors are averaged; top-1/top-5 are read off the mean.

Softmax, then max: every location's scores go through a softmax over classes first, and the
spatial max is taken of probabilities. Raw scores of different scales and locations are not on a
common footing (a softmax is invariant to adding a constant per location, raw maxima are not),
probabilities are; the paper's network ends in a softmax, so its "class outputs" are these.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import to_numpy
from .data.transforms import hflip, resize_smallest
from .dense import dense_passes, fully_convolutional
from .losses import softmax
from .preprocess import check_image, to_input
from .scales import scales_for


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
    `scales.scales_for(model.config)` (all six); pick a subset with `scales.select_scales`.
    """
    scales = scales_for(model.config) if scales is None else scales
    net = fully_convolutional(model)
    per_scale, best = [], []
    for sp in dense_passes(net, image, scales, fine_stride, flip, mean, std):
        p = to_numpy(softmax(net.outputs(sp.unpooled, sp.grid)))  # (V, C, H', W')
        for v in range(len(p)):
            m = p[v][:, :, ::-1] if v else p[v]  # view 1 is the mirror image
            per_scale.append(ScaleMap(sp.grid.input_hw, bool(v), np.ascontiguousarray(m)))
            best.append(p[v].max(axis=(1, 2)))
    return np.mean(best, axis=0), per_scale


def ten_views(image, size, short_side=None) -> np.ndarray:
    """The 4 corner + centre crops of `size` and their mirrors: uint8 (10, size, size, 3).

    The image is first resized (aspect kept) so its shorter side is `short_side`, by default the
    paper's 256:221 ratio of resize to crop (256 for the accurate model's 221 crops).
    """
    check_image(image, "ten_views")
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
