# %% [markdown]
# # 06 · Boxes that accumulate: regression and greedy merge (Section 4)
#
# Classification says *what*; localization must also say *where*. OverFeat's answer (Section 4)
# reuses everything built so far. The frozen feature layers already run densely over every
# position and scale (lessons 04-05). A second small head, the **regressor**, reads the same
# pooled maps and outputs, at every location, a box (left, top, right, bottom) in that
# location's window. There is one box per window per scale, thousands per image. A **greedy
# merge** then fuses the boxes that agree. Because each merged box sums the class scores
# of the windows behind it, boxes that many windows agree on outrank a single confident
# window, which is where merging differs from non-maximum suppression.
#
# This lesson trains a small model on synthetic shapes (about half a minute on a laptop CPU),
# then looks at the raw box grid (the paper's Figure 6), watches the merge happen (Figure 7),
# compares it with NMS on the same boxes, and measures the localization error with 1, 2 and 4
# scales, single-class (SCR) against per-class (PCR) regression. Then the true story: where the
# paper's sum fails (objects larger than the window at the big scales, whose many windows outvote
# the rest), why, the fix this package uses by default, and how to choose scales from object size.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from threadpoolctl import threadpool_limits

# One BLAS thread: a matrix product sums in a different order with 2 threads than with 1, and a
# classifier trained for only 100 steps turns those last-bit differences into visibly different
# weights (an earlier version of this lesson passed its loss check with 1 thread and failed it
# with 2). Pinned, the lesson computes the same numbers on every machine, and its checks below
# still keep wide margins.
threadpool_limits(1)

from overfeat_np.boxes import iou
from overfeat_np.data import SyntheticShapes
from overfeat_np.exercises import check_match_score
from overfeat_np.grid import output_windows
from overfeat_np.localize import (
    BoxPredictions,
    centre_box_error,
    ground_truth,
    merge_predictions,
    predict_boxes,
    train_regressor,
    window_samples,
)
from overfeat_np.merge import (
    DEFAULT_MERGE_T,
    DEFAULT_SMALL_OBJECT,
    greedy_merge,
    relative_size,
    window_weights,
)
from overfeat_np.metrics import localization_error
from overfeat_np.preprocess import scale_images
from overfeat_np.regressor import build_regressor, regression_targets, window_overlap
from overfeat_np.scales import object_scale_warnings, scales_for_objects
from overfeat_np.train import TrainConfig, default_transforms, train

t_start = time.perf_counter()
CLASSES = SyntheticShapes(1, num_classes=6).classes

# %% [markdown]
# ## 1. A classifier, briefly trained
#
# The Section 3 training loop on 64x64 crops of synthetic shapes: the small model at half
# width, 100 steps. It is far from converged, but its features are good enough to regress boxes
# from, and that is all the regressor needs.

# %%
cfg = TrainConfig(model="small", width=0.5, epochs=1, batch_size=32, lr=0.05, milestones=(5,),
                  out_dir=None, progress=False, eval_every=0)
model = train(cfg, SyntheticShapes(100 * 32, image_size=72, seed=0),
              transforms=default_transforms(64, resize=None)).model
print(model, f"trained in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## 2. What the regressor is asked to learn
#
# Every output location sees a 64x64 window of the (rescaled) image. Its target is the object's
# box *in the frame of that window*: 0 is the window's left/top edge, 1 its right/bottom edge.
# Windows that see less than half of the object are left out. We define "overlap" as the
# fraction of the box inside the window, not IoU: a small object wholly inside a window has a
# small IoU with it, yet that window sees all of the object and can say exactly where it is.
#
# Below, one training image at scale 104x104: green windows are trained on, grey ones masked.

# %%
SCALES = ((72, 72), (88, 88), (104, 104), (136, 136))  # 64 + (2n - 1) * 8: exact fine-stride maps
train_set = SyntheticShapes(200, image_size=64, mode="localization", seed=3)
sample = train_set[5]
s = 104 / 64
box = sample["boxes"][0] * s
img = scale_images(sample["image"], [(104, 104)])[0]
wins = output_windows(model.config, (6, 6))  # (104 - 64) / 8 + 1 = 6 windows per axis
targets, labels, mask = regression_targets(wins, box[None], sample["box_labels"])
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.imshow(img)
for i in range(6):
    for j in range(6):
        cx, cy = wins[i, j, :2] + 32
        ax.plot(cx, cy, "o", color="tab:green" if mask[i, j] else "0.6", ms=5)
ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, color="yellow", lw=2))
ax.add_patch(Rectangle(wins[2, 2, :2], 64, 64, fill=False, color="tab:green", ls="--"))
ax.set_title(f"window centres: {mask.sum()} of 36 trained on\n"
             f"dashed window's target {np.round(targets[2, 2], 2)}")
