# %% [markdown]
# # 01 · Convolution as one matrix product (im2col + GEMM)
#
# Every layer of OverFeat's feature extractor (Table 1 of the paper) is a convolution: a small
# filter slides over the image and, at each position, takes a dot product with the patch below
# it. Written as loops this is easy to read and painfully slow in Python. The trick used by
# almost every CPU and GPU implementation is to **copy every patch into one column of a big
# matrix** (`im2col`, "image to columns"), after which the whole layer is a single matrix product
# (a GEMM), the one operation BLAS libraries make fast.
#
# This lesson builds the loop version, then the im2col version with `overfeat_np.im2col`, looks
# at the column matrix, checks the two agree, and times them.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from overfeat_np.exercises import check_im2col
from overfeat_np.im2col import col2im, conv_outsize, im2col
from overfeat_np.layers import Conv2D

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Convolution as loops
#
# Shapes are NCHW: `x` is (N, C, H, W), the weights `W` are (F, C, kh, kw) for F filters, and
# the output is (N, F, OH, OW). Like every deep-learning "convolution" this is really a
# *cross-correlation*: the filter is not flipped. With zero padding `p` and stride `s`, an axis
# of length H gives `OH = (H + 2p - kh) // s + 1` positions (floor: a window that would stick
# out is dropped).


# %%
def conv_loops(x, W, b, stride=1, pad=0):
    """Reference convolution: one dot product per (sample, filter, output row, output column)."""
    n, _, h, w = x.shape
    f, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.empty((n, f, oh, ow), dtype=x.dtype)
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for q in range(ow):
                    patch = xp[i, :, r * stride:r * stride + kh, q * stride:q * stride + kw]
                    out[i, k, r, q] = np.sum(patch * W[k]) + b[k]
    return out


x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
W = (rng.standard_normal((4, 3, 3, 3)) * 0.1).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
y_loops = conv_loops(x, W, b, stride=1, pad=1)
print("output shape:", y_loops.shape)
assert y_loops.shape == (2, 4, conv_outsize(16, 3, 1, 1), conv_outsize(16, 3, 1, 1))

# %% [markdown]
# ## 2. What a column is
#
# `im2col(x, kh, kw, stride, pad)` returns a matrix with one **column per output position**
# `(oh, ow, n)` and one **row per filter tap** `(c, i, j)`, so it is (C·kh·kw, OH·OW·N). A column
# is the patch under the filter at that position, flattened in the same order as a filter
# `W[k]` is flattened. Let us look at a tiny one-channel 5x5 image with a 3x3 filter.

