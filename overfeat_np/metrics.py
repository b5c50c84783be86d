"""Scores for the three tasks of OverFeat (Sermanet et al. 2014): classification (top-k error),
localization (the ILSVRC rule: class right and IoU >= 0.5, Section 4) and detection (PASCAL VOC
average precision and mAP, Section 5).

Formats used throughout (host NumPy; CuPy inputs are moved with `backend.to_numpy`):
- ground truth: a sequence with one entry per image, each `(classes (m,), boxes (m, 4))` or
  `(classes (m,), boxes (m, 4), difficult (m,) bool)`; m may be 0.
- localization predictions: one entry per image, `(classes (p,), boxes (p, 4))` ordered by
  confidence, best first; only the first k count.
- detections: `Detections(image_ids (D,), classes (D,), scores (D,), boxes (D, 4))` (or the same
  4-tuple), image_ids indexing the ground-truth sequence.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from overfeat_np.backend import to_numpy
from overfeat_np.boxes import _as_vector, _iou64, as_boxes

__all__ = [
    "Detections",
    "average_precision",
    "localization_error",
    "mean_average_precision",
    "precision_recall_curve",
    "topk_accuracy",
    "topk_error",
]


# ---------------------------------------------------------------- classification


def _ks(k) -> tuple[int, ...]:
    ks = (k,) if np.isscalar(k) else tuple(k)
    if not ks or any(int(x) < 1 for x in ks):
        raise ValueError(f"k: expected positive integers, got {k!r}")
    return tuple(int(x) for x in ks)


def _label_ranks(scores, labels) -> np.ndarray:
    """0-based rank (N,) of each true label among its row of scores (N, C).

    Ties are broken by class index (lower index ranks first), as a stable descending sort would,
    without sorting: rank = #(scores > s_y) + #(scores == s_y and class < y).
    """
    s = np.asarray(to_numpy(scores), dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores: expected shape (N, C), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: expected finite values, got NaN or inf")
    n, c = s.shape
    y = _as_vector(labels, n, "labels", np.int64)
    if np.any((y < 0) | (y >= c)):
        raise ValueError(f"labels: expected class indices in [0, {c}), got min {y.min()} max {y.max()}")
    sy = s[np.arange(n), y][:, None]  # (N, 1)
    before = (s > sy) | ((s == sy) & (np.arange(c)[None, :] < y[:, None]))  # (N, C)
    return before.sum(1)


def topk_accuracy(scores, labels, k=(1, 5)) -> dict[int, float]:
    """Fraction of rows whose true label is among the k highest scores: scores (N, C), labels (N,).

    Returns {k: accuracy} for each requested k (an int k gives a one-entry dict). Ties between
    equal scores go to the lower class index. The classification metric of Section 3.
    """
    ks = _ks(k)
    rank = _label_ranks(scores, labels)
    if len(rank) == 0:
        raise ValueError("scores: expected at least one row, got shape (0, C)")
    return {kk: float(np.mean(rank < kk)) for kk in ks}


def topk_error(scores, labels, k=(1, 5)) -> dict[int, float]:
    """1 - `topk_accuracy`: {k: error}; top-1 and top-5 error as reported in Section 3."""
    return {kk: 1.0 - a for kk, a in topk_accuracy(scores, labels, k).items()}


# ---------------------------------------------------------------- ground truth parsing


def _gt_entry(entry, i: int):
    """One image's ground truth -> (classes (m,) int64, boxes (m, 4) f64, difficult (m,) bool)."""
    if len(entry) not in (2, 3):
        raise ValueError(f"ground_truth[{i}]: expected (classes, boxes) or (classes, boxes, difficult)")
    boxes = np.asarray(to_numpy(entry[1]), dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    boxes = as_boxes(boxes, f"ground_truth[{i}] boxes")
    m = len(boxes)
    cls = _as_vector(np.asarray(to_numpy(entry[0])).reshape(-1), m, f"ground_truth[{i}] classes", np.int64)
    if len(entry) == 3 and entry[2] is not None:
        diff = _as_vector(np.asarray(to_numpy(entry[2])).reshape(-1), m, f"ground_truth[{i}] difficult", bool)
    else:
        diff = np.zeros(m, dtype=bool)
    return cls, boxes, diff


# ---------------------------------------------------------------- localization


def localization_error(
    predictions, ground_truth, k: int = 5, iou_threshold: float = 0.5, return_per_image=False
):
    """ILSVRC localization error (Section 4): fraction of images with no correct guess among k.

    predictions: per image `(classes (p,), boxes (p, 4))`, best guess first (p may exceed k;
    only the first k count). ground_truth: per image `(classes (m,), boxes (m, 4))`. A guess is
    correct when its class equals a ground-truth box's class AND its IoU with that box is
    >= iou_threshold; an image is correct when any of its first k guesses is. Difficult flags,
    if given, are ignored. With `return_per_image`, also returns correct (n_images,) bool.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"predictions: expected one entry per image ({len(ground_truth)}), got {len(predictions)}"
        )
    if len(ground_truth) == 0:
        raise ValueError("ground_truth: expected at least one image, got 0")
    if int(k) < 1:
        raise ValueError(f"k: expected a positive integer, got {k}")
    correct = np.zeros(len(ground_truth), dtype=bool)
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth)):
        g_cls, g_box, _ = _gt_entry(gt, i)
        pb = np.asarray(to_numpy(pred[1]), dtype=np.float64)
        pb = as_boxes(pb.reshape(0, 4) if pb.size == 0 else pb, f"predictions[{i}] boxes", allow_single=True)
        pc = _as_vector(np.asarray(to_numpy(pred[0])).reshape(-1), len(pb), f"predictions[{i}] classes", np.int64)
        pc, pb = pc[:k], pb[:k]
        if len(pb) == 0 or len(g_box) == 0:
            continue
        hit = (pc[:, None] == g_cls[None, :]) & (_iou64(pb, g_box) >= iou_threshold)  # (k, m)
        correct[i] = bool(hit.any())
    err = float(1.0 - correct.mean())
    return (err, correct) if return_per_image else err


# ---------------------------------------------------------------- detection


class Detections(NamedTuple):
    """Detections pooled over a data set (Section 5): one row per detected box."""

    image_ids: np.ndarray  # (D,) int: index into the ground-truth sequence
    classes: np.ndarray  # (D,) int
    scores: np.ndarray  # (D,) float: confidence, higher first
    boxes: np.ndarray  # (D, 4) float: (left, top, right, bottom)


def _detections(detections) -> Detections:
    if len(detections) != 4:
        raise ValueError("detections: expected (image_ids, classes, scores, boxes)")
    ids, cls, scores, boxes = detections
    b = np.asarray(to_numpy(boxes), dtype=np.float64)
    b = as_boxes(b.reshape(0, 4) if b.size == 0 else b, "detections.boxes")
    n = len(b)
    return Detections(
        _as_vector(np.asarray(to_numpy(ids)).reshape(-1), n, "detections.image_ids", np.int64),
        _as_vector(np.asarray(to_numpy(cls)).reshape(-1), n, "detections.classes", np.int64),
        _as_vector(np.asarray(to_numpy(scores)).reshape(-1), n, "detections.scores"),
        b,
    )


def _match_class(det: Detections, gts: list, cls: int, iou_threshold: float):
    """VOC matching for one class -> (tp (D_c,) bool, fp (D_c,) bool, scores (D_c,), n_pos).

    Detections of class `cls` by score descending (ties: input order); each is matched to the
    ground-truth box of its image and class with the highest IoU. If that IoU >= threshold and
    the box is unclaimed it is a true positive and claims it; if the box is claimed (a duplicate)
    or the IoU is below threshold it is a false positive; detections matched to a difficult box
    are neither, and difficult boxes do not count in n_pos (VOC devkit rules).
    """
    sel = np.flatnonzero(det.classes == cls)
    order = sel[np.lexsort((sel, -det.scores[sel]))]  # score descending, stable
    n_pos = 0
    per_img = {}
    for i, (g_cls, g_box, g_diff) in enumerate(gts):
        m = g_cls == cls
        n_pos += int(np.sum(m & ~g_diff))
        if m.any():
            per_img[i] = (g_box[m], g_diff[m], np.zeros(int(m.sum()), dtype=bool))
    tp = np.zeros(len(order), dtype=bool)
    fp = np.zeros(len(order), dtype=bool)
    n_img = len(gts)
    for r, d in enumerate(order):
        img = int(det.image_ids[d])
        if not 0 <= img < n_img:
            raise ValueError(f"detections.image_ids: expected values in [0, {n_img}), got {img}")
        if img not in per_img:
            fp[r] = True
            continue
        g_box, g_diff, used = per_img[img]
        ov = _iou64(det.boxes[d : d + 1], g_box)[0]
        j = int(ov.argmax())
        if ov[j] >= iou_threshold:
            if g_diff[j]:
                continue  # ignored
            if not used[j]:
                used[j] = True
                tp[r] = True
            else:
                fp[r] = True
        else:
            fp[r] = True
    keep = tp | fp
    return tp[keep], fp[keep], det.scores[order][keep], n_pos


def _prepare(detections, ground_truth):
    det = _detections(detections)
    gts = [_gt_entry(g, i) for i, g in enumerate(ground_truth)]
    return det, gts


def _curve(tp, fp, n_pos):
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(fp, dtype=np.float64)
    precision = ctp / np.maximum(ctp + cfp, 1)
    recall = ctp / n_pos if n_pos > 0 else np.full(len(ctp), np.nan)
    return precision, recall


def _ap_from_curve(precision, recall) -> float:
    """All-points interpolated AP (VOC2010+): area under the monotone precision envelope."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision made non-increasing in recall
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def precision_recall_curve(detections, ground_truth, cls: int, iou_threshold: float = 0.5):
    """Precision/recall of class `cls` as the score threshold falls: (precision, recall, thresholds).

    All three are (D_c,) over the non-ignored detections of the class, by score descending:
    entry r is for keeping the r+1 best detections (thresholds = their scores). Recall is NaN
    when the class has no (non-difficult) ground truth. Matching rules: `average_precision`.
    """
    det, gts = _prepare(detections, ground_truth)
    tp, fp, sc, n_pos = _match_class(det, gts, int(cls), iou_threshold)
    p, r = _curve(tp, fp, n_pos)
    return p, r, sc


def average_precision(detections, ground_truth, cls: int, iou_threshold: float = 0.5) -> float:
    """PASCAL VOC average precision of class `cls` (the detection metric of Section 5).

    Detections of the class, by score descending, are true positives when their best-IoU
    ground-truth box (same image, same class) has IoU >= iou_threshold and was not claimed by a
    higher-scoring detection; duplicates and misses are false positives. AP is the VOC2010+
    all-points interpolation: precision is replaced by its running max from the right (made
    non-increasing in recall) and integrated over the recall steps, sum (r_i - r_{i-1}) * p_i.
    Returns NaN when the class has no ground truth, 0.0 when it has ground truth but no hits.
    """
    det, gts = _prepare(detections, ground_truth)
    tp, fp, _, n_pos = _match_class(det, gts, int(cls), iou_threshold)
    if n_pos == 0:
        return float("nan")
    p, r = _curve(tp, fp, n_pos)
    return _ap_from_curve(p, r)


def mean_average_precision(detections, ground_truth, iou_threshold: float = 0.5, classes=None):
    """Mean of `average_precision` over classes -> (mAP, {class: AP}).

    `classes` defaults to every class seen in the ground truth or the detections. Classes with
    no ground truth get AP NaN in the dict and are excluded from the mean (their detections can
    only be false positives, and VOC/ILSVRC score them so); mAP is NaN if no class has any.
    """
    det, gts = _prepare(detections, ground_truth)
    if classes is None:
        seen = [det.classes] + [g[0] for g in gts]
        classes = np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.int64)
    per_class = {}
    for c in classes:
        tp, fp, _, n_pos = _match_class(det, gts, int(c), iou_threshold)
        if n_pos == 0:
            per_class[int(c)] = float("nan")
        else:
            per_class[int(c)] = _ap_from_curve(*_curve(tp, fp, n_pos))
    valid = [v for v in per_class.values() if not np.isnan(v)]
    return (float(np.mean(valid)) if valid else float("nan")), per_class