plt.show()
assert mask.any() and not mask.all()

# %% [markdown]
# ## 3. Training on cached features
#
# The feature layers are frozen, so `window_samples` computes each image's maps once per scale
# and keeps, for every trained window, the pooled patch the head reads there. SGD then touches
# only the head: three small 1x1-output convolutions. We train an SCR regressor (4 outputs shared
# by all classes) and a PCR one (4 per class, only the true class's outputs trained) on the same
# cached windows.

# %%
t0 = time.perf_counter()
windows = window_samples(model, train_set, SCALES)
print(f"{len(windows)} windows from {len(train_set)} images x {len(SCALES)} scales, "
      f"features in {windows.seconds:.1f} s; per scale: {np.bincount(windows.scale_ids)}")
regs, hists = {}, {}
for name, per_class in (("SCR", False), ("PCR", True)):
    regs[name] = build_regressor(model, per_class=per_class)
    hists[name] = train_regressor(model, regs[name], windows=windows, epochs=20, lr=0.01, batch_size=128)
    print(f"{name}: loss {hists[name].losses[0]:.3f} -> {hists[name].losses[-1]:.3f}, "
          f"{hists[name].windows_per_second:.0f} windows/s")
fig, ax = plt.subplots(figsize=(5, 2.8))
for name, h in hists.items():
    ax.plot(np.arange(1, len(h.losses) + 1), h.losses, marker="o", label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("L2 loss (window units)")
ax.legend()
plt.show()
assert all(h.losses[-1] < 0.7 * h.losses[0] for h in hists.values())  # measured here: 0.37 and 0.49

# %% [markdown]
# ## 4. The raw box grid (Figure 6)
#
# `predict_boxes` runs the features once per scale; the classifier and the regressor both read
# them at every pooling offset. For the top classes of each scale (by spatial maximum of the
# softmax map), every location contributes one box, scored by its class probability. Here are
# the boxes of the best class at each scale, drawn with opacity equal to their score.

# %%
val = SyntheticShapes(100, image_size=64, mode="localization", seed=4)
example = val[1]
pred = predict_boxes(model, regs["SCR"], example["image"], SCALES, top_k=5)
top = int(pred.classes[np.argmax(pred.scores)])
gt = example["boxes"][0]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for si, ax in enumerate(axes):
    ax.imshow(example["image"])
    sel = (pred.scale_ids == si) & (pred.classes == top)
    for b, sc in zip(pred.boxes[sel], pred.scores[sel]):
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="tab:red", alpha=float(sc), lw=1))
    ax.add_patch(Rectangle(gt[:2], *(gt[2:] - gt[:2]), fill=False, color="yellow", lw=2, ls="--"))
    ax.set_title(f"scale {SCALES[si][0]}: {sel.sum()} boxes")
    ax.set_xlim(0, 64)
    ax.set_ylim(64, 0)
fig.suptitle(f"boxes for '{CLASSES[top]}' (truth: '{CLASSES[example['box_labels'][0]]}', yellow)")
plt.show()
print(f"{len(pred.boxes)} boxes in all: {len(SCALES)} scales x 5 classes x every location")

# %% [markdown]
# ## 5. Watching the merge (Figure 7)
#
# `greedy_merge` repeatedly merges the best-matching pair of boxes of one class, the match
# score combining centre distance and overlap (smaller is better), until the best pair scores
# worse than t. The merged box is the mean of its members; its confidence is the sum of their
# scores. Since each step takes the globally best pair, running with a smaller threshold stops
# the same sequence of merges earlier, so runs at increasing thresholds are snapshots of one run.

