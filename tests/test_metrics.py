"""Metrics: top-k, ILSVRC localization, VOC AP/mAP. Hand-computed cases and properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from overfeat_np.metrics import (
    Detections,
    average_precision,
    localization_error,
    mean_average_precision,
    precision_recall_curve,
    topk_accuracy,
    topk_error,
)

SETTINGS = settings(max_examples=30, deadline=None)


def B(*rows):
    return np.array(rows, dtype=float).reshape(-1, 4)


def dets(rows):
    """rows of (image_id, class, score, l, t, r, b) -> Detections."""
    a = np.array(rows, dtype=float).reshape(-1, 7)
    return Detections(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2], a[:, 3:])


# ------------------------------------------------------------------ top-k


def test_topk_hand_computed():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    labels = np.array([1, 2, 0, 1])
    # ranks of the label: 0, 2, 2, 2 (row 3 tie 0.3/0.3 goes to the lower class index 0)
    acc = topk_accuracy(scores, labels, k=(1, 2, 3))
    assert acc == {1: 0.25, 2: 0.25, 3: 1.0}
    assert topk_error(scores, labels, k=2) == {2: 0.75}


@SETTINGS
@given(st.integers(1, 20), st.integers(2, 8), st.data())
def test_topk_matches_stable_sort_reference(n, c, data):
    # integer scores force ties; reference = a stable descending sort per row
    scores = data.draw(arrays(np.int64, (n, c), elements=st.integers(0, 3))).astype(float)
    labels = data.draw(arrays(np.int64, n, elements=st.integers(0, c - 1)))
    ks = tuple(range(1, c + 1))
    acc = topk_accuracy(scores, labels, k=ks)
    ranked = np.argsort(-scores, axis=1, kind="stable")
    for k in ks:
        want = np.mean([labels[i] in ranked[i, :k] for i in range(n)])
        assert acc[k] == pytest.approx(want)
    assert acc[c] == 1.0
    assert all(acc[k] <= acc[k + 1] for k in ks[:-1])


def test_topk_bad_input():
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\), got \(3,\)"):
        topk_accuracy(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"scores: expected shape \(N, C\), got \(3,\)"):
        topk_accuracy(np.zeros(3), [0])
    with pytest.raises(ValueError, match="labels: expected class indices"):
        topk_accuracy(np.zeros((1, 3)), [3])
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.array([[np.nan, 1]]), [0])


# ------------------------------------------------------------------ localization


def test_localization_error_hand_computed():
    gt_box = B([0, 0, 100, 100])
    ok_box = B([0, 0, 100, 80])  # IoU 0.8
    weak_box = B([0, 0, 100, 40])  # IoU 0.4
    gt = [([3], gt_box)] * 4
    wrong = (5, B([300, 300, 310, 310]))
    predictions = [
        ([5, 5, 3], np.concatenate([wrong[1], wrong[1], ok_box])),  # right at guess 3
        ([3], weak_box),  # right class, IoU 0.4 < 0.5
        ([4], ok_box),  # right box, wrong class
        ([5] * 5 + [3], np.concatenate([wrong[1]] * 5 + [ok_box])),  # right only at guess 6
    ]
    err, per = localization_error(predictions, gt, k=5, return_per_image=True)
    assert err == pytest.approx(3 / 4)
    assert per.tolist() == [True, False, False, False]
    assert localization_error(predictions, gt, k=6) == pytest.approx(2 / 4)
    assert localization_error(predictions, gt, k=2) == pytest.approx(1.0)
    assert localization_error(predictions, gt, iou_threshold=0.4) == pytest.approx(2 / 4)


def test_localization_any_gt_box_of_the_class_counts():
    gt = [([1, 1, 2], B([0, 0, 10, 10], [50, 50, 90, 90], [0, 0, 10, 10]))]
    assert localization_error([([1], B([50, 50, 90, 92]))], gt) == 0.0  # 2nd box of class 1
    assert localization_error([([1], B([200, 200, 210, 210]))], gt) == 1.0
    assert localization_error([([], np.zeros((0, 4)))], gt) == 1.0  # no guesses


def test_localization_bad_input():
    with pytest.raises(ValueError, match="one entry per image"):
        localization_error([([1], B([0, 0, 1, 1]))], [])
    with pytest.raises(ValueError, match=r"predictions\[0\] classes: expected shape \(1,\), got \(2,\)"):
        localization_error([([1, 2], B([0, 0, 1, 1]))], [([1], B([0, 0, 1, 1]))])


# ------------------------------------------------------------------ AP / mAP


def test_ap_tp_fp_tp():
    gt = [([0, 0], B([0, 0, 10, 10], [20, 20, 30, 30]))]
    d = dets([(0, 0, 0.9, 0, 0, 10, 10), (0, 0, 0.8, 50, 50, 60, 60), (0, 0, 0.7, 20, 20, 30, 31)])
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: envelope 1 on (0, 1/2], 2/3 on (1/2, 1]
    assert average_precision(d, gt, 0) == pytest.approx(1 * 0.5 + (2 / 3) * 0.5)
    p, r, thr = precision_recall_curve(d, gt, 0)
    np.testing.assert_allclose(p, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r, [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(thr, [0.9, 0.8, 0.7])


def test_ap_interpolation_uses_the_precision_envelope():
    # 3 GT over 2 images; ranked FP, TP, TP, FP, TP: precision 0, 1/2, 2/3, 1/2, 3/5 at recall
    # 0, 1/3, 2/3, 2/3, 1. Envelope (max precision at recall >= r): 2/3, 2/3, 3/5 on the steps.
    gt = [([1], B([0, 0, 10, 10])), ([1, 1], B([0, 0, 10, 10], [40, 40, 60, 60]))]
    d = dets([
        (1, 1, 0.6, 40, 40, 60, 59),  # TP (lowest score)
        (0, 1, 0.95, 30, 30, 40, 40),  # FP
        (0, 1, 0.9, 0, 0, 10, 10),  # TP
        (1, 1, 0.8, 1, 0, 10, 10),  # TP
        (1, 1, 0.7, 0, 0, 10, 10),  # FP: duplicate of the box just claimed
    ])
    want = (1 / 3) * (2 / 3) + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 5)
    assert average_precision(d, gt, 1) == pytest.approx(want)


def test_ap_partial_recall_wrong_image_and_class():
    gt = [([0, 0], B([0, 0, 10, 10], [20, 20, 30, 30])), ([1], B([0, 0, 10, 10]))]
    d = dets([
        (0, 0, 0.9, 0, 0, 10, 10),  # TP
        (1, 0, 0.95, 0, 0, 10, 10),  # FP: image 1 has no class-0 box
        (0, 1, 0.99, 20, 20, 30, 30),  # class 1 in image 0: a class-1 FP, ignored for class 0
    ])
    # class 0 ranked FP, TP: precision 0, 1/2 at recall 0, 1/2 -> AP = 1/2 * 1/2
    assert average_precision(d, gt, 0) == pytest.approx(0.25)
    # class 1: one FP, its GT in image 1 missed -> 0
    assert average_precision(d, gt, 1) == 0.0


def test_ap_matches_only_the_best_iou_box():
    # VOC rule: a detection is compared with the ground-truth box of highest IoU only
    gt = [([0, 0], B([0, 0, 10, 10], [0, 2, 10, 12]))]
    d = dets([(0, 0, 0.9, 0, 0, 10, 10), (0, 0, 0.8, 0, 0, 10, 10)])
    # second detection's best box (IoU 1) is claimed -> FP even though box 2 has IoU 0.67
    p, r, _ = precision_recall_curve(d, gt, 0)
    np.testing.assert_allclose(p, [1, 0.5])
    np.testing.assert_allclose(r, [0.5, 0.5])
    assert average_precision(d, gt, 0) == pytest.approx(0.5)


def test_difficult_boxes_are_ignored():
    gt = [([0, 0], B([0, 0, 10, 10], [50, 50, 60, 60]), [False, True])]
    d = dets([(0, 0, 0.9, 50, 50, 60, 60), (0, 0, 0.8, 0, 0, 10, 10)])
    # detection on the difficult box is neither TP nor FP; the difficult box is not a positive
    p, r, thr = precision_recall_curve(d, gt, 0)
    np.testing.assert_allclose(p, [1.0])
    np.testing.assert_allclose(r, [1.0])
    np.testing.assert_allclose(thr, [0.8])
    assert average_precision(d, gt, 0) == 1.0


def test_map_excludes_classes_without_ground_truth():
    gt = [([0, 1], B([0, 0, 10, 10], [20, 20, 40, 40])), ([], np.zeros((0, 4)))]
    d = dets([
        (0, 0, 0.9, 0, 0, 10, 10),  # class 0: AP 1
        (0, 1, 0.9, 0, 0, 10, 10),  # class 1: FP then TP -> AP 1/2
        (0, 1, 0.5, 20, 20, 40, 40),
        (1, 2, 0.7, 0, 0, 10, 10),  # class 2 has no ground truth: NaN, left out of the mean
    ])
    m, per = mean_average_precision(d, gt)
    assert per[0] == pytest.approx(1.0) and per[1] == pytest.approx(0.5) and np.isnan(per[2])
    assert m == pytest.approx(0.75)
    m2, per2 = mean_average_precision(d, gt, classes=[1])
    assert m2 == pytest.approx(0.5) and list(per2) == [1]


@st.composite
def scenes(draw, n_images=4, n_classes=3):
    """Ground truth: per image up to 4 non-overlapping boxes (a 4x1 strip of cells)."""
    gts = []
    for _ in range(draw(st.integers(1, n_images))):
        m = draw(st.integers(0, 4))
        cls = draw(arrays(np.int64, m, elements=st.integers(0, n_classes - 1)))
        x = np.arange(m) * 100.0
        w = draw(arrays(np.float64, (m, 2), elements=st.floats(10, 90)))
        gts.append((cls, np.stack([x, x * 0, x + w[:, 0], w[:, 1]], 1)))
    return gts


def perfect(gts, rng):
    rows = [(i, c, rng.uniform(0.5, 1), *b) for i, (cl, bx) in enumerate(gts) for c, b in zip(cl, bx)]
    return dets(rows)


@SETTINGS
@given(scenes(), st.integers(0, 2**31 - 1))
def test_ap_properties(gts, seed):
    rng = np.random.default_rng(seed)
    d = perfect(gts, rng)
    classes = {int(c) for cl, _ in gts for c in cl}
    for c in range(3):
        ap = average_precision(d, gts, c)
        if c not in classes:
            assert np.isnan(ap)
            continue
        assert ap == pytest.approx(1.0)  # perfect detections
        empty = dets([])
        assert average_precision(empty, gts, c) == 0.0  # no detections
        # a false positive scoring below every true positive never changes AP
        low = Detections(*[np.concatenate([x, y]) for x, y in zip(d, dets([(0, c, 0.1, 500, 500, 510, 510)]))])
        assert average_precision(low, gts, c) == pytest.approx(1.0)
        # ... while one scoring above all of them lowers it
        high = Detections(*[np.concatenate([x, y]) for x, y in zip(d, dets([(0, c, 2.0, 500, 500, 510, 510)]))])
        assert average_precision(high, gts, c) < 1.0
        # dropping every other true positive caps AP at the recall reached
        half = np.flatnonzero(d.classes == c)[::2]
        keep = np.setdiff1d(np.arange(len(d.scores)), half)
        sub = Detections(*[x[keep] for x in d])
        n_pos = sum(int(np.sum(cl == c)) for cl, _ in gts)
        assert average_precision(sub, gts, c) == pytest.approx((n_pos - len(half)) / n_pos)
    m, _per = mean_average_precision(d, gts)
    if classes:
        assert m == pytest.approx(1.0)


@SETTINGS
@given(scenes(), st.integers(0, 2**31 - 1))
def test_ap_bounded_and_invariant_to_detection_order(gts, seed):
    rng = np.random.default_rng(seed)
    n = 12
    ids = rng.integers(0, len(gts), n)
    xy = rng.uniform(0, 300, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 90, (n, 2))], 1)
    d = Detections(ids, rng.integers(0, 3, n), rng.permutation(n) / n, boxes)
    perm = rng.permutation(n)
    dp = Detections(*[x[perm] for x in d])
    for c in range(3):
        a, b = average_precision(d, gts, c), average_precision(dp, gts, c)
        assert (np.isnan(a) and np.isnan(b)) or (0 <= a <= 1 and a == pytest.approx(b))
        p, r, thr = precision_recall_curve(d, gts, c)
        assert np.all(np.diff(thr) <= 0)
        if len(r) and not np.isnan(r).any():
            assert np.all(np.diff(r) >= 0) and np.all((p >= 0) & (p <= 1))


def test_detection_bad_input():
    gt = [([0], B([0, 0, 1, 1]))]
    with pytest.raises(ValueError, match="image_ids: expected values in"):
        average_precision(dets([(3, 0, 0.5, 0, 0, 1, 1)]), gt, 0)
    with pytest.raises(ValueError, match=r"detections.scores: expected shape \(1,\), got \(2,\)"):
        average_precision(Detections([0], [0], [0.5, 0.4], B([0, 0, 1, 1])), gt, 0)
    with pytest.raises(ValueError, match=r"ground_truth\[0\] boxes: expected shape \(N, 4\)"):
        average_precision(dets([]), [([0], np.zeros((1, 3)))], 0)
