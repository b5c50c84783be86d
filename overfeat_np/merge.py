"""Greedy box merging (OverFeat Section 4.3) and the non-maximum suppression it replaces.

OverFeat pools the boxes that the regressor predicts at every location of every scale for the
top-k classes, then repeatedly merges the best-matching pair until no pair matches well enough:
coherent boxes pile up confidence, isolated false positives stay weak. Classic NMS (`nms`,
`batched_nms`) instead keeps the best box of each overlapping group and throws the rest away.

Two accumulations: `greedy_merge` is Section 4.3 exactly as written (confidence = the plain sum
of the member windows' probabilities). `accumulate` is the package's default, measured in
benchmarks/bench_accumulation.py: with the paper's sum every window casts one vote, so a scale
with many locations (70x more at the small model's scale 6 than at scale 1) outvotes the others,
even where its windows see only part of the object. `accumulate` weights each window by the
image area one location of its scale stands for (`window_weights`: proportional to its window's
area in the image), so a scale weighs the image area it covers, not its location count; it drops
each scale's weak windows, averages a cluster's boxes weighted by confidence, and folds leftover
same-class fragments of one object into the strongest.
With objects much smaller than every window the area weight hands the vote to the coarse
scales, which cannot frame them, and Section 4.3's plain sum is the balanced one: localization
(`localize.merge_predictions`) falls back to it when the default's best box is below
`DEFAULT_SMALL_OBJECT` of the largest window (`relative_size`). `window_weights(..., power)`
moves between the two sums (`DEFAULT_AREA_POWER`). README, "Greedy merge vs NMS".
Host NumPy only; CuPy inputs are moved with `backend.to_numpy`.
"""

from __future__ import annotations

import numpy as np

from overfeat_np.boxes import _area64, _as_vector, _iou64, as_boxes

__all__ = [
    "DEFAULT_AREA_POWER",
    "DEFAULT_DEDUPE_IOU",
    "DEFAULT_MERGE_T",
    "DEFAULT_MIN_FRACTION",
    "DEFAULT_SMALL_OBJECT",
    "accumulate",
    "batched_nms",
    "greedy_merge",
    "keep_strong",
    "match_score",
    "nms",
    "relative_size",
    "scale_weights",
    "suppress_duplicates",
    "window_weights",
]

DEFAULT_MERGE_T = 0.5
"""Default merge threshold t: merge while the best pair's `match_score` is <= t (Section 4.3).

0.5 merges two equal boxes whose centres are up to ~19% of their side apart (IoU >= ~0.68), or
two concentric boxes up to ~1.4x apart in linear size (IoU >= 0.5); any t < 1 never merges
boxes that do not overlap at all.
"""

_EPS = 1e-12
_BLOCK = 1024  # rows of the pairwise score matrix computed at a time (caps temporary memory)


def _scores(al, at, ar, ab, bl, bt, br, bb) -> np.ndarray:
    """Match scores from broadcastable float64 coordinate arrays; see `match_score`.

    Written in place with few temporaries; elementwise ops only, so the pairwise (N, M) and the
    paired (P,) calls give bit-identical values for the same pair.
    """
    dist = (al + ar) - (bl + br)  # (N, M) 2 * dx
    dy = (at + ab) - (bt + bb)  # (N, M) 2 * dy
    dist *= dist
    dy *= dy
    dist += dy
    np.sqrt(dist, out=dist)  # 2 * centre distance
    wa, ha = np.maximum(ar - al, 0), np.maximum(ab - at, 0)  # (N, 1)
    wb, hb = np.maximum(br - bl, 0), np.maximum(bb - bt, 0)  # (1, M)
    side4 = (wa + ha) + (wb + hb)  # (N, M) 4 * mean side length of the pair
    np.maximum(side4, _EPS, out=side4)
    inter = np.minimum(ar, br)
    inter -= np.maximum(al, bl)
    np.maximum(inter, 0, out=inter)
    ih = np.minimum(ab, bb)
    ih -= np.maximum(at, bt)
    np.maximum(ih, 0, out=ih)
    inter *= ih  # (N, M) intersection area
    union = (wa * ha) + (wb * hb)
    union -= inter
    np.maximum(union, 1e-300, out=union)  # empty union -> IoU 0
    inter /= union  # IoU
    dist /= side4
    dist *= 2  # centre distance / mean side
    dist += 1
    dist -= inter
    return dist


