"""The bounding-box regressor of Section 4 (Sermanet et al., ICLR 2014): head, targets, loss, files.

The regressor reads the *pooled last-conv maps* that the classifier reads, so the feature layers
are shared and frozen. Its head is two hidden full layers and an output layer, built from the start
as convolutions so that `dense.dense_outputs` slides it over any image at every pooling offset
(fine stride), exactly like the classifier (Section 3.3; `dense.dense_outputs`):

    Conv2D(C, h1, f x f) -> ReLU -> Conv2D(h1, h2, 1x1) -> ReLU -> Conv2D(h2, 4 or 4*classes, 1x1)

f is the pooled map of one training crop (fast 6, accurate 5, small 3), (h1, h2) = (4096, 1024)
for the full models, scaled with the model's width (`regressor_hidden`: small 128 -> 32).

Box parameterisation (`boxes.encode_relative`): every output location sees one training-size
window (`dense.output_windows`), and predicts the box (left, top, right, bottom) in that window's
frame, 0 = the window's left/top edge, 1 = its right/bottom edge. A box equal to the window is
(0, 0, 1, 1); coordinates may leave [0, 1] when the object spills out of the window. Relative
coordinates make one set of weights serve every location and every scale.

Single-class regression (SCR, `per_class=False`) has 4 outputs shared by all classes; per-class
regression (PCR) has 4 per class, output channel 4*c + j for class c and coordinate j, and only the
ground-truth class's 4 outputs are trained (`regression_loss`). Section 4 found SCR better.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .backend import get_array_module, get_backend, to_numpy
from .boxes import decode_relative, encode_relative
from .dense import dense_outputs
from .grid import DenseGrid
from .layers import Conv2D, ReLU, Sequential
from .losses import l2_loss
from .models import OverFeat, OverFeatConfig, he_normal
from .serialization import atomic_savez, describe_architecture, read_npz

MIN_OVERLAP = 0.5  # Section 4: windows overlapping the box by less than 50% are not trained on
FORMAT_VERSION = 1
_META_KEY = "__regressor__"


@dataclass
class Regressor:
    """A box regressor head for one model (its pooled features), in convolutional form."""

    head: Sequential  # Conv2D f x f, ReLU, Conv2D 1x1, ReLU, Conv2D 1x1
    per_class: bool  # False: SCR, 4 outputs; True: PCR, 4 * num_classes outputs
    num_classes: int
    model_config: OverFeatConfig  # the model whose pooled maps it reads

    @property
    def params(self) -> dict:
        return self.head.params

    @property
    def outputs(self) -> int:
        return 4 * self.num_classes if self.per_class else 4

    @property
    def kernel(self) -> int:
        return self.head.layers[0].kernel_size[0]

    @property
    def hidden(self) -> tuple:
        return tuple(layer.out_channels for layer in self.head.layers[:-1] if isinstance(layer, Conv2D))

    @property
    def xp(self):
        return get_array_module(self.head.layers[0].params["W"])

    def __repr__(self):
        kind = "PCR" if self.per_class else "SCR"
        return f"Regressor({kind}, {self.model_config.name}, hidden={self.hidden}, outputs={self.outputs})"


def regressor_hidden(config: OverFeatConfig) -> tuple:
    """Hidden widths (h1, h2): Section 4's 4096 -> 1024 for the full models, scaled like the model.

    h1 = the model's last hidden width (4096 fast and accurate), h2 = h1 / 4 (1024); small: 128, 32.
    """
    h1 = int(config.hidden[-1])
    return h1, max(1, h1 // 4)


def build_regressor(model: OverFeat, per_class: bool = False, hidden: tuple | None = None, seed: int = 0,
                    init: str = "auto") -> Regressor:
    """A fresh regressor head for `model`, on the model's backend.

    hidden: (h1, h2), default `regressor_hidden(model.config)`. init: "paper" N(0, 1e-2) (Section 3),
    "he" N(0, 2 / fan_in) (`models.he_normal`), "auto" = the model config's `weight_init` (He for the
    small model, whose fan-ins make N(0, 1e-2) vanish). Biases start at 0; `train_regressor` sets
    the output bias to the mean target before the first step.
    """
    if init not in ("auto", "paper", "he"):
        raise ValueError(f"build_regressor: init must be 'auto', 'paper' or 'he', got {init!r}")
    config = model.config
    c, f, _ = model.pooled_shape
    h1, h2 = regressor_hidden(config) if hidden is None else (int(hidden[0]), int(hidden[1]))
    out = 4 * config.num_classes if per_class else 4
    backend = model.xp
    rng = np.random.default_rng([seed, 5])
    head = Sequential([
        # the input is frozen features: its gradient is never needed (saves a GEMM and col2im)
        Conv2D(c, h1, f, seed=rng, backend=backend, need_input_grad=False), ReLU(),
        Conv2D(h1, h2, 1, seed=rng, backend=backend), ReLU(),
        Conv2D(h2, out, 1, seed=rng, backend=backend),
    ])
    if (config.weight_init if init == "auto" else init) == "he":
        he_normal(head.params, rng)
    return Regressor(head, bool(per_class), int(config.num_classes), config)


def check_compatible(regressor: Regressor, model: OverFeat):
    """Raise ValueError when `regressor` was built for another model (other features or classes)."""
    if regressor.model_config.to_dict() != model.config.to_dict():
        raise ValueError(
            f"the regressor was built for {describe_architecture(regressor.model_config)} but the model is "
            f"{describe_architecture(model.config)}; train a regressor for this model "
            "(overfeat-np train-regressor) or load the classifier it was trained with")


# --- targets --------------------------------------------------------------------------------------
def window_overlap(windows, boxes):
    """Fraction of each box inside each window: windows (..., 4), boxes (M, 4) -> (..., M) float32.

    overlap = area(window & box) / area(box). This is Section 4's "overlaps the box by 50%":
    intersection over the *box's* area, i.e. how much of the object the window sees. IoU would
    reject a small object lying wholly inside a large window (IoU = box area / window area), the
    very case the regressor handles best; the box-area fraction keeps every window that sees at
    least half of the object, and drops windows that see too little of it to say where it ends.
    """
    w = np.asarray(windows, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(w[..., None, 2], b[:, 2]) - np.maximum(w[..., None, 0], b[:, 0])
    ih = np.minimum(w[..., None, 3], b[:, 3]) - np.maximum(w[..., None, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)  # (..., M)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # (M,)
    out = np.zeros_like(inter)
    np.divide(inter, area, out=out, where=area > 0)
    return out.astype(np.float32)


def regression_targets(windows, boxes, box_labels=None, min_overlap: float = MIN_OVERLAP):
    """Training targets of every window (Section 4.2).

    windows (..., 4) pixels (e.g. (H', W', 4) from `dense.output_windows`); boxes (M, 4) the
    ground truth in the same pixels; box_labels (M,) their classes. Each window is assigned the
    box it sees the largest fraction of (`window_overlap`); windows that see less than
    `min_overlap` of every box are masked out. Returns targets (..., 4) float32 = that box in the
    window's frame (`boxes.encode_relative`), labels (...,) int64 (its class, -1 when masked or
    no labels) and mask (...,) bool.
    """
    windows = np.asarray(windows, dtype=np.float32)
    lead = windows.shape[:-1]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return (np.zeros(lead + (4,), np.float32), np.full(lead, -1, np.int64), np.zeros(lead, bool))
    ov = window_overlap(windows, boxes)  # (..., M)
    best = ov.argmax(-1)  # (...,)
    mask = np.take_along_axis(ov, best[..., None], -1)[..., 0] >= min_overlap
    flat_w = windows.reshape(-1, 4)
    targets = encode_relative(boxes[best.reshape(-1)], flat_w).reshape(lead + (4,))
    if box_labels is None:
        labels = np.full(lead, -1, np.int64)
    else:
        labels = np.asarray(box_labels, np.int64).reshape(-1)[best]
        labels = np.where(mask, labels, -1)
    return targets, labels, mask


# --- the head, dense and per window ----------------------------------------------------------------
def dense_regress(regressor: Regressor, unpooled, grid: DenseGrid):
    """The regressor at every output of `grid`: unpooled last-conv maps (N, C, U_h, U_w) ->
    (N, outputs, H', W'), relative boxes; location (i, j) predicts in the frame of window
    `grid.windows()[i, j]` (`dense.dense_outputs`, the same engine as the classifier)."""
    return dense_outputs(regressor.head, unpooled, grid)


def location_boxes(regressor: Regressor, unpooled, grid: DenseGrid) -> np.ndarray:
    """Boxes of every output of `grid` in the original image's pixels (Section 4.3 step b).

    unpooled (1, C, U_h, U_w) -> host float32 (C_r, H', W', 4), C_r = 1 (SCR) or num_classes
    (PCR, indexed by class); each box decoded from its window's frame and mapped from the
    grid's input back to the image (`grid.to_image`), not clipped.
    """
    rel = to_numpy(dense_regress(regressor, unpooled, grid))[0]  # (4 C_r, H', W')
    qh, qw = grid.shape
    rel = rel.reshape(-1, 4, qh, qw).transpose(0, 2, 3, 1)  # (C_r, H', W', 4)
    win = np.broadcast_to(grid.windows(), rel.shape).reshape(-1, 4)
    return (decode_relative(rel.reshape(-1, 4), win) * grid.to_image).reshape(rel.shape).astype(np.float32, copy=False)


def class_outputs(pred, classes):
    """The 4 box outputs of the given classes: pred (N, 4*C) PCR, classes (N,) -> (N, 4).

    (An SCR prediction (N, 4) is returned unchanged.) classes live where pred does.
    """
    xp = get_array_module(pred)
    if pred.shape[1] == 4:
        return pred
    n = pred.shape[0]
    return pred.reshape(n, -1, 4)[xp.arange(n), classes]


def regression_loss(pred, targets, labels=None, mask=None):
    """L2 loss between predicted and true boxes in window frames (Section 4.2) and its gradient.

    pred (N, 4) (SCR) or (N, 4*C) (PCR); targets (N, 4); labels (N,) the ground-truth classes,
    needed for PCR, whose loss reads only those 4 outputs, so every other class's outputs get an
    exactly zero gradient; mask (N,) 1 = train on this window, 0 = skip (`regression_targets`).
    targets, labels and mask live where pred does (no silent copy). Returns (loss, dpred like
    pred); the loss is `losses.l2_loss`'s 0-d float64 (reading it on a GPU synchronises).
    """
    xp = get_array_module(pred)
    if pred.ndim != 2 or pred.shape[1] % 4:
        raise ValueError(f"regression_loss: pred must be (N, 4) or (N, 4*classes), got {pred.shape}")
    if pred.shape[1] == 4:
        return l2_loss(pred, targets, mask)
    if labels is None:
        raise ValueError("regression_loss: a per-class (PCR) prediction needs labels, the ground-truth "
                         "class of every window")
    if get_array_module(labels) is not xp:
        raise TypeError(f"regression_loss: labels live on {get_array_module(labels).__name__}, pred on "
                        f"{xp.__name__}; move them explicitly (xp.asarray) before the call")
    n = pred.shape[0]
    rows = xp.arange(n)
    safe = xp.where(labels >= 0, labels, 0)  # masked windows (label -1) carry no gradient anyway
    loss, dsel = l2_loss(pred.reshape(n, -1, 4)[rows, safe], targets, mask)
    dpred = xp.zeros((n, pred.shape[1] // 4, 4), dtype=pred.dtype)
    dpred[rows, safe] = dsel
    return loss, dpred.reshape(pred.shape)


# --- files ----------------------------------------------------------------------------------------
def save_regressor(regressor: Regressor, path):
    """Write the head's parameters (host float32) and its description to `path` (.npz, atomic)."""
    arrays = {f"head.{k}": to_numpy(v).astype(np.float32, copy=False) for k, v in regressor.params.items()}
    meta = {"format": FORMAT_VERSION, "per_class": regressor.per_class, "num_classes": regressor.num_classes,
            "hidden": list(regressor.hidden), "model_config": regressor.model_config.to_dict()}
    arrays[_META_KEY] = np.array(json.dumps(meta))
    atomic_savez(path, **arrays)


