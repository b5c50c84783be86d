"""Training the detector spatially, with a background class and negatives chosen on the fly.

Section 5 of Sermanet et al. (ICLR 2014): detection is trained like classification, but with an
extra *background* class and *spatially*: the network runs densely over a whole training image
and every output location gets a target at once. Instead of separate bootstrapping passes,
each image contributes a few negatives chosen on the fly: some random background locations and
the most offending ones (those the current network scores highest as an object).

Conventions of this package:
- Background class: the LAST output, index C for C object classes (`background_index`); object
  class c keeps the index it has in the dataset and in the classifier it starts from.
- Targets (`assign_targets`): a location's window W (its training-size field of view, see
  `dense.output_windows`) takes the class of an object box B when at least `pos_coverage`
  (0.5) of B lies inside W *and* B is not tiny in W (area(B) >= `min_area` * area(W), 0.1:
  a side of about a third of the window). When several objects qualify, the one with the highest
  IoU with W wins. A window that no object touches by more than `neg_coverage` (0.2 of the
  object inside) is background. Every other window (an object cut in half, or too small to
  be this scale's business) is ambiguous: IGNORE (-1), never trained on.
- Negatives (`select_negatives`): per image, the `n_hard` background locations with the highest
  non-background probability, then `n_random` more drawn uniformly from the remaining
  background locations; all other background locations are ignored. Positives are all kept.
- Stride: training uses the coarse stride (offset (0, 0) of the last pooling only, one
  location per `total_stride` pixels): the gradient flows through a single plain forward pass,
  and the scale and flip jitter already move objects across the offsets that fine stride
  would add at test time.
- Dropout: kept at the classifier's rate on the hidden full layers, now 1x1 convolutions; each
  location draws its own mask.
- Host and device: a step sends one buffer to the model's device (`data.batch.pack_arrays`: the
  uint8 images, their targets, and the uniform draws that pick the random negatives, drawn on
  the host from the run's seeded generator so NumPy and a GPU choose the same negatives); the
  images are normalised, the offending scores computed and the negatives chosen there. The host
  reads the loss (and checks it is finite) every `log_every` steps, NumPy at every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .backend import get_array_module, on_cpu, to_numpy
from .boxes import as_boxes, intersection
from .data.batch import pack_arrays, unpack_arrays
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, hflip, normalize_batch
from .dense import fully_convolutional
from .detect import background_index
from .grid import dense_grid
from .layers import Conv2D, Linear, ReLU, Sequential
from .losses import softmax, softmax_cross_entropy
from .models import OverFeat, OverFeatConfig
from .optim import SGD
from .preprocess import resize, resize_boxes
from .scales import detector_train_scales

IGNORE = -1  # target of locations that are not trained on (softmax_cross_entropy's ignore_index)


def make_detector(classifier: OverFeat, seed: int = 0) -> OverFeat:
    """A detector with C + 1 outputs initialised from a C-class classifier (Section 5).

    Features and hidden full layers are copied; the last layer keeps the classifier's rows for
    classes 0..C-1 and gets a new zero row for background (index C), so before fine-tuning the
    detector ranks object classes exactly as the classifier does.
    """
    c = classifier.config
    cfg = OverFeatConfig(**{**c.to_dict(), "convs": c.convs, "hidden": c.hidden,
                            "num_classes": c.num_classes + 1, "name": f"{c.name}-det"})
    xp = classifier.xp
    det = OverFeat(cfg, seed=seed, backend=xp)
    params = {k: v.copy() for k, v in classifier.params.items()}
    last = max((k for k in params if k.startswith("classifier.")), key=lambda k: int(k.split(".")[1]))
    last = last.rsplit(".", 1)[0]  # "classifier.j" of the final Linear
    W, b = params[f"{last}.W"], params[f"{last}.b"]
    params[f"{last}.W"] = xp.concatenate([W, xp.zeros((1, W.shape[1]), W.dtype)])
    params[f"{last}.b"] = xp.concatenate([b, xp.zeros((1,), b.dtype)])
    det.load_params(params)
    return det


# --- targets -------------------------------------------------------------------------------------
def assign_targets(windows, boxes, labels, background: int, pos_coverage: float = 0.5,
                   min_area: float = 0.1, neg_coverage: float = 0.2) -> np.ndarray:
    """Target class of every location from its window (rule in the module docstring).

    windows (..., 4) float (e.g. (H', W', 4) from `dense.output_windows`), boxes (m, 4), labels
    (m,) in 0..background-1 -> int64 (...): an object class, `background`, or IGNORE (-1).
    """
    if not 0 <= neg_coverage <= pos_coverage <= 1:
        raise ValueError(f"assign_targets: need 0 <= neg_coverage <= pos_coverage <= 1, got "
                         f"{neg_coverage}, {pos_coverage}")
    win = np.asarray(windows, dtype=np.float32)
    lead = win.shape[:-1]
    w = as_boxes(win.reshape(-1, 4), "windows")
    b = as_boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "boxes")
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(lab) != len(b):
        raise ValueError(f"assign_targets: {len(b)} boxes but {len(lab)} labels")
    if np.any((lab < 0) | (lab >= background)):
        raise ValueError(f"assign_targets: labels must be object classes 0..{background - 1}, got {lab.tolist()}")
    out = np.full(len(w), background, dtype=np.int64)
    if len(b):
        inter = intersection(w, b, dtype=np.float64)  # (L, m)
        area_b = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-12)  # (m,)
        area_w = (w[:, 2] - w[:, 0]) * (w[:, 3] - w[:, 1])  # (L,)
        cover = inter / area_b[None, :]  # (L, m) fraction of each object inside each window
        pos = (cover >= pos_coverage) & (area_b[None, :] >= min_area * area_w[:, None])
        iou = inter / (area_w[:, None] + area_b[None, :] - inter)
        best = np.where(pos, iou, -1.0).argmax(axis=1)  # (L,) best qualifying object
        has_pos = pos.any(axis=1)
        touched = (cover > neg_coverage).any(axis=1)
        out[touched] = IGNORE
        out[has_pos] = lab[best[has_pos]]
    return out.reshape(lead)


def select_negatives(targets, offending, background: int, n_random: int, n_hard: int, rng=None, *,
                     random_keys=None):
    """Keep all positives and a few negatives per image; every other location -> IGNORE.

    targets (N, ...) int64 from `assign_targets`; offending (N, ...) float, each location's
    highest non-background probability. Per image: the `n_hard` background locations with the
    highest `offending` (ties: lower index), then `n_random` drawn uniformly from the rest of
    the background locations (fewer when an image has fewer): those with the smallest of
    `random_keys` (N, L) uniform draws, L locations per image, or, when not given, of
    `rng.random((N, L))` (a host Generator, host arrays only). Runs where the arrays live (no
    synchronisation on a GPU: sorts, gathers, no boolean indexing). Returns a new int64 array.
    """
    xp = get_array_module(targets, offending)
    n = targets.shape[0]
    flat = targets.reshape(n, -1)
    off = offending.reshape(n, -1).astype(xp.float64)
    if off.shape != flat.shape:
        raise ValueError(f"select_negatives: offending {off.shape} does not match targets {flat.shape}")
    is_bg = flat == background
    out = xp.where(is_bg, IGNORE, flat)
    rows = xp.arange(n)[:, None]
    hard = xp.zeros_like(is_bg)
    if n_hard > 0:
        key = xp.where(is_bg, -off, xp.inf)  # background by offending score, descending
        order = xp.argsort(key, axis=1, kind="stable")[:, :n_hard]
        hard[rows, order] = is_bg[rows, order]
    if n_random > 0:
        u = rng.random(flat.shape) if random_keys is None else random_keys.reshape(flat.shape)
        key = xp.where(is_bg & ~hard, u, xp.inf)
        order = xp.argsort(key, axis=1, kind="stable")[:, :n_random]
        hard[rows, order] |= is_bg[rows, order] & ~hard[rows, order]
    return xp.where(hard, background, out).reshape(targets.shape)


# --- the dense network in training form ------------------------------------------------------------
@dataclass
class DenseTrainNet:
    """Features, last pooling and the head as convolutions (with dropout), for backprop."""

    model: OverFeat
    head: Sequential  # convs (views of the Linear weights), ReLUs and the model's Dropout layers
    head_keys: list  # (head index, classifier index) of each conv/Linear pair

    @classmethod
    def of(cls, model: OverFeat) -> DenseTrainNet:
        """Build from a model (cheap: reshaped views of the Linear weights, no copy)."""
        conv_head = fully_convolutional(model).head
        drops = iter(model.dropout_layers)
        layers = []
        for layer in conv_head.layers:
            layers.append(layer)
            if isinstance(layer, ReLU):
                layers.append(next(drops))
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, Conv2D)]
        linears = [j for j, layer in enumerate(model.classifier.layers) if isinstance(layer, Linear)]
        return cls(model, Sequential(layers), list(zip(convs, linears)))

    def forward(self, x, train: bool = True):
        """x (N, 3, H, W) -> logits (N, C, H', W') at coarse stride (H' = num_windows), cache."""
        m = self.model
        f, fc = m.features.forward(x, train=train)
        p, pc = m.pool.forward(f, train=train)
        y, hc = self.head.forward(p, train=train)
        full = y.shape
        y = dense_grid(m.config, x.shape[2:], fine_stride=False).crop(y)  # windows inside the image
        return y, (fc, pc, hc, full)

    def backward(self, dy, cache) -> dict:
        """dy (N, C, H', W') -> grads keyed like `model.params` (head grads in Linear shapes)."""
        fc, pc, hc, full = cache
        m = self.model
        if dy.shape != full:
            pad = get_array_module(dy).zeros(full, dtype=dy.dtype)
            pad[:, :, :dy.shape[2], :dy.shape[3]] = dy
            dy = pad
        d, gh = self.head.backward(dy, hc)
        grads = {}
        for hi, ci in self.head_keys:
            lin = m.classifier.layers[ci]
            grads[f"classifier.{ci}.W"] = gh[f"{hi}.W"].reshape(lin.params["W"].shape)
            grads[f"classifier.{ci}.b"] = gh[f"{hi}.b"]
        d, _ = m.pool.backward(d, pc)
        _, gf = m.features.backward(d, fc)
        grads.update({f"features.{k}": v for k, v in gf.items()})
        return grads


# --- the training loop ---------------------------------------------------------------------------
@dataclass
class DetectorTrainConfig:
    """Everything that defines a detector fine-tuning run."""

    scales: tuple = ()  # (H, W) a training image is resized to; () = `scales.detector_train_scales`
    steps: int = 200  # SGD steps; one random scale per step
    batch_size: int = 8  # images per step (all resized to the step's scale)
    lr: float = 0.01
    momentum: float = 0.6  # Section 3
    weight_decay: float = 1e-5  # Section 3
    n_random: int = 4  # random negatives per image
    n_hard: int = 4  # most offending negatives per image
    pos_coverage: float = 0.5  # object fraction inside a window to make it a positive
    min_area: float = 0.1  # ... and object area at least this fraction of the window's
    neg_coverage: float = 0.2  # background only where no object is inside by more than this
    flip: bool = True  # random horizontal flips
    seed: int = 0
    log_every: int = 10


@dataclass
class DetectorHistory:
    """What `train_detector` returns: per-step records and the throughput."""

    steps: list = field(default_factory=list)  # {"step", "loss", "positives", "negatives", "scale"}
    images_per_s: float = 0.0


def _resized_batch(samples, hw, flip_mask):
    """Resize samples to hw, flip where asked -> (uint8 images list, boxes list, labels list)."""
    images, boxes, labels = [], [], []
    for s, flip in zip(samples, flip_mask):
        img = resize(s["image"], hw)
        b = resize_boxes(s["boxes"], s["image"].shape[:2], img.shape[:2])
        if flip:
            img, b = hflip(img, b)
        images.append(img)
        boxes.append(b)
        labels.append(s["box_labels"])
    return images, boxes, labels


def detection_targets(config, hw, boxes, labels, background, cfg: DetectorTrainConfig) -> np.ndarray:
    """Coarse-stride targets for a batch at image size hw -> int64 (N, H', W')."""
    win = dense_grid(config, hw, fine_stride=False).windows()
    return np.stack([assign_targets(win, b, lab, background, cfg.pos_coverage, cfg.min_area, cfg.neg_coverage)
                     for b, lab in zip(boxes, labels)])


def _to_device(xp, images, targets, keys) -> list:
    """Host uint8 images [(H, W, 3)], targets and random keys -> the same on xp, in one copy:
    [uint8 (N, 3, H, W), int64 targets, float64 keys]."""
    chw = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    buf, layout = pack_arrays([chw, targets, keys])
    return unpack_arrays(xp.asarray(buf), layout)


def _loss_error(loss, step: int, lr: float) -> FloatingPointError:
    return FloatingPointError(f"train_detector: the loss became {loss} by step {step}; lower the learning "
                              f"rate (now {lr:g})")


def train_detector(detector: OverFeat, dataset, cfg: DetectorTrainConfig | None = None, *,
                   mean=None, std=None, on_step=None, progress: bool = False) -> DetectorHistory:
    """Fine-tune `detector` (see `make_detector`) spatially on a detection dataset, in place.

    dataset: sample-format items (image, boxes, box_labels); images of any size, each resized
    to the step's scale. Per step: a batch of images at one random scale, dense coarse-stride
    logits, targets from the windows, positives + on-the-fly negatives, softmax cross-entropy
    over the chosen locations, backprop through the whole dense network, one SGD step.
    """
    from tqdm.auto import tqdm

    cfg = cfg or DetectorTrainConfig()
    if len(dataset) == 0:
        raise ValueError("train_detector: the dataset is empty")
    scales = tuple(cfg.scales) or detector_train_scales(detector.config)
    s = detector.config.input_size
    for hw in scales:
        if min(hw) < s:
            raise ValueError(f"train_detector: scale {tuple(hw)} is smaller than the {s}x{s} training size")
    bg = background_index(detector)
    xp = detector.xp
    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    net = DenseTrainNet.of(detector)
    opt = SGD(detector.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    hist = DetectorHistory()
    t0, seen = time.perf_counter(), 0
    for step in tqdm(range(cfg.steps), desc="detector", disable=not progress):
        idx = rng.integers(len(dataset), size=cfg.batch_size)
        hw = scales[int(rng.integers(len(scales)))]
        flips = rng.random(cfg.batch_size) < 0.5 if cfg.flip else np.zeros(cfg.batch_size, bool)
        images, boxes, labels = _resized_batch([dataset[int(i)] for i in idx], hw, flips)
        targets = detection_targets(detector.config, hw, boxes, labels, bg, cfg)  # (N, H', W') host
        keys = rng.random((len(idx), targets[0].size)) if cfg.n_random > 0 else np.zeros((len(idx), 0))
        x, targets, keys = _to_device(xp, images, targets, keys)  # the step's one transfer
        x = normalize_batch(x, mean, std)  # (N, 3, H, W) float32
        logits, cache = net.forward(x, train=True)
        offending = softmax(logits)[:, :bg].max(axis=1)  # (N, H', W')
        chosen = select_negatives(targets, offending, bg, cfg.n_random, cfg.n_hard, random_keys=keys)
        loss, dlogits = softmax_cross_entropy(logits, chosen, ignore_index=IGNORE)
        if on_cpu(xp) and not math.isfinite(loss):  # free on the host; a GPU checks at log steps
            raise _loss_error(loss, step + 1, cfg.lr)
        opt.step(net.backward(dlogits, cache))
        seen += cfg.batch_size
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            counts = xp.stack([loss, ((chosen >= 0) & (chosen != bg)).sum().astype(xp.float64),
                               (chosen == bg).sum().astype(xp.float64)])
            loss_h, pos, neg = (float(v) for v in to_numpy(counts))  # the log step's one synchronisation
            if not math.isfinite(loss_h):
                raise _loss_error(loss_h, step + 1, cfg.lr)
            rec = {"step": step + 1, "loss": loss_h, "positives": int(pos), "negatives": int(neg),
                   "scale": list(hw)}
            hist.steps.append(rec)
            if on_step is not None:
                on_step(rec)
    hist.images_per_s = seen / max(time.perf_counter() - t0, 1e-9)
    return hist