# %%
sel = pred.classes == top
snaps = [0.0, 0.1, 0.25, DEFAULT_MERGE_T]
fig, axes = plt.subplots(1, len(snaps), figsize=(13, 3.6))
counts = []
for t, ax in zip(snaps, axes):
    mb, mc, _ = greedy_merge(pred.boxes[sel], pred.scores[sel], None, t=t)
    counts.append(len(mb))
    assert np.isclose(mc.sum(), pred.scores[sel].sum(), rtol=1e-4)  # confidence is conserved
    ax.imshow(example["image"])
    for b, c in zip(mb, mc):
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="tab:red",
                               lw=0.5 + 3 * c / mc.max(), alpha=float(0.25 + 0.75 * c / mc.max())))
    ax.set_title(f"t = {t}: {len(mb)} boxes, best {mc.max():.1f}")
    ax.set_xlim(0, 64)
    ax.set_ylim(64, 0)
plt.show()
assert all(counts[i] >= counts[i + 1] for i in range(len(counts) - 1))

# %% [markdown]
# ### Your turn: the match score
#
# The paper names the two ingredients of the match score (the distance between the boxes'
# centres and their intersection) but no formula; the package uses
# `|c_a - c_b| / s + (1 - IoU(a, b))`, with s the pair's mean side length (w_a + h_a + w_b + h_b) / 4.
# Write it for two boxes (left, top, right, bottom) between START and END; the check compares it
# with `merge.match_score` on 20 random pairs.

# %%
def my_match_score(a, b):
    # START OF YOUR CODE
    raise NotImplementedError
    # END OF YOUR CODE


# %%
print(check_match_score(my_match_score))

# %% [markdown]
# ## 6. Accumulation versus non-maximum suppression, on the same boxes
#
# NMS keeps the single highest-scoring window of each overlapping group and throws the rest
# away; its confidence is one window's probability. The merge keeps the evidence: a box many
# windows agree on collects their scores. Here are the top-5 guesses of each (thicker = better);
# `method="paper"` is Section 4.3 exactly as written.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, method in zip(axes, ("paper", "nms")):
    loc = merge_predictions(pred, k=5, method=method)
    ax.imshow(example["image"])
    for r, (c, b, conf) in enumerate(zip(loc.classes, loc.boxes, loc.confidences)):
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color=f"C{r}", lw=3 - 0.5 * r))
        ax.text(b[0], b[1] - 1, f"{r + 1}:{CLASSES[c]} {conf:.2f}", color=f"C{r}", fontsize=7)
    ax.add_patch(Rectangle(gt[:2], *(gt[2:] - gt[:2]), fill=False, color="yellow", lw=1, ls="--"))
    best_iou = iou(loc.boxes[:1], gt[None])[0, 0]
    ax.set_title(f"{method}: best guess IoU {best_iou:.2f}")
    ax.set_xlim(0, 64)
    ax.set_ylim(64, 0)
plt.show()

# %% [markdown]
# ## 7. Localization error: scales, SCR vs PCR, merge vs NMS
#
# The ILSVRC rule: an image counts as localized when one of its 5 guesses has the right class
# and IoU >= 0.5 with the true box (we also show the stricter rule with 1 guess, where the
# ranking of the guesses matters most). We predict each validation image once per regressor at all
# four scales and keep the boxes of the first 1, 2 or 4 scales, so every row of the table sees
# the same network outputs. The baseline knows the true class and guesses a centred box of the
# average size: it shows how much of the score comes from the boxes.

# %%
gts = ground_truth(val)
raw = {name: [predict_boxes(model, reg, val[i]["image"], SCALES) for i in range(len(val))]
       for name, reg in regs.items()}


def first_scales(p, n):
    keep = p.scale_ids < n
    return BoxPredictions(*(a[keep] for a in p))


rows = []
for name in regs:
    for n in (1, 2, 4):
        errs = []
        for method in ("paper", "nms"):
            locs = [merge_predictions(first_scales(p, n), 5, method) for p in raw[name]]
            guesses = [(lc.classes, lc.boxes) for lc in locs]
            errs += [localization_error(guesses, gts, k=5), localization_error(guesses, gts, k=1)]
        rows.append((name, n, *errs))