def load_regressor(path, model: OverFeat | None = None, backend: str | None = None) -> Regressor:
    """Read a file written by `save_regressor`.

    model: when given, the regressor must have been trained on this model's features (else a
    ValueError naming both architectures); it is put on the model's backend. backend: "numpy" or
    "cupy" when no model is given (default numpy).
    """
    path = os.fspath(path)
    hint = "write one with overfeat-np train-regressor (or localize.save_regressor)"
    z = read_npz(path, "regressor file", hint)
    if _META_KEY not in z:
        raise ValueError(f"{path!r} is an .npz file but not a regressor (no {_META_KEY}); {hint}")
    meta = json.loads(str(z[_META_KEY]))
    arrays = {k[len("head."):]: v for k, v in z.items() if k.startswith("head.")}
    if int(meta.get("format", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path!r} has regressor format {meta['format']}, newer than this overfeat-np reads "
                         f"({FORMAT_VERSION}); upgrade overfeat-np")
    config = OverFeatConfig.from_dict(meta["model_config"])
    if model is not None:
        if model.config.to_dict() != config.to_dict():
            raise ValueError(
                f"{path!r} holds a regressor for {describe_architecture(config)} but the model is "
                f"{describe_architecture(model.config)}; pass the classifier it was trained with, or train "
                "a regressor for this model (overfeat-np train-regressor)")
        backend = model.xp
    xp = get_backend(backend or "numpy")
    return _regressor_from_arrays(path, arrays, config, bool(meta["per_class"]), int(meta["num_classes"]), xp)


def _regressor_from_arrays(path, arrays, config, per_class, num_classes, xp) -> Regressor:
    """A Regressor holding the saved arrays (moved to xp), its layer shapes read from them."""
    layers, i = [], 0
    while f"{i}.W" in arrays:
        if f"{i}.b" not in arrays:
            raise ValueError(f"{path!r}: regressor parameter '{i}.b' is missing; the file is damaged")
        W, b = (xp.asarray(arrays[f"{i}.{k}"], dtype=np.float32) for k in "Wb")
        layers.append(Conv2D.from_params(W, b, need_input_grad=i > 0))  # no random draw
        if f"{i + 2}.W" in arrays:
            layers.append(ReLU())
        i += 2
    out = 4 * num_classes if per_class else 4
    if len(layers) != 5 or layers[-1].out_channels != out:
        raise ValueError(f"{path!r}: expected 3 conv layers ending in {out} outputs; the file is damaged")
    return Regressor(Sequential(layers), per_class, num_classes, config)
