"""Localization (Section 4 of Sermanet et al., ICLR 2014): train the box regressor, predict, merge.

    reg = build_regressor(model)                                   # overfeat_np.regressor
    train_regressor(model, reg, dataset, scales)                   # frozen features, L2 loss
    loc = localize(model, reg, image, scales)                      # top-5 (class, box, confidence)

Training (Section 4.2). The feature layers are frozen, so each image's unpooled last-conv maps
are computed once per scale and the pooled f x f patch under every trained window is cached
(`window_samples`); SGD then sees only the regressor head. Running the head on one window's
f x f patch gives a 1x1 output that *is* the dense head's output at that location (offset
pooling picks the patch; the tests check it), so training on cached patches is the same as
training the dense head on all locations with the < 50% windows masked out, minus the work on
masked locations, and it lets mini-batches mix windows of many images and scales.

Prediction (Section 4.3 steps a-c, `predict_boxes`): at every scale the classifier and the
regressor read the same unpooled maps; the top-k classes by spatial maximum of the softmax map
(a) each get the box of every location (b), scored by that location's class probability, and
the boxes of all scales are pooled (c). `localize` then selects (`METHODS`): "merge", the
package's accumulation (`merge.accumulate`: votes weighted by (the image area a location
stands for) ** `merge.DEFAULT_AREA_POWER`, weak windows dropped, confidence-weighted boxes;
Section 4.3's sum where its best box is far smaller than every window), "paper", Section 4.3's
greedy merge exactly (d, `merge.greedy_merge`: the plain sum of window probabilities), or
"nms", the baseline.
benchmarks/bench_accumulation.py measures the three; the README's "Greedy merge vs NMS" has
the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .backend import get_array_module, to_numpy
from .boxes import clip_boxes, iou
from .dense import dense_passes, fully_convolutional, infer, offset_pool
from .grid import dense_grid
from .losses import softmax
from .merge import (
    DEFAULT_AREA_POWER,
    DEFAULT_MERGE_T,
    DEFAULT_SMALL_OBJECT,
    accumulate,
    batched_nms,
    greedy_merge,
    relative_size,
    window_weights,
)
from .metrics import localization_error
from .multiscale import top_k as top_classes
from .optim import SGD
from .preprocess import resize_boxes, scale_image, to_input
from .regressor import (
    MIN_OVERLAP,
    Regressor,
    check_compatible,
    location_boxes,
    regression_loss,
    regression_targets,
)

METHODS = ("merge", "paper", "nms")  # the default accumulation, Section 4.3 verbatim, the NMS baseline
NMS_IOU = 0.5  # the NMS baseline suppresses boxes overlapping a better one by IoU > 0.5


# --- cached training windows ------------------------------------------------------------------------
@dataclass
class WindowSet:
    """The trained-on windows of a data set: pooled feature patches and their box targets."""

    patches: object  # (S, C, f, f) float32 on the model's backend: the head's input at each window
    targets: object  # (S, 4) float32: the true box in the window's frame (`boxes.encode_relative`)
    labels: object  # (S,) int64: the box's class (PCR trains only these outputs)
    image_ids: np.ndarray  # (S,) host: index into the data set
    scale_ids: np.ndarray  # (S,) host: index into `scales`
    positions: np.ndarray  # (S, 2) host: (row, column) of the window in that scale's output map
    num_images: int = 0
    scales: tuple = ()
    seconds: float = 0.0  # time spent computing features

    def __len__(self):
        return int(self.patches.shape[0])

    def subset(self, keep) -> WindowSet:
        """Only the windows where keep (S,) bool (host or device) holds, e.g.
        `ws.subset(ws.scale_ids < 2)`."""
        keep = np.asarray(to_numpy(keep), bool)  # the host arrays below are indexed with it
        xp = get_array_module(self.patches)
        k = xp.asarray(np.flatnonzero(keep))
        return WindowSet(self.patches[k], self.targets[k], self.labels[k], self.image_ids[keep],
                         self.scale_ids[keep], self.positions[keep], self.num_images, self.scales, self.seconds)


def _scaled_sample(sample, hw):
    """The sample's image at scale hw (`preprocess.scale_image`) and its boxes moved along."""
    image = sample["image"]
    img = scale_image(image, hw)
    boxes = resize_boxes(sample["boxes"], image.shape[:2], img.shape[:2])
    return img, boxes, np.asarray(sample["box_labels"], np.int64).reshape(-1)