def _match_score64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (N, 4), (M, 4) -> (N, M) match scores."""
    return _scores(*a.T[:, :, None], *b.T[:, None, :])


def match_score(a, b) -> np.ndarray:
    """Pairwise match score (N, M) of boxes a (N, 4) and b (M, 4); SMALLER means a better match.

    Section 4.3 builds the score from the distance between the box centres and their intersection
    area but gives no formula. Here

        match_score = |c_a - c_b| / s  +  (1 - IoU(a, b)),    s = (w_a + h_a + w_b + h_b) / 4,

    the centre distance in units of the pair's mean side length plus one minus the intersection
    over union. Why this form: it is 0 for identical boxes and grows as centres move apart or the
    overlap shrinks; it is symmetric and invariant to translating or scaling the whole image, so
    one threshold t serves every scale; the IoU term (rather than intersection / smaller area)
    also separates concentric boxes of very different sizes, e.g. a head inside a person; and
    disjoint boxes score >= 1, so any t < 1 never merges boxes that do not touch.
    The paper stops merging once the best score exceeds t; see `DEFAULT_MERGE_T`.
    """
    return _match_score64(as_boxes(a, "a"), as_boxes(b, "b")).astype(np.float32)


def _pairwise_scores(b: np.ndarray, t: float) -> np.ndarray:
    """(n, 4) float64 -> (n, n) float32 match scores, +inf where > t and on the diagonal.

    Dense, built in row blocks to cap temporary memory (scoring only the intersecting pairs
    was slower at the ~25% pair density of real box clouds).
    """
    n = len(b)
    s = np.empty((n, n), dtype=np.float32)
    for r0 in range(0, n, _BLOCK):
        sc = _match_score64(b[r0 : r0 + _BLOCK], b)
        sc[sc > t] = np.inf
        s[r0 : r0 + _BLOCK] = sc
    np.fill_diagonal(s, np.inf)
    return s


def _row_scores(cur: np.ndarray, k: int, active: np.ndarray, t: float) -> np.ndarray:
    """Scores (n,) float32 of slot k against every slot; +inf for inactive slots, k, and > t."""
    row = _match_score64(cur[k : k + 1], cur)[0]  # (n,)
    row[row > t] = np.inf
    row[~active] = np.inf
    row[k] = np.inf
    return row.astype(np.float32)


def _merge_class(b: np.ndarray, conf: np.ndarray, weight: np.ndarray, t: float):
    """Greedy merge of one class (Section 4.3 step d), boxes in canonical order.

    b: (n, 4) float64; conf, weight: (n,). Returns (boxes (K, 4), conf (K,), owner (n,)) where
    owner[i] is the output row that input i ended up in.
    """
    n = len(b)
    sums = b * weight[:, None]  # (n, 4) weighted coordinate sums of each slot's members
    wsum = weight.astype(np.float64).copy()  # (n,)
    conf = conf.astype(np.float64).copy()  # (n,)
    cur = b.copy()  # (n, 4) current (merged) box of each slot
    active = np.ones(n, dtype=bool)
    owner = np.arange(n)
    if n > 1:
        S = _pairwise_scores(b, t)  # (n, n); only pairs with score <= t can ever merge
        rowarg = S.argmin(1)  # (n,) best partner of each slot
        rowmin = S[np.arange(n), rowarg]  # (n,)
        while True:
            i = int(rowmin.argmin())
            if rowmin[i] == np.inf:  # every stored score is <= t; inf = no pair left to merge
                break
            j = int(rowarg[i])
            keep, drop = min(i, j), max(i, j)
            # box_merge: the merged box is the (weighted) mean of all original member boxes
            sums[keep] += sums[drop]
            wsum[keep] += wsum[drop]
            conf[keep] += conf[drop]
            cur[keep] = sums[keep] / wsum[keep]
            active[drop] = False
            owner[owner == drop] = keep
            S[drop, :] = np.inf
            S[:, drop] = np.inf
            rowmin[drop] = np.inf
            row = _row_scores(cur, keep, active, t)  # (n,) float32, +inf where > t
            S[keep, :] = row
            S[:, keep] = row
            # rows whose best partner was keep or drop must be rescanned; others may only improve
            stale = ((rowarg == keep) | (rowarg == drop)) & active
            stale[keep] = True
            better = (row < rowmin) & ~stale
            rowmin[better] = row[better]
            rowarg[better] = keep
            idx = np.flatnonzero(stale)
            sub = S[idx]  # (m, n)
            a = sub.argmin(1)
            rowarg[idx] = a
            rowmin[idx] = sub[np.arange(len(idx)), a]
    slots = np.flatnonzero(active)
    remap = np.full(n, -1)
    remap[slots] = np.arange(len(slots))
    return cur[slots], conf[slots], remap[owner]


def greedy_merge(
    boxes,
    scores,
    classes=None,
    t: float = DEFAULT_MERGE_T,
    weighted: bool = False,
    return_groups: bool = False,
):
    """Greedy merge of Section 4.3, class by class: boxes (N, 4), scores (N,), classes (N,).

    Per class, repeatedly take the pair with the smallest `match_score`; if it is > t stop, else
    replace the pair by its box_merge. box_merge "averages the coordinates": the merged box is
    the mean of ALL original member boxes (plain mean; the confidence-weighted mean with
    `weighted=True`, which needs scores > 0), not the mean of the two current boxes, so the
    result does not depend on the order of merges. Confidence = sum of the member scores.
    Boxes of different classes never merge. Inputs are put in a canonical order first (ties are
    broken by coordinates), so the output does not depend on the order of the input boxes.

    Returns (merged_boxes (K, 4) float32, confidences (K,) float32, classes (K,) int64), sorted
    by confidence descending; with `return_groups`, also groups (N,) int64: the output row that
    each input box was merged into.

    Cost per class of n boxes: one (n, n) float32 score matrix, then O(n) work per merge (only
    the merged row/column is rescored); ~0.25 s for 4,700 boxes of 3 classes on one CPU core.
    """
    b = as_boxes(boxes)
    n = len(b)
    s = _as_vector(scores, n, "scores")
    c = np.zeros(n, dtype=np.int64) if classes is None else _as_vector(classes, n, "classes", np.int64)
    t = float(t)
    if not np.isfinite(t):
        raise ValueError(f"t: expected a finite threshold, got {t}")
    if weighted and np.any(s <= 0):
        raise ValueError("scores: weighted=True needs scores > 0 (they weight the box average)")
    w = s if weighted else np.ones(n)

    # canonical order: class, then coordinates, then score (last key of lexsort is primary)
    order = np.lexsort((s, b[:, 3], b[:, 2], b[:, 1], b[:, 0], c))
    out_b, out_s, out_c, out_g = [], [], [], np.empty(n, dtype=np.int64)
    offset = 0
    for cls in np.unique(c):
        idx = order[c[order] == cls]  # canonical order within the class
        mb, ms, owner = _merge_class(b[idx], s[idx], w[idx], t)
        out_b.append(mb)
        out_s.append(ms)
        out_c.append(np.full(len(mb), cls, dtype=np.int64))
        out_g[idx] = owner + offset
        offset += len(mb)
    if offset == 0:
        res = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        return res + (out_g,) if return_groups else res
    mb, ms, mc = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_c)
    # sort by confidence descending, ties by class then coordinates (deterministic)
    rank = np.lexsort((mb[:, 3], mb[:, 2], mb[:, 1], mb[:, 0], mc, -ms))
    inv = np.empty_like(rank)
    inv[rank] = np.arange(len(rank))
    res = (mb[rank].astype(np.float32), ms[rank].astype(np.float32), mc[rank])
    return res + (inv[out_g],) if return_groups else res


def nms(boxes, scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Classic greedy non-maximum suppression: boxes (N, 4), scores (N,) -> kept indices (K,).

    Visit boxes by score descending (ties: lower index first); keep a box unless its IoU with an
    already kept box is > iou_threshold. Kept indices are returned in that visiting order, so no
    two kept boxes overlap by more than the threshold. The baseline Section 4.3 contrasts with.
    """
    b = as_boxes(boxes)
    s = _as_vector(scores, len(b), "scores")
    order = np.lexsort((np.arange(len(b)), -s))  # score descending, stable
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if not len(rest):
            break
        ov = _iou64(b[i : i + 1], b[rest])[0]  # (len(rest),)
        order = rest[ov <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5) -> np.ndarray:
    """`nms` run separately per class: boxes (N, 4), scores (N,), classes (N,) -> indices (K,).

    Boxes of different classes never suppress each other. Indices come sorted by score
    descending (ties: lower index first).
    """
    b = as_boxes(boxes)
    n = len(b)
    s = _as_vector(scores, n, "scores")
    c = _as_vector(classes, n, "classes", np.int64)
    kept = [np.zeros(0, dtype=np.int64)]
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        kept.append(idx[nms(b[idx], s[idx], iou_threshold)])
    k = np.concatenate(kept)
    return k[np.lexsort((k, -s[k]))]


