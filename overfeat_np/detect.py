"""Detection: dense multi-scale class maps -> boxes -> greedy merge per class (Section 5).

Sermanet et al. (ICLR 2014), Section 5 with the machinery of Sections 3.3 and 4.3. The detector
is the classifier with one more output, background (the last index; training in
`detect_train`). At test time, for every scale:

1. the image is resized to the scale and run densely at fine stride (`dense.dense_passes`);
   a softmax over the C + 1 outputs gives each location a probability per class;
2. every (location, object class) whose probability is >= `score_threshold` becomes a candidate
   box: the box the regressor predicts at that location (`regressor.location_boxes`), or the location's
   window when there is no regressor, mapped back to the original image;
3. the candidates of all scales are accumulated class by class (`DETECT_METHODS`): by default
   `merge.accumulate` (a detection's score adds up the probabilities of its windows, each
   weighted by its window's area in the image relative to the coarsest scale's (to the power
   `merge.DEFAULT_AREA_POWER`, 1), so a scale weighs the image area it covers rather than its
   location count, and same-class fragments of one object are folded into one box); "paper" is Section 4.3's
   `merge.greedy_merge` (score = the plain sum of the member probabilities); "nms" keeps each
   overlapping group's best window. Coherent boxes reinforce each other, an isolated false
   positive stays weak.

Background is never reported, and an image where no location passes the threshold gets no
detection at all. What changes from localization (Section 4): localization always returns its
top-5 guesses and considers only the top classes of each scale; detection reports any number
of objects, of all classes, and relies on the background class to say "nothing here".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import to_numpy
from .dense import dense_passes, fully_convolutional
from .losses import softmax
from .merge import (
    DEFAULT_AREA_POWER,
    DEFAULT_MERGE_T,
    accumulate,
    batched_nms,
    greedy_merge,
    scale_weights,
)
from .metrics import Detections, mean_average_precision, precision_recall_curve
from .models import OverFeat
from .regressor import check_compatible, location_boxes


class Detection(NamedTuple):
    """One detected object in original image pixels."""

    cls: int  # object class (never background)
    score: float  # accumulated confidence of its windows (see `detect`'s method)
    box: tuple  # (left, top, right, bottom), right/bottom exclusive


def background_index(detector) -> int:
    """Index of the background class: the last output (C for C object classes)."""
    config = detector.config if isinstance(detector, OverFeat) else detector
    return config.num_classes - 1


def location_candidates(model, regressor, image, scales, fine_stride=True, mean=None, std=None):
    """Per scale: (probs (C, H', W') host float32, boxes (C_r, H', W', 4) in original pixels).

    One pass of the feature layers per scale (`dense.dense_passes`) feeds both the class head and
    the regressor (`regressor.location_boxes`; it must be trained on this model's features,
    `check_compatible`). boxes hold one box per location (C_r = 1: single-class regression or,
    without a regressor, the locations' windows) or one per class and location (C_r = C: PCR).
    """
    if regressor is not None:
        check_compatible(regressor, model)
    net = fully_convolutional(model)
    out = []
    for sp in dense_passes(net, image, scales, fine_stride, mean=mean, std=std):
        probs = to_numpy(softmax(net.outputs(sp.unpooled, sp.grid)))[0]  # (C, qh, qw)
        if regressor is None:
            boxes = sp.grid.image_windows()[None]
        else:
            boxes = location_boxes(regressor, sp.unpooled, sp.grid)
        out.append((probs, boxes))
    return out


DETECT_METHODS = ("merge", "paper", "nms")  # as localize.METHODS: default, Section 4.3 verbatim, baseline
NMS_IOU = 0.5


class Candidates(NamedTuple):
    """Every proposed box of one image, all scales pooled (what `detect` accumulates)."""

    boxes: np.ndarray  # (N, 4) float32, original image pixels, not clipped
    scores: np.ndarray  # (N,) float32: the location's probability of the class
    classes: np.ndarray  # (N,) int64
    scale_ids: np.ndarray  # (N,) int64: index into the scales
    weights: np.ndarray  # (S,) float64: each scale's window area in the image / the largest one's


def _candidates(parts, scales) -> Candidates:
    """[(scale id, boxes (n, 4), scores (n,), classes (n,))] -> Candidates for `scales` (H, W)."""
    weights = scale_weights(scales, power=1.0)
    if not parts:
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                          np.zeros(0, np.int64), weights)
    boxes, scores, classes = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
    sid = np.concatenate([np.full(len(p[2]), p[0], np.int64) for p in parts])
    return Candidates(boxes.reshape(-1, 4).astype(np.float32), scores.astype(np.float32),
                      classes.astype(np.int64), sid, weights)


def merge_candidates(cand: Candidates, method: str = "merge", t: float = DEFAULT_MERGE_T,
                     iou_threshold: float = NMS_IOU, area_power: float = DEFAULT_AREA_POWER):
    """Candidates -> (boxes (K, 4), scores (K,), classes (K,)), best first, by `method`.

    "merge" weights each window's vote by its scale's relative window area ** area_power
    (`merge.window_weights`)."""
    if method == "merge":
        return accumulate(cand.boxes, cand.scores, cand.classes, cand.scale_ids,
                          cand.weights[cand.scale_ids] ** float(area_power), t)
    if method == "paper":
        return greedy_merge(cand.boxes, cand.scores, cand.classes, t=t)
    if method == "nms":
        keep = batched_nms(cand.boxes, cand.scores, cand.classes, iou_threshold)
        return cand.boxes[keep], cand.scores[keep], cand.classes[keep]
    raise ValueError(f"method must be one of {DETECT_METHODS}, got {method!r}")


def _merge(cand: Candidates, t, max_detections, image_hw, method="merge"):
    if not len(cand.boxes):
        return []
    mb, ms, mc = merge_candidates(cand, method, t)
    h, w = image_hw
    mb = np.clip(mb, 0, [w, h, w, h])
    return [Detection(int(c), float(s), tuple(float(v) for v in b))
            for b, s, c in zip(mb[:max_detections], ms[:max_detections], mc[:max_detections])]


def detection_candidates(detector, regressor, image, scales, score_threshold: float = 0.5,
                         fine_stride: bool = True, mean=None, std=None) -> Candidates:
    """Every (location, object class) whose probability is >= score_threshold, as a box (steps 1-2)."""
    if not 0 < score_threshold <= 1:
        raise ValueError(f"detect: score_threshold is a probability in (0, 1], got {score_threshold}")
    bg = background_index(detector)
    parts = []
    for si, (probs, b) in enumerate(location_candidates(detector, regressor, image, scales, fine_stride, mean, std)):
        c, i, j = np.nonzero(probs[:bg] >= score_threshold)  # background (index bg) excluded
        parts.append((si, b[c if len(b) > 1 else 0, i, j], probs[c, i, j], c))
    return _candidates(parts, scales)


def detect(detector, regressor, image, scales, score_threshold: float = 0.5, t: float = DEFAULT_MERGE_T,
           fine_stride: bool = True, max_detections: int = 100, mean=None, std=None,
           method: str = "merge") -> list:
    """Detect objects in one image: uint8 (H, W, 3) -> list of `Detection`, best score first.

    detector: an OverFeat whose last output is background (`detect_train.make_detector`);
    regressor: a box regressor (`regressor.build_regressor`) or None to use the locations' windows as boxes;
    scales: (H_s, W_s) sizes the image is resized to (each >= the training size);
    score_threshold: a location's class probability needed to propose a box; t: merge threshold
    (`merge.match_score`); method: one of `DETECT_METHODS` (`merge_candidates`). Returns [] when
    no location passes the threshold.
    """
    cand = detection_candidates(detector, regressor, image, scales, score_threshold, fine_stride, mean, std)
    return _merge(cand, t, max_detections, image.shape[:2], method)


def detect_with_classifier(classifier, image, scales, top_k: int = 1, t: float = DEFAULT_MERGE_T,
                           fine_stride: bool = True, max_detections: int = 100, mean=None, std=None,
                           method: str = "merge") -> list:
    """The classifier-only baseline: no background class, boxes = windows of its top locations.

    Per scale, each location proposes its window for its argmax class when that class is among
    the scale's `top_k` classes (Section 4.3 step a: each class's spatial max), scored by the
    class probability; all proposals are accumulated per class (`method`). Without a background class
    every location claims some object, which is what the detector's background output fixes.
    """
    parts = []
    for si, (probs, b) in enumerate(location_candidates(classifier, None, image, scales, fine_stride, mean, std)):
        top = np.argsort(-probs.max(axis=(1, 2)), kind="stable")[:top_k]
        arg = probs.argmax(axis=0)  # (H', W')
        keep = np.isin(arg, top)
        i, j = np.nonzero(keep)
        c = arg[i, j]
        parts.append((si, b[0, i, j], probs[c, i, j], c))
    return _merge(_candidates(parts, scales), t, max_detections, image.shape[:2], method)


def to_detections(per_image: list) -> Detections:
    """Lists of `Detection` per image -> metrics.Detections (image_ids index the list)."""
    rows = [(i, d.cls, d.score, d.box) for i, dets in enumerate(per_image) for d in dets]
    if not rows:
        return Detections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))
    ids, cls, sc, bx = zip(*rows)
    return Detections(np.array(ids, np.int64), np.array(cls, np.int64), np.array(sc, np.float64),
                      np.array(bx, np.float64))


def evaluate_detection(detector, regressor, dataset, scales, score_threshold: float = 0.5,
                       t: float = DEFAULT_MERGE_T, limit: int | None = None, detect_fn=None,
                       iou_threshold: float = 0.5, progress: bool = False, **kwargs):
    """mAP of `detect` over a sample-format dataset -> (mAP, {class: AP}, {class: curve}).

    curve = (precision, recall, thresholds) from `metrics.precision_recall_curve`; AP is PASCAL
    VOC's (IoU >= 0.5, all-points interpolation). Every object class of the dataset is scored
    (classes without ground truth get AP NaN and are left out of the mean); images with no
    object take part (their detections are false positives). detect_fn(image) -> list of
    Detection replaces `detect` (e.g. the classifier baseline); limit: first n images only.
    """
    from tqdm.auto import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if detect_fn is None:
        def detect_fn(image):
            return detect(detector, regressor, image, scales, score_threshold, t, **kwargs)
    per_image, gt = [], []
    for i in tqdm(range(n), desc="detect", disable=not progress):
        s = dataset[i]
        per_image.append(detect_fn(s["image"]))
        gt.append((s["box_labels"], s["boxes"]))
    dets = to_detections(per_image)
    classes = range(getattr(dataset, "num_classes", 0) or (background_index(detector) if detector else 0))
    m, per_class = mean_average_precision(dets, gt, iou_threshold, classes=list(classes) or None)
    curves = {c: precision_recall_curve(dets, gt, c, iou_threshold) for c in per_class}
    return m, per_class, curves


def detections_to_json(detections, class_names=None, image=None) -> dict:
    """A JSON-ready dict: {"image": path or None, "detections": [{"class", "name", "score", "box"}]}.

    box is [left, top, right, bottom] in original image pixels, right/bottom exclusive.
    """
    rows = []
    for d in detections:
        name = class_names[d.cls] if class_names is not None and 0 <= d.cls < len(class_names) else str(d.cls)
        rows.append({"class": int(d.cls), "name": name, "score": float(d.score),
                     "box": [float(v) for v in d.box]})
    return {"image": None if image is None else str(image), "detections": rows}
