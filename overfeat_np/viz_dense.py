"""Pictures of dense classification: the per-scale class maps of `classify_multiscale`."""

from __future__ import annotations

import numpy as np


def save_class_maps(per_scale_maps, path, class_names=None, cls=None):
    """Draw one panel per (scale, flip) of the probability map of class `cls` (default: the top class
    of the averaged spatial maxima) and save it to `path` (any matplotlib format). Returns `cls`.

    per_scale_maps: list of `multiscale.ScaleMap` (size, flipped, probs (C, H', W')).
    """
    # A bare Figure (no pyplot) renders with Agg and leaves the caller's backend and figures alone.
    from matplotlib.figure import Figure

    if not per_scale_maps:
        raise ValueError("save_class_maps: no maps given; pass the second result of classify_multiscale")
    if cls is None:
        cls = int(np.argmax(np.mean([m.probs.max(axis=(1, 2)) for m in per_scale_maps], axis=0)))
    name = class_names[cls] if class_names is not None else f"class {cls}"
    n = len(per_scale_maps)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = max(float(m.probs[cls].max()) for m in per_scale_maps)  # one colour scale for all panels
    for ax, m in zip(axes.ravel(), per_scale_maps):
        im = ax.imshow(m.probs[cls], vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(f"{m.size[0]}x{m.size[1]}{' flip' if m.flipped else ''}: {m.probs.shape[1]}x{m.probs.shape[2]}",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=f"P({name})")
    fig.suptitle(f"class map of {name!r} per scale")
    fig.savefig(path, dpi=100)
    return cls