# --- the package's default accumulation ----------------------------------------------------------------
DEFAULT_MIN_FRACTION = 0.5
"""`accumulate` keeps a window when its probability is >= this fraction of the best window of the
same class at the same scale: the weak windows around an object mostly see a part of it, where
the regressor (trained only on windows seeing >= 50% of a box) is guessing."""

DEFAULT_DEDUPE_IOU = 0.3
"""`suppress_duplicates`: merged boxes of one class overlapping a stronger one by IoU > 0.3 are
fragments of the same object (boxes of different scales can differ enough in size that the
match score stops the merge). 0.3, not NMS's usual 0.5: two boxes that both have IoU >= 0.5 with
one object can overlap each other by less than 0.5; on synthetic detection images (seed 2000,
not the test seeds) 0.5 left a second box of the class on 34% of the objects, 0.3 on none, and
mAP rose from 0.71 to 0.75."""


DEFAULT_AREA_POWER = 1.0
"""`window_weights` raises each window's relative image area to this power. 1 makes every scale
weigh the image area its locations cover (its summed vote no longer grows with its location
count); 0 is the paper's sum, one vote per location, where the scale with the most locations
decides. Chosen on development images (localization seed 2000, detection seed 2001, 150 per
object size and scale set; never the held-out ones) among 1, 0.75, 0.5 and 0, with regressors
that also saw small objects (`data.regressor_set`): 1 is the only power no worse than NMS in all
twelve development settings (0.75 and 0.5 lose detection mAP with large objects at fixed scales,
0.51 and 0.48 against NMS's 0.56; 0 loses there in both tasks). README, "Greedy merge vs NMS"."""


