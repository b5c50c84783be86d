"""The scales an image is run at (Section 3.3, Table 5), and one way to name them.

Table 5's input sizes all have the form input_size + (k*n - 1) * fine_stride, with n the number
of coarse positions per axis (the "pre-reshape" column, `TABLE5_POSITIONS`): sizes for which every
pooling offset gives the same map and the fine map is exactly k*n positions wide. `scales_for`
applies that rule to any model: Table 5 for the accurate model, the analogous `SCALES_FAST`
(215 + 32 n) for the fast one.

Naming scales (`parse_scales`, the CLI's `--scales` everywhere): a comma-separated list whose items
are either the 1-based number of one of the model's `scales_for` sizes ("1,2,4,6", Table 2's four
scales) or a size, "HxW" or "S" for a square (each side at least the training size). A bare number
is a scale number when it is at most the number of scales, else a square size: sizes are never
that small, so the two cannot be confused.

Detection has its own defaults (`detection_scales`, `detector_train_scales`): a model's config may
name them (the small model does: sizes made for its 128-pixel synthetic detection images);
otherwise Table 5's rule.
"""

from __future__ import annotations

import numpy as np

from .grid import output_stride
from .models import accurate_config, fast_config

# Coarse (pre-reshape) positions per axis of Table 5's six scales, (rows, columns).
TABLE5_POSITIONS = ((1, 1), (2, 3), (3, 5), (5, 7), (6, 8), (7, 10))
PAPER_SCALES = (1, 2, 4, 6)  # Table 2 and Section 4 use 4 of the 6 scales


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


def parse_scales(text, config) -> tuple:
    """`--scales` text -> ((H, W), ...) for `config`: scale numbers, "HxW" or "S" sizes, mixed freely
    (the module docstring's rule). ValueError with the accepted forms on anything else."""
    table = scales_for(config)
    items = [part.strip().lower() for part in str(text).split(",")]
    if not any(items):
        raise ValueError("--scales is empty; give scale numbers like 1,2,4,6 or sizes like 104,281x317")
    out = []
    for part in items:
        try:
            hw = tuple(int(v) for v in part.split("x"))
        except ValueError:
            raise ValueError(f"--scales: cannot read {part!r}; write scale numbers 1..{len(table)} (the "
                             f"model's Table-5 scales {list(table)}) or sizes like 104 or 281x317") from None
        if len(hw) == 1 and 1 <= hw[0] <= len(table):
            out.append(table[hw[0] - 1])
            continue
        hw = hw * 2 if len(hw) == 1 else hw
        if len(hw) != 2 or min(hw) < config.input_size:
            raise ValueError(f"--scales: {part!r} is neither a scale number 1..{len(table)} nor a size H or HxW "
                             f"with both sides >= the {config.input_size}-pixel training input of {config.name}")
        out.append(hw)
    return tuple(out)


def detection_scales(config) -> tuple:
    """Default detection scales (H, W): the config's `detection_scales`, else `scales_for(config)`."""
    return tuple(tuple(s) for s in config.detection_scales) or scales_for(config)


def detector_train_scales(config) -> tuple:
    """Sizes detector fine-tuning resizes its images to: the config's, else `detection_scales`."""
    return tuple(tuple(s) for s in config.detector_train_scales) or detection_scales(config)


# --- choosing scales from the size of the objects ---------------------------------------------------
FIT_RANGE = (0.4, 0.9)
"""`scales_for_objects` aims to show every expected object at a side between 0.4 and 0.9 of the
model's window at one of the scales: the sizes the regressor learned from windows that see all of
the object (the synthetic localization set trains on objects of 20-80% of the window)."""

SCALE_RATIO = 2 ** 0.5  # consecutive chosen scales differ by ~1.41x in linear size (Table 5: 1.15-1.3x)
MIN_VIEW = 0.5  # regressor.MIN_OVERLAP, repeated to keep this module below `regressor`


def _rule_size(side: float, config) -> int:
    """The nearest size >= the training input with equal maps at every pooling offset (Table 5's
    rule: input_size + (k*n - 1) * fine_stride)."""
    k, s = config.convs[-1].pool, output_stride(config, fine_stride=True)
    n = max(1, round((side - config.input_size + s) / (k * s)))
    return config.input_size + (k * n - 1) * s


