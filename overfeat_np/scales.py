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