centre = centre_box_error(val)
print(f"{'head':<5} {'scales':>6} {'paper top-5':>12} {'NMS top-5':>10} {'paper top-1':>12} {'NMS top-1':>10}")
for name, n, m5, m1, n5, n1 in rows:
    print(f"{name:<5} {n:>6} {m5:>12.1%} {n5:>10.1%} {m1:>12.1%} {n1:>10.1%}")
print(f"centre box with the true class: {centre:.1%}  ({len(val)} images)")
best = min(r[2] for r in rows)
assert best < centre - 0.2, "the regressor should beat the centre box by a wide margin"
by_scales = {(r[0], r[1]): r[2] for r in rows}
assert all(by_scales[name, 4] < by_scales[name, 1] for name in regs), "4 scales should beat 1"

# %% [markdown]
# On this toy set the numbers move by a few images (100 images: 1% each), so read them as
# tendencies. More scales help most, as in the paper (40.0% -> 31.5% -> 30.0% with 1, 2, 4
# scales): an object can be framed well only at a scale where it fits a window. The paper's merge
# and NMS are close here, where the objects (20-80% of the window) fit the windows at every
# scale. The paper found SCR better than PCR (31.3% vs 44.1%): with 1000 classes each PCR
# output sees few examples; with 6 classes and plenty of windows each, the gap here is small and
# can go either way.

# %% [markdown]
# ## 8. Where the paper's sum fails: objects larger than the window
#
# Now objects of 60-100% of the image. At scale 136 such an object is 80-136 px, and the
# 64-px windows of that scale each see only a part of it. Three things go wrong at once, and
# the cell below measures each, per scale:
#
# - **how many windows vote**: at fine stride scale 136 has 100 locations, scale 72 has 4. The
#   paper's confidence is a plain sum over windows, so the biggest scale holds most of it;
# - **what those windows see**: the fraction of windows that see at least half of the object
#   (the only windows the regressor was trained on, Section 4.2) falls towards zero;
# - **what they say**: the class with the largest summed probability at that scale, right or
#   wrong (a part of a ring can look like a bar).

# %%
large = SyntheticShapes(40, image_size=64, mode="localization", seed=7, min_scale=0.6, max_scale=1.0)
large_gts = ground_truth(large)
large_raw = [predict_boxes(model, regs["SCR"], large[i]["image"], SCALES) for i in range(len(large))]
share, right, sees_half = np.zeros(4), np.zeros(4), np.zeros(4)
for p, (lab, gb) in zip(large_raw, large_gts):
    for s in range(4):
        k = p.scale_ids == s
        sums = {c: p.scores[k & (p.classes == c)].sum() for c in np.unique(p.classes[k])}
        share[s] += sum(sums.values())
        right[s] += max(sums, key=sums.get) == lab[0]
        one = k & (p.classes == p.classes[k][0])  # each location once
        sees_half[s] += (window_overlap(p.windows[one], gb)[:, 0] >= 0.5).mean()
locations = np.bincount(large_raw[0].scale_ids) // 5
print(f"{'scale':>6} {'locations':>9} {'share of the sum':>17} {'sum picks the class':>20} {'windows seeing half':>20}")
for s, hw in enumerate(SCALES):
    print(f"{hw[0]:>6} {locations[s]:>9} {share[s] / share.sum():>17.0%} {right[s] / len(large):>20.0%} "
          f"{sees_half[s] / len(large):>20.0%}")
assert share[3] / share.sum() > 0.5  # the 100 locations of scale 136 hold most of the paper's sum
assert sees_half[3] < 0.5 * sees_half[0]  # ... and few of them see half of the object

