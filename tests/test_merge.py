"""Greedy merge (Section 4.3, the "paper" method), the default accumulation and NMS: naive
reference loops plus invariants (hypothesis)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from overfeat_np.boxes import iou
from overfeat_np.merge import (
    DEFAULT_AREA_POWER,
    DEFAULT_MERGE_T,
    accumulate,
    batched_nms,
    greedy_merge,
    keep_strong,
    match_score,
    nms,
    relative_size,
    scale_weights,
    suppress_duplicates,
    window_weights,
)

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def box_sets(draw, min_n=1, max_n=12, n_classes=3):
    """(boxes (N, 4), scores (N,), classes (N,)): sides >= 1 px, scores in [0.01, 1]."""
    n = draw(st.integers(min_n, max_n))
    xy = draw(arrays(np.float64, (n, 2), elements=st.floats(0, 100)))
    wh = draw(arrays(np.float64, (n, 2), elements=st.floats(1, 60)))
    s = draw(arrays(np.float64, n, elements=st.floats(0.01, 1)))
    c = draw(arrays(np.int64, n, elements=st.integers(0, n_classes - 1)))
    return np.concatenate([xy, xy + wh], 1), s, c


# ------------------------------------------------------------------ independent scalar reference


def ref_score(a, b):
    """The documented match score, one pair at a time, written from the docstring."""
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    d = ((ca[0] - cb[0]) ** 2 + (ca[1] - cb[1]) ** 2) ** 0.5
    s = ((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1])) / 4
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return d / s + 1 - inter / union


def ref_merge(boxes, scores, t):
    """Section 4.3 step (d) verbatim on one class: clusters of member indices, O(n^3)."""
    clusters = [[i] for i in range(len(boxes))]
    while len(clusters) > 1:
        cur = [boxes[m].mean(0) for m in clusters]
        best, pair = np.inf, None
        for i in range(len(cur)):
            for j in range(i + 1, len(cur)):
                sc = ref_score(cur[i], cur[j])
                if sc < best:
                    best, pair = sc, (i, j)
        if best > t:
            break
        i, j = pair
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    return [(boxes[m].mean(0), scores[m].sum()) for m in clusters]


def ref_nms(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(ref_iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def ref_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def clustered(rng, n_objects=3, per_object=15, n_noise=10):
    """Noisy copies of a few object boxes plus scattered boxes, as the regressor produces."""
    objs = np.concatenate([rng.uniform(0, 300, (n_objects, 2)), np.zeros((n_objects, 2))], 1)
    objs[:, 2:] = objs[:, :2] + rng.uniform(40, 120, (n_objects, 2))
    b = np.repeat(objs, per_object, 0)
    b = b + rng.normal(0, 6, b.shape)
    noise = rng.uniform(0, 350, (n_noise, 2))
    b = np.concatenate([b, np.concatenate([noise, noise + rng.uniform(10, 50, (n_noise, 2))], 1)])
    s = np.concatenate([rng.uniform(0.5, 1, n_objects * per_object), rng.uniform(0, 0.2, n_noise)])
    return b, s


# ------------------------------------------------------------------ match score


def test_match_score_matches_scalar_reference(rng):
    a = np.concatenate([rng.uniform(0, 50, (6, 2)), np.zeros((6, 2))], 1)
    a[:, 2:] = a[:, :2] + rng.uniform(1, 40, (6, 2))
    got = match_score(a, a[::-1])
    want = [[ref_score(x, y) for y in a[::-1]] for x in a]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(box_sets(), st.floats(0.1, 20), st.floats(-100, 100), st.floats(-100, 100))
def test_match_score_symmetric_zero_on_self_and_similarity_invariant(bsc, k, dx, dy):
    b = bsc[0]
    s = match_score(b, b)
    np.testing.assert_allclose(s, s.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(s), 0, atol=1e-6)
    assert np.all(s >= -1e-6)
    moved = b * k + [dx, dy, dx, dy]
    np.testing.assert_allclose(match_score(moved, moved), s, atol=1e-4)


def test_match_score_orders_by_distance_and_overlap():
    a = np.array([[0, 0, 10, 10]], float)
    shifted = np.array([[x, 0, x + 10, 10] for x in (0, 1, 3, 6, 9, 12, 20)], float)
    s = match_score(a, shifted)[0]
    assert np.all(np.diff(s) > 0)  # nearer centres and larger overlap -> smaller score
    assert s[0] == 0 and np.all(s[5:] >= 1)  # disjoint boxes score >= 1


def test_default_threshold_documented_examples():
    unit = np.array([[0, 0, 100, 100]], float)
    # equal boxes: merge when centres are ~18% of a side apart, not 20%
    assert match_score(unit, unit + [18, 0, 18, 0])[0, 0] <= DEFAULT_MERGE_T
    assert match_score(unit, unit + [20, 0, 20, 0])[0, 0] > DEFAULT_MERGE_T
    # concentric boxes: merge up to ~1.41x in linear size (IoU 0.5)
    for r, ok in ((1.40, True), (1.43, False)):
        big = np.array([[50 - 50 * r, 50 - 50 * r, 50 + 50 * r, 50 + 50 * r]])
        assert (match_score(unit, big)[0, 0] <= DEFAULT_MERGE_T) == ok


# ------------------------------------------------------------------ greedy merge


@pytest.mark.parametrize("seed", range(4))
def test_greedy_merge_matches_reference_loop(seed):
    rng = np.random.default_rng(seed)
    b, s = clustered(rng)
    want = ref_merge(b, s, DEFAULT_MERGE_T)
    mb, ms, mc = greedy_merge(b, s)
    assert len(mb) == len(want) < len(b)
    wb = np.array([w[0] for w in want])
    ws = np.array([w[1] for w in want])
    order = np.argsort(-ws)
    np.testing.assert_allclose(mb, wb[order], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ms, ws[order], rtol=1e-5)
    assert np.all(mc == 0)


def test_coherent_boxes_beat_isolated_false_positive():
    """The point of Section 4.3: many weak agreeing boxes outrank one strong isolated box."""
    rng = np.random.default_rng(0)
    obj = np.array([100, 100, 200, 180.0])
    b = np.concatenate([obj + rng.normal(0, 3, (20, 4)), [[300, 300, 340, 330]]])
    s = np.concatenate([np.full(20, 0.3), [0.9]])
    mb, ms, _ = greedy_merge(b, s)
    assert len(mb) == 2
    np.testing.assert_allclose(mb[0], b[:20].mean(0), rtol=1e-5)
    np.testing.assert_allclose(ms, [6.0, 0.9], rtol=1e-5)
    assert nms(b, s)[0] == 20  # NMS would rank the isolated box first


@SETTINGS
@given(box_sets(), st.randoms(use_true_random=False), st.sampled_from([0.3, 0.5, 0.9]))
def test_invariant_to_input_permutation(bsc, rnd, t):
    b, s, c = bsc
    perm = np.array(rnd.sample(range(len(b)), len(b)))
    r1 = greedy_merge(b, s, c, t=t, return_groups=True)
    r2 = greedy_merge(b[perm], s[perm], c[perm], t=t, return_groups=True)
    for x, y in zip(r1[:3], r2[:3]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(r1[3][perm], r2[3])


@SETTINGS
@given(
    arrays(np.float64, 2, elements=st.floats(-50, 50)),
    arrays(np.float64, 2, elements=st.floats(1, 80)),
    arrays(np.float64, st.integers(1, 10), elements=st.floats(0.01, 1)),
    st.booleans(),
)
def test_identical_boxes_merge_into_one(xy, wh, s, weighted):
    box = np.concatenate([xy, xy + wh])
    mb, ms, mc = greedy_merge(np.tile(box, (len(s), 1)), s, np.full(len(s), 7), weighted=weighted)
    assert mb.shape == (1, 4)
    np.testing.assert_allclose(mb[0], box, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ms, [s.sum()], rtol=1e-6)
    assert mc.tolist() == [7]


@SETTINGS
@given(box_sets(max_n=16), st.sampled_from([0.2, DEFAULT_MERGE_T, 0.99]))
def test_far_apart_boxes_never_merge(bsc, t):
    b, s, _c = bsc
    # place box i in its own 100x100 cell of a grid: no two boxes overlap
    size = np.minimum(b[:, 2:] - b[:, :2], 90)
    cell = np.stack([np.arange(len(b)) % 4, np.arange(len(b)) // 4], 1) * 100.0
    far = np.concatenate([cell, cell + size], 1)
    mb, ms, _mc = greedy_merge(far, s, np.zeros(len(b), int), t=t)
    assert len(mb) == len(b)
    np.testing.assert_allclose(np.sort(ms), np.sort(s).astype(np.float32))


@SETTINGS
@given(box_sets(), st.sampled_from([0.3, 0.5, 0.9, 2.0]), st.booleans())
def test_conservation_and_containment(bsc, t, weighted):
    b, s, c = bsc
    mb, ms, mc, groups = greedy_merge(b, s, c, t=t, weighted=weighted, return_groups=True)
    assert np.all(np.diff(ms) <= 0)  # sorted by confidence descending
    for cls in np.unique(c):  # confidence conserved per class; classes never mix
        np.testing.assert_allclose(ms[mc == cls].sum(), s[c == cls].sum(), rtol=1e-5)
    assert set(mc.tolist()) == set(c.tolist())
    np.testing.assert_array_equal(mc[groups], c)
    np.testing.assert_allclose(np.bincount(groups, weights=s, minlength=len(ms)), ms, rtol=1e-5)
    for k in range(len(mb)):  # box_merge = (weighted) mean of the members; inside their union
        m = groups == k
        w = s[m] if weighted else np.ones(m.sum())
        np.testing.assert_allclose(mb[k], (b[m] * w[:, None]).sum(0) / w.sum(), rtol=1e-5, atol=1e-3)
        assert np.all(mb[k, :2] >= b[m, :2].min(0) - 1e-3)
        assert np.all(mb[k, 2:] <= b[m, 2:].max(0) + 1e-3)
    lo, hi = b[:, :2].min(0), b[:, 2:].max(0)
    assert np.all(mb[:, :2] >= lo - 1e-3) and np.all(mb[:, 2:] <= hi + 1e-3)


def test_classes_never_merge():
    box = np.array([[10, 10, 50, 50]] * 4, float)
    _mb, ms, mc = greedy_merge(box, [1, 2, 3, 4], [0, 1, 0, 1], t=10.0)
    assert sorted(mc.tolist()) == [0, 1]
    np.testing.assert_allclose(ms, [6, 4])


def test_larger_t_merges_more(rng):
    b, s = clustered(rng)
    counts = [len(greedy_merge(b, s, t=t)[0]) for t in (0.0, 0.2, 0.5, 1.0, 3.0, 100.0)]
    assert all(x >= y for x, y in itertools.pairwise(counts))
    assert counts[-1] == 1


def test_thousands_of_boxes_run():
    rng = np.random.default_rng(1)
    parts = [clustered(rng, n_objects=5, per_object=150, n_noise=500) for _ in range(2)]
    b = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    c = np.repeat([0, 1], len(parts[0][0]))
    mb, ms, _mc = greedy_merge(b, s, c)
    np.testing.assert_allclose(ms.sum(), s.sum(), rtol=1e-5)
    assert len(mb) < len(b)


def test_empty_and_single():
    mb, ms, mc, g = greedy_merge(np.zeros((0, 4)), np.zeros(0), return_groups=True)
    assert mb.shape == (0, 4) and ms.shape == (0,) and mc.shape == (0,) and g.shape == (0,)
    mb, ms, mc = greedy_merge([[0, 0, 1, 1]], [0.5])
    np.testing.assert_array_equal(mb, [[0, 0, 1, 1]])
    assert mb.dtype == np.float32 and ms.dtype == np.float32 and mc.dtype == np.int64


def test_bad_input_raises_with_names():
    b = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"scores: expected shape \(3,\), got \(2,\)"):
        greedy_merge(b, [1, 2])
    with pytest.raises(ValueError, match=r"classes: expected shape \(3,\), got \(4,\)"):
        greedy_merge(b, [1, 2, 3], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="scores: expected finite"):
        greedy_merge(b, [1, np.nan, 3])
    with pytest.raises(ValueError, match=r"boxes: expected shape \(N, 4\), got \(3, 3\)"):
        greedy_merge(np.zeros((3, 3)), [1, 2, 3])
    with pytest.raises(ValueError, match="weighted"):
        greedy_merge(b, [1, 0, 3], weighted=True)
    with pytest.raises(ValueError, match=r"scores: expected shape \(3,\)"):
        nms(b, [1, 2])


# ------------------------------------------------------------------ NMS


@SETTINGS
@given(box_sets(max_n=20), st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_nms_properties_and_reference(bsc, thr):
    b, s, _ = bsc
    keep = nms(b, s, thr)
    assert keep[0] == np.lexsort((np.arange(len(s)), -s))[0]  # the max-score box is kept
    assert keep.tolist() == ref_nms(b, s, thr)
    kb = b[keep]
    ov = np.array([[ref_iou(x, y) for y in kb] for x in kb])
    np.fill_diagonal(ov, 0)
    assert np.all(ov <= thr + 1e-12)  # no two kept boxes overlap more than the threshold
    for i in set(range(len(b))) - set(keep.tolist()):  # every dropped box has a kept suppressor
        assert any(ref_iou(b[i], b[k]) > thr and s[k] >= s[i] for k in keep)


@SETTINGS
@given(box_sets(max_n=20))
def test_batched_nms_is_nms_per_class(bsc):
    b, s, c = bsc
    keep = batched_nms(b, s, c, 0.5)
    want = set()
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        want |= set(idx[nms(b[idx], s[idx], 0.5)].tolist())
    assert set(keep.tolist()) == want
    assert np.all(np.diff(s[keep]) <= 0)


# ------------------------------------------------------------------ the default accumulation


def ref_suppress(boxes, conf, classes, thr):
    """suppress_duplicates written as a loop: NMS per class, each suppressed box's confidence goes
    to the first (strongest) kept box of its class that overlaps it by more than thr."""
    order = sorted(range(len(boxes)), key=lambda i: (-conf[i], i))
    kept, total = [], {}
    for i in order:
        owner = next((k for k in kept if classes[k] == classes[i] and ref_iou(boxes[i], boxes[k]) > thr), None)
        if owner is None:
            kept.append(i)
            total[i] = conf[i]
        else:
            total[owner] += conf[i]
    return kept, total


@SETTINGS
@given(box_sets(max_n=20), st.sampled_from([0.3, 0.5, 0.7]))
def test_suppress_duplicates_matches_reference_and_leaves_no_duplicate(bsc, thr):
    b, s, c = bsc
    mb, ms, mc = suppress_duplicates(b, s, c, thr)
    kept, total = ref_suppress(b, s, c, thr)
    want = sorted(((total[k], k) for k in kept), key=lambda x: (-x[0], x[1]))
    np.testing.assert_allclose(ms, [w[0] for w in want], rtol=1e-5)
    np.testing.assert_allclose(mb, b[[w[1] for w in want]], rtol=1e-5, atol=1e-4)
    assert ms.sum() == pytest.approx(s.sum(), rel=1e-5)  # confidence moves, never vanishes
    for cls in np.unique(mc):
        o = iou(mb[mc == cls], mb[mc == cls])
        np.fill_diagonal(o, 0)
        assert np.all(o <= thr + 1e-6)


def test_window_weights_are_window_areas_relative_to_the_largest_to_a_power():
    w = np.array([[0, 0, 64, 64], [10, 10, 42, 42], [0, 0, 16, 64.0]])
    np.testing.assert_allclose(window_weights(w, power=1.0), [1.0, 0.25, 0.25])
    np.testing.assert_allclose(window_weights(w, power=0.0), [1.0, 1.0, 1.0])  # the paper's one vote each
    np.testing.assert_allclose(window_weights(w), 0.25 ** np.array([0.0, DEFAULT_AREA_POWER, DEFAULT_AREA_POWER]))
    assert 0 < DEFAULT_AREA_POWER <= 1
    assert window_weights(np.zeros((0, 4))).shape == (0,)
    np.testing.assert_allclose(window_weights(np.zeros((2, 4))), [1.0, 1.0])  # degenerate windows: equal votes


def test_relative_size_is_the_box_side_over_the_largest_window_side():
    w = np.array([[0, 0, 64, 64], [10, 10, 42, 42.0]])
    assert relative_size([0, 0, 16, 16], w) == pytest.approx(0.25)
    assert relative_size([5, 5, 13, 37], w) == pytest.approx(16 / 64)  # 8 x 32: side sqrt(256)
    assert relative_size([0, 0, 128, 128], w) == pytest.approx(2.0)
    assert relative_size([3, 3, 3, 9], w) == 0.0  # an empty box
    assert relative_size([0, 0, 16, 16], np.zeros((0, 4))) == 0.0
    assert relative_size(np.array([[0, 0, 16, 16]]), w) == pytest.approx(0.25)  # one box as (1, 4)
    with pytest.raises(ValueError, match=r"box: expected shape \(N, 4\), got \(3,\)"):
        relative_size([0, 0, 16], w)
    with pytest.raises(ValueError, match="box: expected one box"):
        relative_size(w, w)


def test_scale_weights_match_the_window_weights_of_each_scale():
    # a 64-px window of a scale (H, W) covers 64 * 240 / H x 64 * 320 / W pixels of a 240 x 320 image
    scales = [(120, 160), (240, 320), (300, 400)]
    windows = np.array([[0, 0, 64 * 320 / w, 64 * 240 / h] for h, w in scales])
    for power in (0.0, 0.5, 1.0, DEFAULT_AREA_POWER):
        np.testing.assert_allclose(scale_weights(scales, power), window_weights(windows, power), rtol=1e-12)
    np.testing.assert_allclose(scale_weights(scales, 1.0), [1.0, 0.25, 0.16])


def test_keep_strong_is_relative_to_the_best_of_each_group():
    s = np.array([1.0, 0.6, 0.4, 0.1, 0.05])
    g = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(keep_strong(s, g, 0.5), [True, True, False, True, True])


def test_accumulate_does_not_let_a_many_window_scale_outvote_the_others():
    """What the paper's sum gets wrong here: a large scale (5x the image side, so 1/25 of the window
    area in the image) with 100 locations whose windows see only parts of the object and give a
    wrong class 0.4 each outranks the right class that two small scales with 4 locations each are
    sure of. Weighting each window by the image area it stands for puts the right class first."""
    rng = np.random.default_rng(1)
    obj = np.array([20, 20, 60, 60.0])
    right = obj + rng.normal(0, 1, (8, 4))  # scales 0 and 1: 4 locations each, class 1 at 0.9
    wrong = obj + rng.normal(0, 2, (100, 4))  # scale 2: 100 locations, class 2 at 0.4
    boxes = np.concatenate([right, wrong])
    scores = np.concatenate([np.full(8, 0.9), np.full(100, 0.4)])
    classes = np.array([1] * 8 + [2] * 100)
    sid = np.array([0] * 4 + [1] * 4 + [2] * 100)
    _, ps, pc = greedy_merge(boxes, scores, classes)
    assert pc[0] == 2 and ps[0] == pytest.approx(40.0)  # the paper's sum: 100 x 0.4 beats 8 x 0.9
    weights = np.concatenate([np.ones(8), np.full(100, 1 / 25)])
    ab, acf, ac = accumulate(boxes, scores, classes, sid, weights)
    assert ac[0] == 1 and acf[0] == pytest.approx(7.2, rel=1e-5)
    assert acf[1] == pytest.approx(1.6, rel=1e-5)  # 100 x 0.4 / 25
    np.testing.assert_allclose(ab[0], right.mean(0), atol=1e-3)  # equal scores: the plain mean


def test_accumulate_weights_the_box_by_confidence_and_drops_weak_windows():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 12, 12.0]])
    scores = np.array([0.9, 0.3, 0.4])
    sid = np.zeros(3, np.int64)
    b, conf, _ = accumulate(boxes, scores, np.zeros(3), sid, min_fraction=0.4)  # 0.3 < 0.4 x 0.9: dropped
    want = (0.9 * boxes[0] + 0.4 * boxes[2]) / 1.3
    np.testing.assert_allclose(b[0], want, rtol=1e-5)
    assert conf[0] == pytest.approx(1.3, rel=1e-5)  # no weights: the kept scores add up
    empty = accumulate(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0))
    assert [len(a) for a in empty] == [0, 0, 0]


def test_accumulate_leaves_at_most_one_box_of_a_class_per_object():
    """Boxes of one object at two scales that differ in size (match score > t, so the greedy merge
    keeps them apart) end as one box: no duplicate of a class on an object."""
    obj = np.array([10, 10, 50, 50.0])
    small = obj + np.array([4, 4, -4, -4.0])  # IoU 0.64 with obj, centres equal
    boxes = np.stack([obj, obj, small, small])
    scores = np.full(4, 0.8)
    sid = np.array([0, 0, 1, 1])
    pb, _, _ = greedy_merge(boxes, scores, t=0.3)
    assert len(pb) == 2  # the paper's merge leaves two boxes of the class on the object
    ab, acf, _ = accumulate(boxes, scores, np.zeros(4), sid, t=0.3)
    assert len(ab) == 1 and acf[0] == pytest.approx(3.2, rel=1e-5)
