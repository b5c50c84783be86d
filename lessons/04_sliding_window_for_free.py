# %% [markdown]
# # 04 · The sliding window for free: full layers are convolutions
#
# A classifier trained on 64x64 crops answers one question per crop. To ask it about *every*
# 64x64 window of a bigger image, the naive way crops each window and runs the network on it,
# recomputing the same convolutions again and again where windows overlap. Section 3.3 of the
# OverFeat paper ("ConvNets and sliding window efficiency") points out that nothing needs
# recomputing: convolutions slide by themselves, and the full layers on top are convolutions
# too, once you look at them the right way. This lesson shows that on the small model, draws
# the paper's Figure 5, and measures the saving.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from overfeat_np.accounting import dense_macs, map_shapes
from overfeat_np.dense import dense_forward, fc_to_conv, infer
from overfeat_np.grid import output_windows
from overfeat_np.layers import Conv2D, Linear
from overfeat_np.models import ConvSpec, OverFeat, OverFeatConfig, he_init, overfeat_small

rng = np.random.default_rng(0)
model = he_init(overfeat_small(num_classes=6, width=0.5))
print(model.classifier)
print("pooled map entering the first full layer:", model.pooled_shape)

# %% [markdown]
# ## 1. A full layer is a convolution
#
# The first full layer sees the pooled map, C x 3 x 3 here (1024 x 6 x 6 in the fast model),
# flattened in C-order, and has a weight matrix W of shape (out, C*3*3). Row `o` of W, reshaped
# to (C, 3, 3), is a filter; the dot product with the flattened map is that filter applied at
# the one position where it fits. So the layer *is* a Conv2D with a 3x3 kernel, and the later
# full layers, whose input is 1x1, are 1x1 convolutions. `fc_to_conv` does the reshaping; the
# weights are views of the same memory, not copies.

# %%
head = fc_to_conv(model.classifier, model.pooled_shape)
print(head)
linears = [layer for layer in model.classifier.layers if isinstance(layer, Linear)]
convs = [layer for layer in head.layers if isinstance(layer, Conv2D)]
for lin, conv in zip(linears, convs):
    print(f"{lin!r:>16} W {lin.params['W'].shape} -> {conv!r}, W {conv.params['W'].shape}")
    assert np.shares_memory(lin.params["W"], conv.params["W"])

x = rng.normal(size=(4, 3, 64, 64)).astype(np.float32)
scores, _ = model.forward(x)  # (4, 6): the network as trained
dense = dense_forward(model, x)  # (4, 6, 1, 1): the convolutional form
print("largest difference:", np.abs(dense[:, :, 0, 0] - scores).max())
assert np.allclose(dense[:, :, 0, 0], scores, rtol=1e-5, atol=1e-6)

# %% [markdown]
# ## 2. A bigger image gives a map of answers
#
# Feed the convolutional form a 128x160 image and every layer simply produces a bigger map; the
# output is no longer 1x1 but a grid, one class vector per window. With coarse stride the
# windows are `total_stride` = 16 pixels apart: (128 - 64) / 16 + 1 = 5 rows and
# (160 - 64) / 16 + 1 = 7 columns. `output_windows` says which window each location saw.

# %%
big = rng.normal(size=(1, 3, 128, 160)).astype(np.float32)
maps = dense_forward(model, big, fine_stride=False)
print("class map:", maps.shape, "  predicted by shapes:", map_shapes(model.config, (128, 160), False)["final"])
boxes = output_windows(model.config, maps.shape[2:], fine_stride=False)
print("window of location (0, 0):", boxes[0, 0], " of (1, 2):", boxes[1, 2], " last:", boxes[-1, -1])
assert maps.shape == (1, 6, 5, 7) and boxes[-1, -1, 2] == 160 and boxes[-1, -1, 3] == 128

# %% [markdown]
# Are these really the answers for the windows? Crop each window and run the plain network.
# One catch: conv layers 3-5 use zero padding, so inside a crop their border units see zeros
# where the dense pass sees the neighbouring pixels. The paper accepts that difference. To see
# the equality exactly, take the same architecture *without* padding:

# %%
nopad = OverFeatConfig("small-nopad", input_size=64, num_classes=6, hidden=(64, 64),
                       convs=(ConvSpec(8, 5, 2, 0, 2), ConvSpec(16, 3, 1, 0, 2), ConvSpec(32, 3, 1, 0, 2)))
m2 = he_init(OverFeat(nopad))