def _relative_weights(area, power: float) -> np.ndarray:
    """area (N,) -> (area / its max) ** power, float64; all ones when empty or all zero."""
    area = np.asarray(area, np.float64).reshape(-1)
    if not len(area) or area.max() <= 0:
        return np.ones(len(area))
    return (area / area.max()) ** float(power)


def window_weights(windows, power: float = DEFAULT_AREA_POWER) -> np.ndarray:
    """windows (N, 4) in image pixels -> (N,) float64: (each window's area / the largest one's) ** power.

    A scale of size S (a factor S / H of the image) has its locations a stride apart in its own
    pixels, i.e. stride * H / S apart in the image: one location stands for an image area
    proportional to (H / S)^2, the same factor as its window's area. With power 1, weighting votes
    by it makes each scale weigh the image area its locations cover instead of their number (the
    paper's sum, power 0, counts every location once, so the largest scales decide); the default
    `DEFAULT_AREA_POWER` sits between the two.
    """
    w = as_boxes(windows, "windows")
    return _relative_weights(_area64(w), power)


def scale_weights(scales, power: float = DEFAULT_AREA_POWER) -> np.ndarray:
    """scales [(H, W), ...] the image is resized to -> (S,) float64, the `window_weights` of each
    scale's windows: a window's image area goes as 1 / (H W)."""
    hw = np.asarray(scales, np.float64).reshape(-1, 2)
    return _relative_weights(1.0 / (hw[:, 0] * hw[:, 1]), power)


DEFAULT_SMALL_OBJECT = 0.35
"""Localization falls back to Section 4.3's plain sum when the default's best box is smaller
than this fraction of the largest window's side (`relative_size`). Why a size decides it: a
scale whose window spans W image pixels has about ((W + s) / its stride)^2 locations whose
windows overlap an object of side s, and its stride goes as W. For objects larger than the
windows that count goes as 1 / W^2, the inverse of the area weight, which then gives each scale
the same say; for objects far smaller than every window it is about the same at every scale
already, the plain sum is the balanced one, and the area weight hands the decision to the
coarsest scales, which cannot frame a small object. Chosen on development images only (seed
2000, never the held-out ones; synthetic shapes and digits, 150 per object size and scale set,
300 for small digits at fixed scales) among 0.2-0.4, the box measured against the largest window
(against the image side it fired on 18-50% of the images of rows the area weight wins): 0.35 is
the smallest value that ties or beats NMS on the small objects at fixed scales of both sets
(synthetic 0.193 -> 0.140, NMS 0.200; digits 0.787 -> 0.700, NMS 0.700), and it leaves the ten
other development rows unchanged. README, "Greedy merge vs NMS"."""


