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
#   regressed box, all classes, all scales; greedy merge per class; scored by **mAP**.

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
from overfeat_np.grid import output_windows
from overfeat_np.localize import train_regressor
from overfeat_np.losses import softmax
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
# ## Summary
# - Detection = classification + localization + "nothing here": one extra output, background.
# - Training is spatial: the dense network sees whole images; each location's target comes from
#   how its window overlaps the objects; ambiguous windows are ignored.
# - Negatives are chosen on the fly, per image: a few random and the most offending ones, so
#   no separate bootstrapping passes are needed.
# - At test time any number of boxes (also none) survive the threshold and the greedy merge;
#   mAP scores the ranked list, and the background class lifts it far above the classifier
#   used alone.
#
# ## Exercises
# 1. Set `n_hard=0` (random negatives only) and then `n_random=0`. How do the loss and mAP move?
# 2. Replace the positive rule's `pos_coverage=0.5` by 0.8. Which objects stop being detected?
# 3. Evaluate with `reg=None` (windows as boxes). Why does mAP at IoU 0.5 collapse, and what
#    does `evaluate_detection(..., iou_threshold=0.1)` say about the class maps themselves?
# 4. Use `merge.batched_nms` instead of greedy merge on the same candidates and compare mAP.