def windows(model, img, stride):
    """The naive sliding window: crop every window and run the plain network on the batch."""
    s, (_, _, h, w) = model.config.input_size, img.shape
    crops = [img[:, :, i:i + s, j:j + s] for i in range(0, h - s + 1, stride) for j in range(0, w - s + 1, stride)]
    out, _ = model.forward(np.concatenate(crops))
    return out.T.reshape(1, -1, (h - s) // stride + 1, (w - s) // stride + 1)


d2 = dense_forward(m2, big, fine_stride=False)
w2 = windows(m2, big, nopad.total_stride)
print(d2.shape, "largest difference to the cropped windows:", np.abs(d2 - w2).max())
assert np.allclose(d2, w2, rtol=1e-4, atol=1e-5)
d1, w1 = dense_forward(model, big, fine_stride=False), windows(model, big, 16)
print("with zero padding (the real model) the maps differ a little:",
      f"correlation {np.corrcoef(d1.ravel(), w1.ravel())[0, 1]:.3f}")

# %% [markdown]
# ## 3. The paper's Figure 5: what is shared
#
# Each layer's map, drawn to scale, for the training crop (top) and for an image 16 pixels
# larger (bottom). The extra input pixels (orange) only add a thin band to every map, and at the
# output one extra column of answers: the second window costs only the orange part, not a whole
# new pass.

# %%
def layer_sizes(model, size):
    """(name, spatial size) after each conv/pool/classifier stage, by shape inference."""
    out, shape = [("input", size)], (3, size, size)
    for layer in model.features.layers + [model.pool]:
        shape = layer.output_shape(shape)
        if type(layer).__name__ != "ReLU":
            out.append((type(layer).__name__.replace("2D", ""), shape[1]))
    for layer in head.layers:
        shape = layer.output_shape(shape)
        if isinstance(layer, Conv2D):
            out.append(("full", shape[1]))
    return out


fig, axes = plt.subplots(2, 1, figsize=(11, 4.2))
for ax, extra in zip(axes, (0, 16)):
    small, large = layer_sizes(model, 64), layer_sizes(model, 64 + extra)
    x0 = 0
    for (name, a), (_, b) in zip(small, large):
        ax.add_patch(Rectangle((x0, 0), b, b, facecolor="tab:orange", edgecolor="k"))
        ax.add_patch(Rectangle((x0, 0), a, a, facecolor="tab:blue", edgecolor="k"))
        ax.text(x0 + b / 2, -6, f"{name}\n{b}x{b}", ha="center", va="top", fontsize=8)
        x0 += b + 8
    ax.set_xlim(-4, x0)
    ax.set_ylim(-22, 84)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"input {64 + extra}x{64 + extra}: blue = computed for the first window, orange = extra")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. How much is saved
#
# Count multiply-adds from the shapes (`dense_macs`) and time both ways on a 192x192 image
# (9 x 9 = 81 windows at stride 16).

# %%
img = rng.normal(size=(1, 3, 192, 192)).astype(np.float32)
n_windows = ((192 - 64) // 16 + 1) ** 2
macs_dense = dense_macs(model.config, (192, 192), fine_stride=False)
macs_windows = n_windows * dense_macs(model.config, (64, 64))
print(f"{n_windows} windows: {macs_windows / 1e6:.0f} M multiply-adds one by one, {macs_dense / 1e6:.0f} M dense "
      f"-> predicted speed-up {macs_windows / macs_dense:.1f}x")


def best_of(fn, n=3):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def one_by_one():
    crops = np.concatenate([img[:, :, i:i + 64, j:j + 64] for i in range(0, 129, 16) for j in range(0, 129, 16)])
    return infer(model.classifier, model.pool.forward(infer(model.features, crops))[0])


t_dense = best_of(lambda: dense_forward(model, img, fine_stride=False))
t_windows = best_of(one_by_one)
print(f"dense {t_dense * 1e3:.1f} ms, windows {t_windows * 1e3:.1f} ms -> measured speed-up {t_windows / t_dense:.1f}x")
# Only the count is asserted: a clock on a shared, busy machine (CI) can say anything.
assert macs_windows / macs_dense > 3

# %% [markdown]
# The clock usually beats the prediction on a CPU: one-by-one evaluation also pays for many
# small matrix products and for copying every crop, while the dense pass does a few big ones.
# On the full fast model and a 461x569 image the prediction is 9x at coarse and 16x at fine stride;
# `benchmarks/bench_dense.py` measures it.
#
# ## Summary
#
# - A full layer on a C x h x w input is a convolution with an h x w kernel (its weights
#   reshaped, no copy); the following full layers are 1x1 convolutions (`fc_to_conv`).
# - The convolutional form, run on a larger image, returns a map of class vectors, one per
#   window at the network's total stride (`dense_forward`, `output_windows`).
# - Without zero padding that map *equals* the per-window answers; with padding, border units
#   differ a little, as in the paper.
# - Overlapping windows share their computation, so the dense pass costs a fraction of the
#   one-by-one evaluation: predicted from multiply-adds, confirmed by the clock.
#
# ## Exercises
#
# 1. Change the image to 200x200. How many windows are there, and which pixels of the image does
#    no window see? Check with `output_windows`.
# 2. Convert only the *first* full layer by hand (reshape `W`), run it with `Conv2D` on the pooled
#    maps of a 128x128 image, and compare to `dense_forward`'s intermediate result.
# 3. Why does the predicted speed-up grow with the image size? Plot it for sizes 64 to 320.
# 4. In the padding-free net, crop a window at a position that is *not* a multiple of 16. Which
#    output does it match, if any? (Lesson 05 answers this with fine stride.)
