# %% [markdown]
# # 07 Detection: a background class, negatives on the fly, mAP
#
# Section 5 of the OverFeat paper. Localization (lesson 06) assumes one object per image and
# always answers with its five best guesses. Detection must find **any number of objects, also
# none**, so the network needs a way to say "nothing here": an extra **background** class.
#
# What changes from localization:
# - the classifier gets one more output, background (here the last index);
# - it is trained **spatially**: the dense network runs over a whole training image and every
#   output location gets a target (an object class, background, or "ignore");
# - background locations vastly outnumber objects, so each image contributes only a few
#   **negatives chosen on the fly**: some random ones and the **most offending** ones (those
#   the current network mistakes for an object), instead of separate bootstrapping passes;
# - at test time every location whose object probability passes a threshold proposes its
#   regressed box, all classes, all scales; the boxes are accumulated per class (lesson 06);
#   the result is scored by **mAP**.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from overfeat_np.data import SyntheticShapes
from overfeat_np.detect import background_index, detect, detect_with_classifier, evaluate_detection
from overfeat_np.detect_train import (
    IGNORE,
    DenseTrainNet,
    DetectorTrainConfig,
    detection_targets,
    make_detector,
    select_negatives,
    train_detector,
)
from overfeat_np.grid import num_windows, output_windows
from overfeat_np.localize import train_regressor
from overfeat_np.losses import softmax, softmax_cross_entropy
from overfeat_np.metrics import average_precision
from overfeat_np.preprocess import to_input
from overfeat_np.regressor import build_regressor
from overfeat_np.scales import detection_scales
from overfeat_np.serialization import small_shapes_classifier
from overfeat_np.showcase import draw_detections

t_start = time.perf_counter()

# %% [markdown]
# ## 1. Start from a classifier
# A small OverFeat trained briefly on single-object crops (Section 3), as in lesson 03: the one the
# package ships (`serialization.small_shapes_classifier`, made by `lessons/make_weights.py`), so
# this lesson spends its time on detection.

# %%
n_cls = 6
cls_set = SyntheticShapes(1600, image_size=72, seed=0, cache=True, num_classes=n_cls)
clf = small_shapes_classifier()
names = cls_set.classes

# %% [markdown]
# ## 2. The background class
# `make_detector` copies the classifier and appends one output row, initialised to zero, for
# background. Before fine-tuning it ranks the object classes exactly as the classifier does.

# %%
det = make_detector(clf)
bg = background_index(det)
print("outputs:", det.config.num_classes, "background index:", bg)
x = to_input([cls_set[0]["image"][:64, :64]])
assert np.allclose(det.forward(x)[0][0, :bg], clf.forward(x)[0][0], atol=1e-5)

# %% [markdown]
# ## 3. Targets and negatives on one training image
# Detection images are 128x128 with 0-3 objects. At coarse stride each output location sees a
# 64x64 window. A window is a **positive** for an object when at least half the object is inside
# and the object is not tiny in it; **background** when no object is more than 20% inside; else
# **ignored**. Of the background locations only a few are trained on: the `n_hard` most
# offending plus `n_random` random ones.

# %%
det_set = SyntheticShapes(400, image_size=128, mode="detection", seed=10, cache=True, num_classes=n_cls,
                          min_scale=0.2)
cfg = DetectorTrainConfig(scales=((96, 96), (128, 128), (160, 160)), steps=300, batch_size=8, lr=0.03)
s = next(det_set[i] for i in range(len(det_set)) if len(det_set[i]["boxes"]) >= 2)
hw = (128, 128)
targets = detection_targets(det.config, hw, [s["boxes"]], [s["box_labels"]], bg, cfg)  # (1, 5, 5)
logits, _ = DenseTrainNet.of(det).forward(to_input([s["image"]]), train=False)
offending = softmax(logits)[:, :bg].max(axis=1)  # (1, 5, 5) best object probability per location
chosen = select_negatives(targets, offending, bg, n_random=2, n_hard=2, rng=np.random.default_rng(0))
assert ((chosen == bg).sum() == min(4, (targets == bg).sum()))
assert np.array_equal(chosen[(targets >= 0) & (targets != bg)], targets[(targets >= 0) & (targets != bg)])