def _gather_patches(pooled, b, i, j, f):
    """pooled (B, C, ph, pw), b/i/j (n,) -> the f x f patches at those corners (n, C, f, f)."""
    xp = get_array_module(pooled)
    r = xp.arange(f)
    b, i, j = (xp.asarray(a) for a in (b, i, j))
    p = pooled[b[:, None, None], :, i[:, None, None] + r[None, :, None], j[:, None, None] + r[None, None, :]]
    return xp.ascontiguousarray(p.transpose(0, 3, 1, 2))  # advanced axes come first: (n, f, f, C)


def _windows_of_batch(model, images, boxes, labels, fine_stride, min_overlap, mean, std):
    """[(patches, targets, labels, image index, position)] of the trained windows of equal-size
    images, one entry per pooling offset."""
    f = model.pooled_shape[1]
    grid = dense_grid(model.config, images[0].shape[:2], fine_stride)
    tl = [regression_targets(grid.windows(), bx, lb, min_overlap) for bx, lb in zip(boxes, labels)]
    targets = np.stack([t[0] for t in tl])  # (B, qh, qw, 4)
    cls = np.stack([t[1] for t in tl])  # (B, qh, qw)
    mask = np.stack([t[2] for t in tl])  # (B, qh, qw)
    unpooled = infer(model.features, to_input(images, mean, std, model.xp))  # (B, C, U_h, U_w)
    out = []
    for dx, dy in grid.offsets:
        rows, cols = grid.owned(dx, dy)
        sub = mask[:, rows, cols]
        if not sub.any():
            continue
        b, i, j = np.nonzero(sub)
        pooled = offset_pool(unpooled, grid.k, dx, dy)
        out.append((_gather_patches(pooled, b, i, j, f), targets[:, rows, cols][b, i, j],
                    cls[:, rows, cols][b, i, j], b, np.stack([i * grid.step + dy, j * grid.step + dx], axis=1)))
    return out


def window_samples(model, dataset, scales, fine_stride: bool = True, min_overlap: float = MIN_OVERLAP,
                   batch_size: int = 32, mean=None, std=None, progress: bool = False) -> WindowSet:
    """Compute the frozen features of every image at every scale once and keep the trained windows.

    dataset: samples with image uint8 (H, W, 3), boxes (m, 4), box_labels (m,) (e.g.
    `SyntheticShapes(mode="localization")`). scales: list of (H, W) input sizes. Every output
    location whose window sees >= min_overlap of a ground-truth box (`regressor.window_overlap`)
    becomes one sample: its pooled (C, f, f) patch, the box in its frame, the box's class.
    Images are batched by size, `batch_size` at a time.
    """
    t0 = time.perf_counter()
    xp = model.xp
    scales = tuple(tuple(int(v) for v in s) for s in scales)
    if not scales:
        raise ValueError("window_samples: give at least one scale (H, W)")
    parts, ids, sids, pos = [], [], [], []
    n = len(dataset)
    it = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="features", unit="batch")
    for start in it:
        samples = [dataset[i] for i in range(start, min(start + batch_size, n))]
        for si, hw in enumerate(scales):
            groups = {}
            for idx, s in enumerate(samples):
                img, bx, lb = _scaled_sample(s, hw)
                groups.setdefault(img.shape, []).append((start + idx, img, bx, lb))
            for members in groups.values():
                index = np.array([m[0] for m in members])
                for p, t, c, b, q in _windows_of_batch(model, [m[1] for m in members], [m[2] for m in members],
                                                    [m[3] for m in members], fine_stride, min_overlap, mean, std):
                    parts.append((p, t, c))
                    ids.append(index[b])
                    sids.append(np.full(len(b), si))
                    pos.append(q)
    c, f = model.pooled_shape[0], model.pooled_shape[1]
    if not parts:
        raise ValueError(f"window_samples: no window sees >= {min_overlap:.0%} of a box in {n} images at scales "
                         f"{scales}; check that the data set has boxes and that the scales are not far larger "
                         "than the objects")
    patches = xp.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    targets = xp.asarray(np.concatenate([p[1] for p in parts]).astype(np.float32))
    labels = xp.asarray(np.concatenate([p[2] for p in parts]).astype(np.int64))
    assert patches.shape[1:] == (c, f, f)
    return WindowSet(patches, targets, labels, np.concatenate(ids), np.concatenate(sids), np.concatenate(pos), n, scales,
                     time.perf_counter() - t0)