def relative_size(box, windows) -> float:
    """box (4,) and windows (N, 4) in image pixels -> the box's side (square root of its area)
    over the largest window's side; 0 when there are no windows."""
    b = as_boxes(box, "box", allow_single=True)
    if len(b) != 1:
        raise ValueError(f"box: expected one box of shape (4,), got {len(b)} boxes")
    w = as_boxes(windows, "windows")
    if not len(w):
        return 0.0
    return float(np.sqrt(_area64(b)[0] / max(_area64(w).max(), _EPS)))


def keep_strong(scores, groups, fraction: float = DEFAULT_MIN_FRACTION) -> np.ndarray:
    """(N,) bool: score >= fraction x the best score of its group (groups (N,) ints, e.g. one per
    (scale, class))."""
    s = np.asarray(scores, np.float64).reshape(-1)
    g = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)[1].reshape(-1)
    best = np.full(g.max() + 1 if len(g) else 0, -np.inf)
    np.maximum.at(best, g, s)
    return s >= fraction * best[g]


def suppress_duplicates(boxes, conf, classes, iou_threshold: float = DEFAULT_DEDUPE_IOU):
    """Fold every box into a stronger box of its class that overlaps it by IoU > iou_threshold.

    boxes (K, 4), conf (K,), classes (K,) -> (boxes, conf, classes) sorted by confidence. The
    boxes kept are those `batched_nms` keeps; a kept box's confidence also holds the confidences
    of the boxes it suppressed (the same evidence, found twice), its coordinates are unchanged.
    Afterwards no two boxes of one class overlap by more than the threshold.
    """
    b = as_boxes(boxes)
    n = len(b)
    c = _as_vector(conf, n, "conf")
    k = _as_vector(classes, n, "classes", np.int64)
    owner = np.arange(n)
    for cls in np.unique(k):
        idx = np.flatnonzero(k == cls)
        idx = idx[np.lexsort((idx, -c[idx]))]  # strongest first, ties by index (as `nms`)
        ov = _iou64(b[idx], b[idx])  # (m, m)
        free = np.ones(len(idx), bool)
        for a in range(len(idx)):  # one pass per kept box
            if not free[a]:
                continue
            free[a] = False
            hit = free & (ov[a] > iou_threshold)
            owner[idx[hit]] = idx[a]
            free[hit] = False
    keep = np.flatnonzero(owner == np.arange(n))
    total = np.bincount(owner, c, n)[keep]
    order = np.lexsort((keep, -total))
    keep = keep[order]
    return b[keep].astype(np.float32), total[order].astype(np.float32), k[keep]


def accumulate(boxes, scores, classes, scale_ids, weights=None, t: float = DEFAULT_MERGE_T,
               min_fraction: float = DEFAULT_MIN_FRACTION, dedupe_iou: float | None = DEFAULT_DEDUPE_IOU):
    """The package's box accumulation: boxes (N, 4), scores (N,), classes (N,), scale_ids (N,).

    1. keep the windows whose score is >= min_fraction x the best of their (scale, class);
    2. confidence of a window = its score x its weight (weights (N,), e.g. `window_weights` of
       the boxes' windows; None: 1, the paper's sum);
    3. `greedy_merge` with threshold t, the merged box the confidence-weighted mean;
    4. `suppress_duplicates` (dedupe_iou None: skip).
    Returns (boxes (K, 4) float32, confidences (K,) float32, classes (K,) int64), best first.
    """
    b = as_boxes(boxes)
    n = len(b)
    s = _as_vector(scores, n, "scores")
    c = _as_vector(classes, n, "classes", np.int64)
    sid = _as_vector(scale_ids, n, "scale_ids", np.int64)
    w = np.ones(n) if weights is None else _as_vector(weights, n, "weights")
    if n == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    keep = keep_strong(s, sid * (c.max() + 1) + c, min_fraction) & (s * w > 0)  # per (scale, class)
    mb, ms, mc = greedy_merge(b[keep], (s * w)[keep], c[keep], t, weighted=True)
    if dedupe_iou is None:
        return mb, ms, mc
    return suppress_duplicates(mb, ms, mc, dedupe_iou)