centres = output_windows(det.config, targets.shape[1:], fine_stride=False)
cx, cy = (centres[..., 0] + centres[..., 2]) / 2, (centres[..., 1] + centres[..., 3]) / 2
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, lab, title in ((axes[0], targets[0], "targets"), (axes[1], chosen[0], "trained on")):
    draw_detections(ax, s["image"], [], gt_boxes=s["boxes"], title=title)
    for kind, colour, m in (("object", "lime", (lab >= 0) & (lab != bg)), ("background", "red", lab == bg),
                            ("ignored", "grey", lab == IGNORE)):
        ax.scatter(cx[m], cy[m], c=colour, s=40, label=kind, edgecolors="black")
axes[1].legend(fontsize=7, loc="lower right")
plt.show()

# %% [markdown]
# Window centres: green = positive, red = background (left: all of them; right: the four
# negatives kept), grey = ignored. Most of the image is never trained on in this step.
#
# ### Where the 5x5 map comes from
# Lesson 04 showed that the dense network is the classifier slid over the image. Its output
# location (i, j) sees the 64x64 window whose top-left corner is (16 j, 16 i): 16 is the product
# of the strides of every layer (`config.total_stride`, the coarse stride; fine stride divides it
# by the last pooling size). So an S-pixel side holds (S - 64) / 16 + 1 windows: 5 for 128, and
# 3 / 5 / 7 for the three training scales 96 / 128 / 160. Every target above is one of these
# windows; we compute it from the formula and check it against the package's grid and the
# network's actual output.

# %%
stride, window = det.config.total_stride, det.config.input_size
for side in (96, 128, 160):
    derived = (side - window) // stride + 1
    assert num_windows(det.config, (side, side), fine_stride=False) == (derived, derived)
    print(f"{side}x{side}: ({side} - {window}) / {stride} + 1 = {derived} locations per side")
assert targets.shape[1:] == logits.shape[2:] == (5, 5)

# %% [markdown]
# ### The loss with a background class and ignored locations, derived
# At one trained location with logits z (one per class, background included) and target t, the
# softmax cross-entropy is L = -log p_t = log(sum_c e^(z_c)) - z_t, so
#
#   dL/dz_c = e^(z_c) / sum e^(z) - [c = t] = p_c - [c = t].
#
# The image's loss is the mean over the **counted** locations (positives and chosen negatives);
# an ignored location is simply left out of the sum, so its gradient is exactly zero and the
# network is never pushed either way on windows that see only part of an object. Below, the
# formula written out in NumPy equals `losses.softmax_cross_entropy`, which training uses, and a
# finite difference confirms one entry.

# %%
rng = np.random.default_rng(1)
z = rng.normal(size=(1, bg + 1, 2, 2))  # 2x2 locations
t = np.array([[[2, bg], [IGNORE, 0]]])  # an object, background, ignored, an object
counted = t != IGNORE
p = softmax(z)
onehot = np.zeros_like(z)
onehot[0, np.where(counted, t, 0)[0], np.arange(2)[:, None], np.arange(2)] = 1
by_hand = (p - onehot) * counted[:, None] / counted.sum()
loss, dz = softmax_cross_entropy(z, t, ignore_index=IGNORE)
assert np.allclose(dz, by_hand) and np.all(dz[0, :, 1, 0] == 0)  # ignored: no gradient
eps, bumped = 1e-6, z.copy()
bumped[0, 2, 0, 0] += eps
assert abs((softmax_cross_entropy(bumped, t, ignore_index=IGNORE)[0] - loss) / eps - dz[0, 2, 0, 0]) < 1e-4
print(f"loss {loss:.3f}; gradient by hand = package's; ignored location's gradient = 0")

# %% [markdown]
# ## 4. Train spatially, then a box regressor on the detector's features
# Every step resizes a batch to a random scale, runs the network densely, assigns targets,
# picks the negatives with the *current* network, and backpropagates through all layers.

# %%
hist = train_detector(det, det_set, cfg)
losses = [r["loss"] for r in hist.steps]
print(f"detector: {hist.images_per_s:.0f} images/s, loss {np.mean(losses[:3]):.2f} -> {np.mean(losses[-3:]):.2f}")
assert np.mean(losses[-3:]) < np.mean(losses[:3])
reg = build_regressor(det)
train_regressor(det, reg, [det_set[i] for i in range(200)], cfg.scales, epochs=5, fine_stride=False)

# %% [markdown]
# ## 5. Detections
# Dense class maps at fine stride on three scales, regressed boxes where an object class has
# probability >= 0.5, accumulated per class (`merge.accumulate`, lesson 06): a detection's score
# adds up the probabilities of its windows, each weighted by its window's area in the image, so a
# scale counts by the image area it covers and not by its number of locations (the paper's plain
# sum is `method="paper"`). Dashed white: ground truth.