# %%
tiny = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
cols, (oh, ow) = im2col(tiny, 3, 3)
print("column matrix:", cols.shape, "  output grid:", (oh, ow))
pos = (1, 2)  # output row 1, column 2
column = cols[:, pos[0] * ow + pos[1]]
assert np.array_equal(column.reshape(3, 3), tiny[0, 0, 1:4, 2:5])  # the patch at that position

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 0.35, 2.2]})
axes[0].imshow(tiny[0, 0], cmap="viridis")
axes[0].add_patch(plt.Rectangle((pos[1] - 0.5, pos[0] - 0.5), 3, 3, fill=False, ec="red", lw=3))
axes[0].set_title("5x5 image, the 3x3 window\nof output position (1, 2)")
axes[1].imshow(column[:, None], cmap="viridis", vmin=0, vmax=24)
axes[1].set_title("that column")
axes[1].set_xticks([])
axes[2].imshow(cols, cmap="viridis", aspect="auto")
axes[2].axvline(pos[0] * ow + pos[1], color="red", lw=2)
axes[2].set_title("the column matrix (9 taps x 9 positions)")
axes[2].set_xlabel("output position (r*OW + q)*N + n, here N = 1")
axes[2].set_ylabel("tap (c, i, j)")
for ax, grid in ((axes[0], tiny[0, 0]), (axes[2], cols)):
    for (r, q), v in np.ndenumerate(grid):
        ax.text(q, r, f"{v:.0f}", ha="center", va="center", color="w", fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Your turn: write im2col
#
# Before reading on, write `im2col` yourself between the START and END lines: x (N, C, H, W) ->
# the column matrix (C·kh·kw, OH·OW·N) with the rows and columns in the order above. Zero-pad x
# first (`np.pad`), and loop over the kh·kw filter taps, not over pixels: for tap (i, j) the
# numbers you need are one strided slice of the padded input. The cell after it checks your
# function against the package's on four geometries and tells you what is wrong.

# %%
def my_im2col(x, kh, kw, stride=1, pad=0):
    # START OF YOUR CODE
    raise NotImplementedError
    # END OF YOUR CODE


# %%
print(check_im2col(my_im2col))

# %% [markdown]
# Each row of the matrix is the image shifted by one filter tap (i, j); that is exactly how
# `im2col` fills it: one strided-slice copy per tap (kh·kw copies in all), never a loop over
# pixels. The price is memory: every input pixel is copied up to kh·kw times.
#
# ## 3. The whole layer as one GEMM
#
# With the filters flattened to rows, `W.reshape(F, C*kh*kw) @ cols` computes every dot product
# of section 1 at once. The result is (F, OH·OW·N); a reshape and a transpose give NCHW.

# %%
cols, (oh, ow) = im2col(x, 3, 3, stride=1, pad=1)
y_gemm = (W.reshape(4, -1) @ cols + b[:, None]).reshape(4, oh, ow, 2).transpose(3, 0, 1, 2)
np.testing.assert_allclose(y_gemm, y_loops, rtol=1e-5, atol=1e-5)

layer = Conv2D(3, 4, 3, stride=1, padding=1)
layer.params.update(W=W, b=b)
y_layer, _ = layer.forward(x)
np.testing.assert_allclose(y_layer, y_loops, rtol=1e-5, atol=1e-5)
print("loops, im2col+GEMM and Conv2D agree; max difference", float(np.abs(y_layer - y_loops).max()))

# %% [markdown]
# Why is the batch the *innermost* index of a column, (oh, ow, n), and not the outermost?
# Because of how `im2col` copies. For one tap (i, j) and one channel, the numbers it copies are
# the input shifted by (i, j): for each output row, OW neighbouring pixels. If images lie one
# after another in memory (N, C, H, W), that is a run of only OW numbers before the copy jumps
# to the next row, and for small maps the cost of each jump dominates. With the batch innermost,
# (C, H, W, N) in memory as in Krizhevsky's cuda-convnet, the same pixels of all N images sit
# side by side, so each row of the copy is one run of OW·N numbers. The package keeps its
# activations in that order: `Conv2D.forward` returns an NCHW-*shaped* view of (C, H, W, N)
# memory, and the next layer reads it without any copy.

# %%
y_view, _ = Conv2D(3, 4, 3, padding=1, seed=0).forward(x)
print("shape", y_view.shape, "  strides in bytes (N, C, H, W):", y_view.strides)
assert y_view.transpose(1, 2, 3, 0).flags.c_contiguous  # (C, H, W, N) memory, batch innermost

# %% [markdown]
# Stride and padding only change which patches are copied. OverFeat's first layer uses an
# 11x11 filter with stride 4 and no padding; its layers 3-5 use 3x3 filters, stride 1, padding 1.

# %%
for k, s, p in [(11, 4, 0), (3, 1, 1), (5, 2, 2)]:
    x2 = rng.standard_normal((1, 3, 27, 23)).astype(np.float32)
    W2 = (rng.standard_normal((2, 3, k, k)) * 0.1).astype(np.float32)
    conv = Conv2D(3, 2, k, stride=s, padding=p)
    conv.params.update(W=W2, b=np.zeros(2, np.float32))
    y2 = conv.forward(x2)[0]
    np.testing.assert_allclose(y2, conv_loops(x2, W2, np.zeros(2, np.float32), s, p), rtol=1e-4, atol=1e-5)
    print(f"kernel {k}, stride {s}, pad {p}: 27x23 -> {y2.shape[2]}x{y2.shape[3]}")

# %% [markdown]
# ## 4. How much faster?
#
# A small layer: 4 images of 32 channels at 16x16, 32 filters of 3x3 (32768 dot products).

# %%
xb = rng.standard_normal((4, 32, 16, 16)).astype(np.float32)
conv = Conv2D(32, 32, 3, padding=1, seed=0)


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


t_loops = best_of(lambda: conv_loops(xb, conv.params["W"], conv.params["b"], 1, 1), repeat=1)
t_gemm = best_of(lambda: conv.forward(xb))
print(f"loops: {t_loops * 1e3:.0f} ms   im2col + GEMM: {t_gemm * 1e3:.1f} ms   speed-up x{t_loops / t_gemm:.0f}")
# Only counts are asserted: a clock on a shared, busy machine (CI) can say anything. The loops make
# one small NumPy call per output value; im2col makes one slice copy per kernel offset, then one GEMM.
loop_calls = xb.shape[0] * 32 * 16 * 16  # (N, F, OH, OW) dot products
im2col_calls = 3 * 3 + 1
assert loop_calls / im2col_calls > 3000

fig, ax = plt.subplots(figsize=(5, 2.2))
ax.barh(["loops", "im2col + GEMM"], [t_loops * 1e3, t_gemm * 1e3], color=["gray", "tab:blue"])
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The loops do the same arithmetic; what they lose is the interpreter overhead per dot product
# and the cache-friendly blocking that BLAS applies to one big product. In the package the GEMM
# dominates: `benchmarks/bench_layers.py` measures the full layers of Table 1 against bare
# GEMMs of the same shapes.
#
# ## 5. Going back: col2im
#
# The backward pass (lesson 02) needs the opposite map: spread a gradient for every column back
# onto the pixels it was copied from, **adding** where windows overlap. `col2im` is exactly the
# transpose (adjoint) of `im2col`: for any image x and any column matrix c,
# <im2col(x), c> = <x, col2im(c)>.

# %%
c = rng.standard_normal(cols.shape)
lhs = np.vdot(cols.astype(np.float64), c)
rhs = np.vdot(x.astype(np.float64), col2im(c, x.shape, 3, 3, 1, 1))
print(f"<im2col(x), c> = {lhs:.6f}   <x, col2im(c)> = {rhs:.6f}")
assert np.isclose(lhs, rhs, rtol=1e-6)

# %% [markdown]
# ## Summary
#
# - A convolution layer is F·N·OH·OW dot products between filters and patches.
# - `im2col` copies every patch into a column, (C·kh·kw, OH·OW·N), with one strided-slice copy
#   per filter tap; the layer is then a single GEMM `W.reshape(F, -1) @ cols`.
# - With the batch innermost, (C, H, W, N) in memory, each of those copies moves long contiguous
#   runs, and the GEMM's output is already in the order the next layer reads.
# - Stride and zero padding only change which patches are copied; output size is
#   `(H + 2p - k) // s + 1`.
# - The loop version and the GEMM version agree to float32 rounding; the GEMM is typically two
#   orders of magnitude faster in Python.
# - `col2im` is the adjoint of `im2col`, which is what the backward pass needs.
#
# ## Exercises
#
# 1. How many times larger than the input is the column matrix of OverFeat's layer 1
#    (3x231x231 input, 11x11 filters, stride 4)? And of layer 3 (3x3, stride 1, pad 1)?
# 2. Change `conv_loops` to flip the filter (true convolution). Which assert fails, and how would
#    you change `W` to make the two agree again?
# 3. Time `im2col` alone against the GEMM for the layer in section 4. Which one dominates, and
#    how does the answer change with 3 channels instead of 32, or with a batch of 64?
# 4. Build the column matrix with the rows being positions and the columns taps (its transpose).
#    Is the product still one GEMM? Which layout keeps the output closest to NCHW?
# 5. Time `im2col` on a batch of 16 images of 96x28x28 (a 5x5 filter) given once as a plain NCHW
#    array and once as `x.transpose(1, 2, 3, 0).copy().transpose(3, 0, 1, 2)`. Where does the
#    difference come from?
