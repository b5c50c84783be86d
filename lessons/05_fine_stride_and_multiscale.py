# %% [markdown]
# # 05 · Fine stride by offset pooling, and multi-scale voting
#
# Lesson 04 ran the classifier densely, one answer per `total_stride` pixels (36 in the accurate
# model). That is coarse: an object can sit between two windows. Section 3.3 of the OverFeat
# paper refines it without recomputing the features: the *last* max pooling is applied at every
# offset, the classifier is run on each pooled copy, and the answers are interleaved, for a
# stride of 36 / 3 = 12 pixels. Then the image is classified at several scales and mirrored,
# and the answers vote. This lesson does it in 1-D, in 2-D, reproduces Table 5, and votes on a
# synthetic image.

# %%
import matplotlib.pyplot as plt
import numpy as np

from overfeat_np.accounting import map_shapes
from overfeat_np.data.synthetic import SyntheticShapes
from overfeat_np.dense import offset_pool
from overfeat_np.models import accurate_config, small_config
from overfeat_np.multiscale import classify_multiscale, top_k
from overfeat_np.scales import SCALES_ACCURATE, scales_for, select_scales
from overfeat_np.serialization import small_shapes_classifier
from overfeat_np.viz_dense import save_class_maps

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Offset pooling in 1-D (the paper's Figure 3)
#
# Take one row of the unpooled layer-6 map at Table 5's first scale: 17 values. Pooling 3 at a
# time from position 0 gives 5 values; starting at 1 or 2 gives 5 others. The classifier's first
# layer reads 5 pooled values, so each offset yields one answer, and the three answers sit 1
# unpooled unit = 12 input pixels apart. `offset_pool` is the pooling started at (dx, dy).

# %%
row = rng.normal(size=17).astype(np.float32)
fig, ax = plt.subplots(figsize=(10, 2.6))
ax.bar(np.arange(17), row, color="lightgray", edgecolor="k")
colors = ["tab:blue", "tab:orange", "tab:green"]
for d in range(3):
    # offset_pool is 2-D: stack the row 3 times so the vertical pooling leaves it unchanged.
    pooled = offset_pool(np.tile(row, (3, 1)).reshape(1, 1, 3, 17), 3, d, 0)[0, 0, 0]  # (5,)
    starts = d + 3 * np.arange(len(pooled))
    assert np.allclose(pooled, [row[s:s + 3].max() for s in starts])
    for s, v in zip(starts, pooled):
        ax.plot([s - 0.4, s + 2.4], [v + 0.1 + 0.25 * d] * 2, color=colors[d], lw=3)
    ax.plot([], [], color=colors[d], lw=3, label=f"offset {d}: {len(pooled)} pooled -> 1 answer")
ax.set_xticks(range(17))
ax.set_xlabel("unpooled position (1 unit = 12 input pixels)")
ax.legend(loc="lower right", fontsize=8)
ax.set_title("Offset max pooling of one 17-long row: three pooled copies")
plt.show()

# %% [markdown]
# ## 2. In 2-D: 3 x 3 pooled copies, answers interleaved
#
# In 2-D there are 3 x 3 offsets (dx, dy). Each pooled copy goes through the classifier and gives
# its own map; offset (dx, dy) owns the output positions (row, col) with row % 3 == dy and
# col % 3 == dx, so the nine maps interleave into one map three times denser per axis. At
# Table 5's sixth scale (unpooled 35x44) every copy is 11x14, gives 7x10 answers, and the
# interleaved map is 21x30.

# %%
shapes = map_shapes(accurate_config(), (461, 569))
grid = np.zeros(shapes["final"], dtype=int)
for (dx, dy), (h, w) in shapes["pre_reshape"].items():
    grid[dy::3, dx::3] = 3 * dy + dx
    assert grid[dy::3, dx::3].shape == (h, w)
fig, ax = plt.subplots(figsize=(7, 5))
ax.imshow(grid, cmap="tab10", vmin=0, vmax=9)
ax.set_title("which offset (dx, dy) computed each of the 21x30 outputs (colour = 3*dy + dx)")
ax.set_xlabel("column (12 px apart)")
ax.set_ylabel("row")
plt.show()

# %% [markdown]
# ## 3. Table 5, by shape inference
#
# `map_shapes` follows every layer's arithmetic without computing anything. For the accurate
# model at the six scales it gives the paper's Table 5, cell for cell.

# %%
TABLE5 = [((17, 17), (5, 5), (1, 1), (3, 3)), ((20, 23), (6, 7), (2, 3), (6, 9)),
          ((23, 29), (7, 9), (3, 5), (9, 15)), ((29, 35), (9, 11), (5, 7), (15, 21)),
          ((32, 38), (10, 12), (6, 8), (18, 24)), ((35, 44), (11, 14), (7, 10), (21, 30))]
print(f"{'scale':>5} {'input':>9} {'unpooled':>9} {'pooled':>16} {'pre-reshape':>18} {'final':>10}")
for i, (hw, row) in enumerate(zip(SCALES_ACCURATE, TABLE5), 1):
    s = map_shapes(accurate_config(), hw)
    pooled, pre = s["pooled"][(0, 0)], s["pre_reshape"][(0, 0)]
    assert (s["unpooled"], pooled, pre, s["final"]) == row
    assert set(s["pooled"].values()) == {pooled} and set(s["pre_reshape"].values()) == {pre}
    print(f"{i:>5} {hw[0]:>4}x{hw[1]:<4} {s['unpooled'][0]:>5}x{s['unpooled'][1]:<3} "
          f"({pooled[0]}x{pooled[1]}) x (3x3) ({pre[0]}x{pre[1]}) x (3x3) x C {s['final'][0]:>4}x{s['final'][1]} x C")

# %% [markdown]
# The scale sizes are not arbitrary: each is 221 + (3n - 1) x 12 for n coarse positions, which
# makes every offset produce the same map. `scales_for` applies that rule to any model; for the
# small model (input 64, fine stride 8):

# %%
small_scales = scales_for(small_config())
print(small_scales)
assert scales_for(accurate_config()) == SCALES_ACCURATE

# %% [markdown]
# ## 4. Multi-scale voting on a synthetic image
#
# The final classifier (Section 3.3): at every scale and for the mirrored image too, take each
# class's *maximum* over the map, average these vectors, read off the top classes. The model is
# a small OverFeat trained on the six synthetic shapes (shipped with the package,
# `serialization.small_shapes_classifier`, made by `lessons/make_weights.py` in about a minute),
# so the maps show where it sees each shape. A synthetic image from `SyntheticShapes`, 120x150,
# with one object the model never saw:

# %%
ds = SyntheticShapes(4, image_size=(120, 150), mode="localization", seed=1)
sample = ds[0]
model = small_shapes_classifier()
scales = select_scales(small_scales, "1,2,4,6")  # the paper's "4 scales (1,2,4,6)"
scores, per_scale = classify_multiscale(model, sample["image"], scales=scales, flip=True)
print("true class:", ds.classes[sample["label"]])
for m in per_scale:
    print(f"  scale {m.size[0]}x{m.size[1]} flip={m.flipped!s:5} map {m.probs.shape[1]}x{m.probs.shape[2]}, "
          f"best class here: {ds.classes[int(m.probs.max(axis=(1, 2)).argmax())]}")
print("top-3 after voting:", [(ds.classes[c], round(float(scores[c]), 3)) for c in top_k(scores, 3)])
maxima = np.stack([m.probs.max(axis=(1, 2)) for m in per_scale])
assert np.allclose(scores, maxima.mean(axis=0)) and len(per_scale) == 2 * len(scales)
# over several fresh images, voting finds the object's class far above chance (1/6)
hits = [top_k(classify_multiscale(model, s["image"], scales=scales)[0], 1)[0] == s["label"]
        for s in SyntheticShapes(12, image_size=(120, 150), mode="localization", seed=7)]
print(f"top-1 over 12 fresh images: {np.mean(hits):.2f}")
assert np.mean(hits) >= 0.5

# %%
plt.imshow(sample["image"])
plt.title("the synthetic image")
plt.axis("off")
plt.show()
save_class_maps(per_scale, "class_maps.png", class_names=ds.classes)
plt.imshow(plt.imread("class_maps.png"))
plt.axis("off")
plt.show()

# %% [markdown]
# ## Summary
#
# - Fine stride: pool the last conv maps at every offset (`offset_pool`), run the classifier on
#   each copy, interleave; the stride drops from 36 to 12 pixels (32 to 16 in the fast model) at
#   the cost of running only the classifier k*k times, never the features.
# - Every offset's map lands on its own residue class of output positions, so the interleaved
#   map is exactly the classifier applied to every window at the fine stride.
# - Table 5 follows from shape arithmetic alone (`map_shapes`), and its input sizes obey
#   221 + (3n - 1) x 12, the rule `scales_for` reuses for other models.
# - Multi-scale classification: spatial max per class per scale and flip, averaged, top-k.
#
# ## Exercises
#
# 1. Pick an input size that is *not* of the form 221 + (3n - 1) x 12, e.g. 250x250. How do the
#    offsets' pooled maps differ, and how many outputs does the fine map have?
# 2. Replace the spatial max by a spatial mean in the voting. When would that be better?
# 3. Train the small model for a few epochs and rerun section 4: do more scales help?
# 4. What is the input stride of the fine map for the fast model, and why is it 16?