# %% [markdown]
# So the scale that is least able to see the object casts most of the votes. Two repairs, both
# measured in `benchmarks/bench_accumulation.py`:
#
# 1. **Weight each vote by the image area its location stands for.** Scale S places its windows
#    a stride apart in its own pixels, i.e. stride x 64/S apart in this 64-px image; one location
#    stands for an image area proportional to (64/S)^2, the same factor as its window's area
#    (`merge.window_weights`; its `power` argument, 1 by default, moves between this and the
#    paper's one vote per window, 0). Weighted so, a scale counts with the image area it covers,
#    not with its number of locations. `merge.accumulate` does this, also drops the windows of a
#    (scale, class) below half of its best one, and averages a cluster's boxes weighted by
#    confidence. It is the package's default, `method="merge"`.
# 2. **Choose scales from the object size** (`scales.scales_for_objects`): scales that show the
#    expected objects at 0.4-0.9 of the window, and a warning (`scales.object_scale_warnings`)
#    for any scale at which no window can see half of an object (side > 64 / sqrt(0.5) px).

# %%
w0 = window_weights(large_raw[0].windows)
print("window weight of each scale:", [round(float(w0[large_raw[0].scale_ids == s][0]), 2) for s in range(4)],
      "x its locations:", [round(float(w0[large_raw[0].scale_ids == s][0]) * n, 1) for s, n in enumerate(locations)])
guided = scales_for_objects(model.config, (0.6 * 64, 64), (64, 64))
print("scales for objects of 38-64 px in a 64-px image:", guided)
for w in object_scale_warnings(model.config, SCALES, (0.6 * 64, 64), (64, 64)):
    print("warning:", w)
guided_raw = [predict_boxes(model, regs["SCR"], large[i]["image"], guided) for i in range(len(large))]
errors = {}
for label, raws in (("scales 72-136", large_raw), ("guided", guided_raw)):
    for method in ("merge", "paper", "nms"):
        locs = [merge_predictions(p, 5, method) for p in raws]
        errors[label, method] = localization_error([(lc.classes, lc.boxes) for lc in locs], large_gts, k=5)
print(f"{'':>14} {'merge':>7} {'paper':>7} {'NMS':>7}   (top-5 localization error, {len(large)} images)")
for label in ("scales 72-136", "guided"):
    print(f"{label:>14} " + " ".join(f"{errors[label, m]:>7.1%}" for m in ("merge", "paper", "nms")))
assert errors["scales 72-136", "merge"] < errors["scales 72-136", "paper"]
assert min(errors["guided", m] for m in ("merge", "paper", "nms")) <= errors["scales 72-136", "paper"]

# %% [markdown]
# ## 9. The whole table
#
# `python benchmarks/bench_accumulation.py --demo runs/demo` (after `overfeat-np demo --out
# runs/demo --blas-threads 1`) runs the three methods on held-out images with small, similar and
# large objects, at fixed and at guided scales, for localization (top-5 error, lower is better)
# and detection (mAP, higher is better), and counts objects left with two boxes of their class.
# The README's "Greedy merge vs NMS" section holds its table and the one on handwritten digits.
# Synthetic shapes, 100 held-out images per row (top-5 localization error / detection mAP), with
# the demo's regressors, which train on the task's images plus as many with small objects
# (`data.regressor_set`):
#
# | objects | scales | merge (default) | paper | NMS |
# |---|---|---|---|---|
# | small | 1,2,4,6 | 0.22 / **0.29** | **0.21** / 0.27 | 0.30 / 0.23 |
# | small | guided | **0.13 / 0.88** | **0.13** / 0.84 | 0.17 / 0.62 |
# | similar | 1,2,4,6 | **0.08 / 0.89** | 0.11 / 0.83 | 0.14 / 0.62 |
# | similar | guided | **0.03 / 0.84** | **0.03** / 0.79 | 0.12 / 0.63 |
# | large | 1,2,4,6 | **0.11 / 0.56** | 0.25 / 0.50 | 0.18 / 0.52 |
# | large | guided | **0.02 / 0.82** | **0.02** / 0.71 | 0.05 / 0.59 |
#
# Weighting votes by area fixes the large-object failure (0.11 where the paper's sum gives 0.25
# and NMS 0.18) and is the best detector in every row, leaving one box per object (3 of 816
# objects kept a second box of their class, against 620 with the paper's merge and 406 with NMS).
# The first row is the story of the regressor, not of the merge. Trained, as in this lesson, only
# on objects of 20-80% of the window, the regressor never predicts a box much below half of its
# window (0.55-0.62 of it at every scale, while a 10-px object is 0.18 of scale 72's window): the
# coarse scales' boxes of a tiny object are two to three times too large, and every method
# failed that row (0.52 / 0.48 / 0.37 for merge / paper / NMS, mAP 0.001 / 0.005 / 0.013).
# Twelve variants of the vote, the box, the ranking and the top-5 list could not repair it
# (README, "Where the default lost"); half the training images with small objects did: 0.34 /
# 0.21 / 0.30 and mAP 0.29 / 0.27 / 0.23. A box regressor only frames the object sizes it was
# trained on.
#
# One more repair was needed, for objects much smaller than every window at fixed scales, and
# it comes from counting windows. A scale whose window spans W image pixels has about
# ((W + s) / stride)^2 locations whose windows overlap an object of side s, and its stride in the
# image grows with W. For an object larger than the windows that count goes as 1 / W^2, exactly
# what the area weight undoes. For an object far smaller than every window the count is about
# the same at every scale: the paper's plain sum is then already balanced, and the area weight
# gives the vote to the coarsest scales, which frame a 10-px object worst. So the default merges
# once, and where its best box is smaller than `merge.DEFAULT_SMALL_OBJECT` (0.35) of the largest
# window's side (`merge.relative_size`) it returns the paper's merge instead. On 400 held-out
# images that row went from 0.220 to 0.150 (NMS 0.198, the paper 0.147), and on handwritten
# digits the default now ties or beats NMS in every row too (README). The rule needs a regressor
# that can say an object is small: this lesson's, trained on objects of 20-80% of the window
# only, rarely predicts a box below half of its window, so here it would hardly ever fire. The
# cell below shows the statistic on the large objects of section 8: far above the threshold.