def scales_for_objects(config, object_sizes, image_hw, max_scales: int = 6) -> tuple:
    """Scales (H, W) that show objects of `object_sizes` (min, max) pixels at a side between
    FIT_RANGE of the model's window (`config.input_size`).

    object_sizes: the side (sqrt of the area) of the smallest and largest expected object in
    the original image of size image_hw (H, W). The smallest scale brings the largest object to
    0.9 windows; each next one is SCALE_RATIO larger, until the smallest object reaches 0.4
    windows (at least 2 scales, so that scales can vote; at most max_scales). Each scale keeps the image's aspect ratio and is rounded
    to Table 5's rule (`_rule_size`); it is never below the training input, so objects already
    larger than the window at the smallest possible scale stay larger (`object_scale_warnings`).
    """
    lo, hi = (float(v) for v in object_sizes)
    if not 0 < lo <= hi:
        raise ValueError(f"object sizes: need 0 < min <= max pixels, got {object_sizes}")
    h, w = (float(v) for v in image_hw)
    win = float(config.input_size)
    f, last = FIT_RANGE[1] * win / hi, FIT_RANGE[0] * win / lo
    factors = [f]
    while (factors[-1] < last or len(factors) < 2) and len(factors) < max_scales:  # >= 2 scales to vote
        factors.append(factors[-1] * SCALE_RATIO)
    out = []
    for f in factors:
        hw = (_rule_size(h * f, config), _rule_size(w * f, config))
        if hw not in out:
            out.append(hw)
    return tuple(out)


def object_scale_warnings(config, scales, object_sizes, image_hw) -> list:
    """Messages for the scales at which even the smallest expected object is so much larger than
    the window that no window sees MIN_VIEW of it (side > window / sqrt(MIN_VIEW)): there the
    regressor reads windows it never trained on and the class scores come from object parts."""
    lo = float(object_sizes[0])
    h = float(image_hw[0])
    limit = config.input_size / MIN_VIEW ** 0.5
    out = []
    for hw in scales:
        side = lo * hw[0] / h
        if side > limit:
            out.append(f"at scale {hw[0]}x{hw[1]} objects of {lo:.0f} px become {side:.0f} px, more than "
                       f"{limit:.0f} px ({1 / MIN_VIEW ** 0.5:.2f}x the {config.input_size}-px window): no window "
                       f"sees half of an object there; choose smaller scales (--object-size picks them)")
    return out


def object_size_range(boxes, low: float = 5, high: float = 95) -> tuple:
    """(min, max) object side in pixels from ground-truth boxes (M, 4): the low and high
    percentiles of sqrt(width x height), e.g. from a few training images' boxes."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
    side = side[side > 0]
    if not len(side):
        raise ValueError("object_size_range: no box with a positive area")
    return float(np.percentile(side, low)), float(np.percentile(side, high))


def relative_object_sizes(samples, low: float = 5, high: float = 95) -> tuple:
    """(min, max) object side as a fraction of its image's side, from samples with boxes.

    samples: an iterable of dicts in the package's sample format ('image' (H, W, 3), 'boxes'
    (k, 4)), e.g. a few training images. Each box side sqrt(w x h) is divided by its image's
    sqrt(H x W), so images of different sizes mix; the low and high percentiles are returned
    (`object_size_range`). Multiply by a new image's sqrt(H x W) to get pixels for
    `scales_for_objects` (`object_sizes_for`).
    """
    rel = [np.asarray(s["boxes"], np.float64).reshape(-1, 4) / _image_side(s["image"].shape[:2])
           for s in samples]
    if not rel:
        raise ValueError("relative_object_sizes: no samples")
    return object_size_range(np.concatenate(rel), low, high)


def object_sizes_for(fractions, image_hw) -> tuple:
    """(min, max) pixels in an image of image_hw (H, W) from `relative_object_sizes` fractions."""
    side = _image_side(image_hw)
    return float(fractions[0]) * side, float(fractions[1]) * side


def _image_side(image_hw) -> float:
    # An image's side for object fractions: sqrt(H x W), as a box's side is sqrt(w x h).
    return float(np.sqrt(float(image_hw[0]) * float(image_hw[1])))