# %%
test_set = SyntheticShapes(60, image_size=128, mode="detection", seed=11, cache=True, num_classes=n_cls,
                           min_scale=0.2)
scales = detection_scales(det.config)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, i in zip(axes, range(4)):
    t = test_set[i]
    dets = detect(det, reg, t["image"], scales, score_threshold=0.5)
    draw_detections(ax, t["image"], dets, names, t["boxes"], f"{len(dets)} found, {len(t['boxes'])} true")
    assert all(d.cls != bg for d in dets)  # background is never reported
plt.show()

# %% [markdown]
# ## 6. Precision, recall and mAP
# Detections of all test images are ranked by score per class; a detection is a true positive
# when it overlaps an unclaimed ground-truth box of its class with IoU >= 0.5. Average precision
# is the area under the (monotone) precision/recall curve; mAP the mean over classes. The
# baseline is the classifier alone: no background class, boxes = windows of its top locations.

# %%
m, per_class, curves = evaluate_detection(det, reg, test_set, scales)
base, _, _ = evaluate_detection(None, None, test_set, scales,
                                detect_fn=lambda im: detect_with_classifier(clf, im, scales))
print(f"detector mAP {m:.3f}   classifier-only baseline mAP {base:.3f}")
assert m > base + 0.2
fig, ax = plt.subplots(figsize=(4.5, 4))
for c, (p, r, _) in curves.items():
    ax.plot(r, p, label=f"{names[c]} AP {per_class[c]:.2f}")
ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"mAP {m:.2f}")
ax.legend(fontsize=7)
plt.show()
print(f"lesson ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ### Average precision, by hand
# Take one class: 4 true objects and 6 detections, ranked by score, that turn out to be
# hit, hit, miss, hit, miss, miss (a miss: no unclaimed true box with IoU >= 0.5). After the r
# best detections, precision = hits / r and recall = hits / 4:
#
# | r | 1 | 2 | 3 | 4 | 5 | 6 |
# |---|---|---|---|---|---|---|
# | precision | 1 | 1 | 2/3 | 3/4 | 3/5 | 1/2 |
# | recall | 1/4 | 2/4 | 2/4 | 3/4 | 3/4 | 3/4 |
#
# A lower threshold can only add detections, so at each recall VOC takes the best precision
# reachable at that recall or beyond (the running maximum from the right: 1, 1, 3/4, 3/4, 3/5,
# 1/2) and sums it over the steps where recall rises: AP = 1/4 * 1 + 1/4 * 1 + 1/4 * 3/4 =
# 0.6875. The fourth object is never found, so AP stays below 3/4 however good the ranking.
# `metrics.average_precision` computes the same from boxes:

# %%
truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], np.float32)
far = np.array([100, 100, 110, 110], np.float32)
ranked = np.stack([truth[0], truth[1], far, truth[2], far, far])  # hit, hit, miss, hit, miss, miss
scores = np.arange(6, 0, -1, dtype=np.float32)
ap = average_precision((np.zeros(6), np.zeros(6), scores, ranked), [(np.zeros(4), truth)], cls=0)
print(f"AP = {ap:.4f}")
assert abs(ap - (0.25 + 0.25 + 0.25 * 0.75)) < 1e-12

# %% [markdown]
# ## Summary
# - Detection = classification + localization + "nothing here": one extra output, background.
# - Training is spatial: the dense network sees whole images; each location's target comes from
#   how its window overlaps the objects; ambiguous windows are ignored.
# - Negatives are chosen on the fly, per image: a few random and the most offending ones, so
#   no separate bootstrapping passes are needed.
# - At test time any number of boxes (also none) survive the threshold and the accumulation;
#   mAP scores the ranked list, and the background class lifts it far above the classifier
#   used alone.
#
# ## Exercises
# 1. Set `n_hard=0` (random negatives only) and then `n_random=0`. How do the loss and mAP move?
# 2. Replace the positive rule's `pos_coverage=0.5` by 0.8. Which objects stop being detected?
# 3. Evaluate with `reg=None` (windows as boxes). Why does mAP at IoU 0.5 collapse, and what
#    does `evaluate_detection(..., iou_threshold=0.1)` say about the class maps themselves?
# 4. Evaluate with `method="paper"` (Section 4.3's greedy merge) and `method="nms"`
#    (`evaluate_detection(..., method=...)`) and compare mAP and the pictures with the default.