# %%
sizes = np.array([relative_size(merge_predictions(p, 1, "merge", small_object=0).boxes[0], p.windows)
                  for p in large_raw])
print(f"best box / largest window, large objects: median {np.median(sizes):.2f}, "
      f"below {DEFAULT_SMALL_OBJECT} (the fallback) on {np.mean(sizes < DEFAULT_SMALL_OBJECT):.0%} of the images")
assert np.median(sizes) > 1.5 * DEFAULT_SMALL_OBJECT and np.mean(sizes < DEFAULT_SMALL_OBJECT) < 0.1
print(f"lesson ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## Summary
#
# - The regressor is a second head on the classifier's frozen features: an f x f convolution
#   and two 1x1 ones, run densely at every pooling offset, one box per location and scale.
# - Boxes are learned in the frame of each location's window; windows seeing less than half of
#   the object are not trained on. Frozen features mean each image is featurised once per scale.
# - Greedy merge fuses agreeing boxes and sums their scores, so consistent evidence across
#   locations and scales outranks an isolated confident window; NMS keeps only the best window.
# - The paper's plain sum lets the scale with the most locations decide, and that is the scale
#   where large objects overflow the windows. Weighting each vote by the image area its location
#   stands for (the default `method="merge"`) repairs it; for objects far smaller than every
#   window the plain sum is the balanced vote again, and the default falls back to it (localization,
#   `merge.DEFAULT_SMALL_OBJECT`); choosing scales from the object size
#   (`scales_for_objects`, `--object-size`) helps every method more than any merge rule does.
# - A regressor frames only the object sizes it was trained on: train it on small objects too
#   (`data.regressor_set`) or no accumulation can box them.
#
# ## Exercises
#
# 1. Define overlap as IoU instead of the box's fraction inside the window
#    (`regression_targets` with your own mask). Which objects lose all their training windows?
# 2. Vary the merge threshold t from 0.1 to 1.0 and plot the localization error. Why does a
#    very large t hurt?
# 3. Give every scale exactly one vote per class instead (divide each score by the number of
#    locations of its scale). Where does it beat the area weights, and where does it lose? (Hint:
#    objects much smaller than the window at scale 72.)
# 4. Train the regressor on one scale only and evaluate on four. What happens to large objects?
# 5. The paper proposes optimising IoU directly instead of L2 (future work). Sketch the gradient
#    of 1 - IoU with respect to the four box coordinates.
