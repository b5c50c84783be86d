"""Pictures of a training run: loss/accuracy curves, first-layer filters (Figure 2), predictions.

matplotlib is imported inside the plotting functions, so importing this module costs nothing.
Every plotting function returns the matplotlib Figure, or, when `out_png` is given, saves it
there, closes it and returns the path (so scripts and the CLI leak no figures). The training loop
draws nothing: its caller does, with `plot_run`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .backend import to_numpy
from .train import read_log


def _finish(fig, out_png):
    if out_png is None:
        return fig
    import matplotlib.pyplot as plt

    d = os.path.dirname(os.fspath(out_png))
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return os.fspath(out_png)


def plot_history(log, out_png=None):
    """Training loss and accuracy per step, validation top-1/top-5 per epoch.

    log: a log.jsonl path (written by `train.train`) or a list of its records.
    """
    import matplotlib.pyplot as plt

    if isinstance(log, (str, os.PathLike)):
        log = read_log(log)
    steps = [r for r in log if r["kind"] == "step"]
    epochs = [r for r in log if r["kind"] == "epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    if steps:
        s = [r["global_step"] for r in steps]
        ax_loss.plot(s, [r["loss"] for r in steps], lw=0.8, alpha=0.6, label="train (batch)")
        ax_acc.plot(s, [r["acc"] for r in steps], lw=0.8, alpha=0.6, label="train (batch)")
    if epochs:
        s = [r["global_step"] for r in epochs]
        ax_loss.plot(s, [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
        if any("val_loss" in r for r in epochs):
            ev = [r for r in epochs if "val_loss" in r]
            sv = [r["global_step"] for r in ev]
            ax_loss.plot(sv, [r["val_loss"] for r in ev], "s-", label="validation")
            ax_acc.plot(sv, [r["val_top1"] for r in ev], "s-", label="validation top-1")
            ax_acc.plot(sv, [r["val_top5"] for r in ev], "^--", label="validation top-5")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, out_png)


def plot_run(out_dir, model) -> list:
    """The pictures of a finished run in `out_dir`: curves.png (from its log.jsonl) and filters.png
    (the first layer of `model`). `overfeat-np train` and the demo draw them; returns the paths."""
    return [plot_history(os.path.join(out_dir, "log.jsonl"), os.path.join(out_dir, "curves.png")),
            plot_filters(model, os.path.join(out_dir, "filters.png"))]


def filter_grid(W, pad: int = 1) -> np.ndarray:
    """First-layer filters W (F, 3, k, k) as one RGB image (rows*(k+pad), cols*(k+pad), 3) in [0, 1].

    Each filter is stretched to [0, 1] on its own (as in the paper's Figure 2), so weak and strong
    filters are equally visible.
    """
    W = to_numpy(W).astype(np.float64)
    if W.ndim != 4 or W.shape[1] != 3:
        raise ValueError(f"filter_grid: expected first-layer weights (F, 3, k, k), got shape {W.shape}")
    f, _, kh, kw = W.shape
    lo = W.min(axis=(1, 2, 3), keepdims=True)
    hi = W.max(axis=(1, 2, 3), keepdims=True)
    W = (W - lo) / np.maximum(hi - lo, 1e-12)
    cols = math.ceil(math.sqrt(f))
    rows = math.ceil(f / cols)
    grid = np.ones((rows * (kh + pad) + pad, cols * (kw + pad) + pad, 3))
    for i in range(f):  # F is at most 96: one small copy per filter
        r, c = divmod(i, cols)
        y, x = pad + r * (kh + pad), pad + c * (kw + pad)
        grid[y:y + kh, x:x + kw] = W[i].transpose(1, 2, 0)
    return grid


def plot_filters(model, out_png=None, title: str | None = None):
    """The first conv layer's filters as RGB patches, like Figure 2 of the paper."""
    import matplotlib.pyplot as plt

    W = model.params["features.0.W"]
    grid = filter_grid(W)
    fig, ax = plt.subplots(figsize=(4.5, 4.5 * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    f, _, kh, kw = W.shape
    ax.set_title(title or f"layer 1: {f} filters of {kh}x{kw}x3")
    # A few hundred steps on small synthetic images leave filters close to their random start:
    # edges and colour blobs, as in the paper's Figure 2, need long training on real photos.
    ax.text(0.5, -0.02, "short runs leave filters near their random start;\nthe paper's edges and blobs take "
            "long training on photos", transform=ax.transAxes, ha="center", va="top", fontsize=7)
    return _finish(fig, out_png)


def plot_predictions(images, labels, probs, classes, out_png=None, cols: int = 6):
    """A grid of images titled "predicted (p)", green when right, red with "true: class" when wrong.

    images: uint8 (N, H, W, 3); labels (N,) true classes (-1: unknown); probs (N, C) softmax.
    """
    import matplotlib.pyplot as plt

    probs = to_numpy(probs)
    n = len(images)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    pred = probs.argmax(axis=1)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i])
        ok = labels[i] < 0 or pred[i] == labels[i]
        title = f"{classes[pred[i]]} ({probs[i, pred[i]]:.2f})"
        if not ok:
            title += f"\ntrue: {classes[labels[i]]}"
        ax.set_title(title, fontsize=8, color="green" if ok else "red")
    fig.tight_layout()
    return _finish(fig, out_png)