# --- training ---------------------------------------------------------------------------------------
@dataclass
class RegressorHistory:
    """What `train_regressor` returns: mean loss per epoch and throughput."""

    losses: list = field(default_factory=list)  # mean L2 loss of each epoch
    steps: int = 0
    windows: int = 0  # trained windows per epoch
    seen: int = 0  # windows passed through the head in all (steps x batch)
    feature_seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def windows_per_second(self) -> float:
        return self.seen / max(self.train_seconds, 1e-9)


def _init_output_bias(regressor: Regressor, windows: WindowSet):
    """Start the output at the mean target box: SGD then only learns each window's deviation."""
    last = regressor.head.layers[-1]
    mean = windows.targets.mean(axis=0)  # (4,)
    last.params["b"][...] = get_array_module(mean).tile(mean, regressor.outputs // 4).astype(last.params["b"].dtype)


def train_regressor(model, regressor: Regressor, dataset=None, scales=None, epochs: int = 10,
                    steps: int | None = None, lr: float = 0.01, momentum: float = 0.9,
                    weight_decay: float = 1e-5, batch_size: int = 64, seed: int = 0,
                    windows: WindowSet | None = None, fine_stride: bool = True,
                    min_overlap: float = MIN_OVERLAP, mean=None, std=None, init_bias: bool = True,
                    progress: bool = False, max_windows: int | None = None) -> RegressorHistory:
    """Train `regressor` (in place) on the frozen features of `model` (Section 4.2).

    dataset + scales: samples with boxes, and the (H, W) sizes to train at (multi-scale
    training); or windows: a `window_samples` result to reuse (features cached across runs).
    L2 loss on the box in the window's frame (`regression_loss`, PCR: the true class's outputs
    only), windows seeing < 50% of the box excluded, SGD with momentum on shuffled mini-batches
    of windows from all images and scales. Runs `epochs` passes, or exactly `steps` steps.
    max_windows: with dataset + scales, hold at most this many windows at a time
    (`train_regressor_streaming`: features recomputed every epoch, memory bounded); None: cache
    every window of every image first. Returns a RegressorHistory.
    """
    check_compatible(regressor, model)
    if windows is None and max_windows is not None:
        if dataset is None or scales is None:
            raise ValueError("train_regressor: max_windows streams windows from dataset and scales; pass both")
        return train_regressor_streaming(model, regressor, dataset, scales, max_windows, epochs, steps, lr, momentum,
                                         weight_decay, batch_size, seed, fine_stride, min_overlap, mean, std,
                                         init_bias, progress)
    if windows is None:
        if dataset is None or scales is None:
            raise ValueError("train_regressor: pass dataset and scales, or precomputed windows=window_samples(...)")
        windows = window_samples(model, dataset, scales, fine_stride, min_overlap, mean=mean, std=std,
                                 progress=progress)
    xp = get_array_module(windows.patches)
    if xp is not regressor.xp:
        raise ValueError("train_regressor: the windows and the regressor live on different backends; "
                         "build both from the same model")
    n = len(windows)
    if init_bias:
        _init_output_bias(regressor, windows)
    opt = SGD(regressor.params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    hist = RegressorHistory(windows=n, feature_seconds=windows.seconds)
    per_epoch = max(1, -(-n // batch_size))
    total = steps if steps is not None else epochs * per_epoch
    t0 = time.perf_counter()
    while hist.steps < total:
        loss_sum, seen = _sgd_pass(regressor, opt, windows, xp.asarray(rng.permutation(n)), batch_size, hist, total)
        hist.losses.append(float(loss_sum) / max(seen, 1))  # the epoch's one synchronisation
    hist.train_seconds = time.perf_counter() - t0
    return hist


class _Images:
    """Some images of a data set, by index: what `window_samples` reads, nothing copied."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]


def window_buffers(model, dataset, scales, max_windows: int, order, fine_stride: bool = True,
                   min_overlap: float = MIN_OVERLAP, mean=None, std=None, chunk_images: int = 32):
    """Yield WindowSets of at most max_windows windows, filled from the images in `order` (host
    indices), `chunk_images` at a time.

    Memory: one preallocated buffer of max_windows patches (C, f, f) float32 + targets + labels,
    plus the windows of one chunk while they are copied in; every yielded set is a view of the
    buffer, overwritten by the next. Each yielded set has .seconds = its feature time.
    """
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    xp, (c, f, _) = model.xp, model.pooled_shape
    patches = xp.empty((max_windows, c, f, f), np.float32)
    targets = xp.empty((max_windows, 4), np.float32)
    labels = xp.empty(max_windows, np.int64)
    held, seconds = 0, 0.0
    for c0 in range(0, len(order), chunk_images):
        chunk = _Images(dataset, order[c0:c0 + chunk_images])
        t0 = time.perf_counter()
        try:
            ws = window_samples(model, chunk, scales, fine_stride, min_overlap, chunk_images, mean, std)
        except ValueError:  # no window of these images sees enough of a box
            continue
        seconds += time.perf_counter() - t0
        done = 0
        while done < len(ws):
            take = min(len(ws) - done, max_windows - held)
            patches[held:held + take] = ws.patches[done:done + take]
            targets[held:held + take] = ws.targets[done:done + take]
            labels[held:held + take] = ws.labels[done:done + take]
            held, done = held + take, done + take
            if held == max_windows:
                yield _buffer_set(patches, targets, labels, held, scales, seconds)
                held, seconds = 0, 0.0
        del ws
    if held:
        yield _buffer_set(patches, targets, labels, held, scales, seconds)


def _sgd_pass(regressor: Regressor, opt, windows: WindowSet, order, batch_size: int, hist, stop) -> tuple:
    """SGD on the head over `windows` in `order` (device indices), batch by batch, until hist.steps
    reaches `stop` (None: the whole pass). Returns (loss sum, windows seen); the sum stays on the
    device (no synchronisation per step)."""
    head, out = regressor.head, regressor.outputs
    loss_sum, seen = 0.0, 0
    for b0 in range(0, len(order), batch_size):
        if stop is not None and hist.steps >= stop:
            break
        idx = order[b0:b0 + batch_size]
        y, cache = head.forward(windows.patches[idx], train=True)  # (B, out, 1, 1)
        loss, d = regression_loss(y.reshape(-1, out), windows.targets[idx], windows.labels[idx])
        _, grads = head.backward(d.reshape(y.shape), cache)
        opt.step(grads)
        hist.steps += 1
        loss_sum += loss * len(idx)
        seen += len(idx)
        hist.seen += len(idx)
    return loss_sum, seen


def _buffer_set(patches, targets, labels, n, scales, seconds) -> WindowSet:
    z = np.zeros(n, np.int64)
    return WindowSet(patches[:n], targets[:n], labels[:n], z, z, np.zeros((n, 2), np.int64), 0, scales, seconds)


def train_regressor_streaming(model, regressor: Regressor, dataset, scales, max_windows: int, epochs: int = 10,
                              steps: int | None = None, lr: float = 0.01, momentum: float = 0.9,
                              weight_decay: float = 1e-5, batch_size: int = 64, seed: int = 0,
                              fine_stride: bool = True, min_overlap: float = MIN_OVERLAP, mean=None, std=None,
                              init_bias: bool = True, progress: bool = False) -> RegressorHistory:
    """`train_regressor` in bounded memory: every epoch visits the images in a new random order,
    fills a buffer of at most max_windows windows (`window_buffers`), takes shuffled mini-batches
    of it, refills. The features are recomputed every epoch (the price of the bound); a buffer
    mixes up to max_windows / (windows per image) images, so keep it well above one chunk's."""
    check_compatible(regressor, model)
    xp = regressor.xp
    opt = SGD(regressor.params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    hist = RegressorHistory()
    first = True
    it = range(epochs) if steps is None else iter(int, 1)  # with steps: until they are done
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="regressor epochs", unit="epoch")
    for _ in it:
        loss_sum, seen, count = 0.0, 0, 0
        for buf in window_buffers(model, dataset, scales, max_windows, rng.permutation(len(dataset)), fine_stride,
                                  min_overlap, mean, std):
            hist.feature_seconds += buf.seconds
            if first and init_bias:
                _init_output_bias(regressor, buf)
            first = False
            t0 = time.perf_counter()
            count += len(buf)
            buf_loss, buf_seen = _sgd_pass(regressor, opt, buf, xp.asarray(rng.permutation(len(buf))), batch_size,
                                           hist, steps)
            loss_sum, seen = loss_sum + buf_loss, seen + buf_seen
            hist.train_seconds += time.perf_counter() - t0
        if first:
            raise ValueError(f"train_regressor: no window sees >= {min_overlap:.0%} of a box in {len(dataset)} "
                             f"images at scales {scales}")
        hist.windows = hist.windows or count
        hist.losses.append(float(loss_sum) / max(seen, 1))
        if steps is not None and hist.steps >= steps:
            break
    return hist


# --- prediction ---------------------------------------------------------------------------------------
class BoxPredictions(NamedTuple):
    """Section 4.3 (a-c): every box of the top-k classes at every location of every scale."""

    boxes: np.ndarray  # (N, 4) float32, (left, top, right, bottom) in the input image's pixels
    scores: np.ndarray  # (N,) float32: softmax probability of the box's class at its window
    classes: np.ndarray  # (N,) int64
    scale_ids: np.ndarray  # (N,) int64: index into `scales`
    windows: np.ndarray  # (N, 4) float32: the window the box was regressed from, image pixels


class Localization(NamedTuple):
    """The k best guesses for one image, best first."""

    classes: np.ndarray  # (K,) int64
    boxes: np.ndarray  # (K, 4) float32, image pixels
    confidences: np.ndarray  # (K,) float32: area-weighted (merge) or plain (paper) sums of probabilities; one (nms)


def predict_boxes(model, regressor: Regressor, image, scales, top_k: int = 5, fine_stride: bool = True,
                  mean=None, std=None, clip: bool = True) -> BoxPredictions:
    """Raw box predictions for image uint8 (H, W, 3) at the given (H, W) scales (steps a-c).

    For each scale: one pass of the feature layers; the classifier's softmax map (C, H', W') and
    the regressor's map (4 or 4C, H', W') from the same unpooled maps at every pooling offset; the
    `top_k` classes by spatial maximum; for each, the box of every location (decoded from its
    window's frame) scored by that location's probability. Boxes are mapped back to the input
    image and, with `clip`, clipped to it. Returns BoxPredictions (host arrays).
    """
    check_compatible(regressor, model)
    net = fully_convolutional(model)
    h, w = image.shape[:2]
    out = {f: [] for f in BoxPredictions._fields}
    for sp in dense_passes(net, image, scales, fine_stride, mean=mean, std=std):
        probs = to_numpy(softmax(net.outputs(sp.unpooled, sp.grid)))[0]  # (C, qh, qw)
        cls = top_classes(probs.max(axis=(1, 2)), top_k)  # (T,) step (a)
        boxes = location_boxes(regressor, sp.unpooled, sp.grid)  # (1 or C, qh, qw, 4) step (b)
        boxes = boxes[cls] if regressor.per_class else np.broadcast_to(boxes, (len(cls), *boxes.shape[1:]))
        boxes = boxes.reshape(-1, 4)
        n_loc = sp.grid.shape[0] * sp.grid.shape[1]
        if clip:
            boxes = clip_boxes(boxes, (h, w))
        out["boxes"].append(boxes.astype(np.float32))
        out["scores"].append(probs[cls].reshape(-1))
        out["classes"].append(np.repeat(cls, n_loc))
        out["scale_ids"].append(np.full(len(cls) * n_loc, sp.scale_id, np.int64))
        out["windows"].append(np.tile(sp.grid.image_windows().reshape(-1, 4), (len(cls), 1)))
    return BoxPredictions(*(np.concatenate(out[f]) for f in BoxPredictions._fields))  # step (c)


def merge_predictions(pred: BoxPredictions, k: int = 5, method: str = "merge", t: float = DEFAULT_MERGE_T,
                      iou_threshold: float = NMS_IOU, area_power: float = DEFAULT_AREA_POWER,
                      small_object: float = DEFAULT_SMALL_OBJECT) -> Localization:
    """The k best (class, box, confidence) from raw predictions, by `method` (one of `METHODS`).

    "merge": `merge.accumulate`, each window's vote weighted by its relative area in the image
    ** area_power (`merge.window_weights`), without its duplicate suppression: the k guesses are
    for one object, and a second box of the right class is a second chance (suppressing at IoU
    > 0.5 cost 2 of 60 development images). Where its best box is smaller than small_object x
    the largest window's side (`merge.relative_size`), the object is far smaller than every
    window and the plain sum of Section 4.3 is the balanced vote (`merge.DEFAULT_SMALL_OBJECT`
    says why): the k guesses are then the "paper" ones; small_object 0 never switches.
    "paper": `merge.greedy_merge`, Section 4.3 step d as written; "nms": `merge.batched_nms`
    with iou_threshold.
    """
    if method == "merge":
        boxes, conf, classes = accumulate(pred.boxes, pred.scores, pred.classes, pred.scale_ids,
                                          window_weights(pred.windows, area_power), t, dedupe_iou=None)
        if len(boxes) and relative_size(boxes[0], pred.windows) < small_object:
            method = "paper"
    if method == "paper":
        boxes, conf, classes = greedy_merge(pred.boxes, pred.scores, pred.classes, t)
    elif method == "nms":
        keep = batched_nms(pred.boxes, pred.scores, pred.classes, iou_threshold)
        boxes, conf, classes = pred.boxes[keep], pred.scores[keep], pred.classes[keep]
    elif method != "merge":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return Localization(classes[:k].astype(np.int64), boxes[:k].astype(np.float32), conf[:k].astype(np.float32))


def localize(model, regressor: Regressor, image, scales, k: int = 5, top_k: int = 5, method: str = "merge",
             t: float = DEFAULT_MERGE_T, iou_threshold: float = NMS_IOU, fine_stride: bool = True,
             mean=None, std=None) -> Localization:
    """Section 4: image uint8 (H, W, 3) -> the k best (class, box, confidence), best first.

    `predict_boxes` at every scale, then `merge_predictions`: `method="merge"` (the default
    accumulation, `merge.accumulate`), "paper" (Section 4.3's greedy merge with threshold t;
    confidence = summed window probabilities) or "nms" (the baseline, IoU threshold).
    """
    pred = predict_boxes(model, regressor, image, scales, top_k, fine_stride, mean, std)
    return merge_predictions(pred, k, method, t, iou_threshold)


# --- evaluation ---------------------------------------------------------------------------------------
def ground_truth(dataset) -> list:
    """[(box_labels (m,), boxes (m, 4))] per image, the format of `metrics.localization_error`."""
    out = []
    for i in range(len(dataset)):
        s = dataset[i]
        out.append((np.asarray(s["box_labels"], np.int64), np.asarray(s["boxes"], np.float32).reshape(-1, 4)))
    return out


def evaluate_localization(model, regressor: Regressor, dataset, scales, methods=METHODS, k: int = 5,
                          top_k: int = 5, t: float = DEFAULT_MERGE_T, iou_threshold: float = NMS_IOU,
                          fine_stride: bool = True, mean=None, std=None) -> dict:
    """ILSVRC localization error (`metrics.localization_error`, k guesses) of each method.

    The raw predictions of each image are computed once and given to every method, so the
    methods are compared on the same boxes. Returns {method: error in [0, 1]}.
    """
    gts, preds = ground_truth(dataset), {m: [] for m in methods}
    for i in range(len(dataset)):
        raw = predict_boxes(model, regressor, dataset[i]["image"], scales, top_k, fine_stride, mean, std)
        for m in methods:
            loc = merge_predictions(raw, k, m, t, iou_threshold)
            preds[m].append((loc.classes, loc.boxes))
    return {m: localization_error(preds[m], gts, k=k) for m in methods}


def centre_box_error(dataset, k: int = 5) -> float:
    """Error of a baseline that knows the class and guesses one centred box of the mean relative
    ground-truth size: what a localizer must beat to show its boxes carry information."""
    gts = ground_truth(dataset)
    sizes = []
    for i in range(len(dataset)):
        h, w = dataset[i]["image"].shape[:2]
        b = gts[i][1]
        sizes.append(np.stack([(b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], axis=1))
    rw, rh = np.concatenate(sizes).mean(axis=0)
    preds = []
    for i, (cls, _) in enumerate(gts):
        h, w = dataset[i]["image"].shape[:2]
        box = np.array([[w * (1 - rw) / 2, h * (1 - rh) / 2, w * (1 + rw) / 2, h * (1 + rh) / 2]], np.float32)
        preds.append((cls[:1], box))
    return localization_error(preds, gts, k=k)


def box_iou(a, b) -> float:
    """IoU of two single boxes (4,), a convenience for printing."""
    return float(iou(np.asarray(a).reshape(1, 4), np.asarray(b).reshape(1, 4))[0, 0])


__all__ = [
    "METHODS",
    "BoxPredictions",
    "Localization",
    "RegressorHistory",
    "WindowSet",
    "box_iou",
    "centre_box_error",
    "evaluate_localization",
    "ground_truth",
    "localize",
    "merge_predictions",
    "predict_boxes",
    "train_regressor",
    "train_regressor_streaming",
    "window_buffers",
    "window_samples",
]
