# %% [markdown]
# # 02 · Backpropagation by hand
#
# `overfeat_np` has no automatic differentiation: every layer has a hand-written `backward`.
# This lesson derives each one (linear, ReLU, max pooling, convolution, softmax cross-entropy),
# shows that the package's `backward` computes exactly the formula, and checks it against
# finite differences with `overfeat_np.gradcheck`.
#
# **The contract.** A layer maps x to y. Somewhere downstream a scalar loss L is computed, and
# backprop hands the layer `dy = ∂L/∂y` (same shape as y). The layer must return
# `dx = ∂L/∂x` and a gradient for each parameter. The chain rule says, element by element,
# `∂L/∂x_i = Σ_j dy_j · ∂y_j/∂x_i`: every input collects the gradient of every output it
# influenced, weighted by how much it influenced it.
#
# **The check.** `check_layer_gradients(layer, x)` picks a random `g`, defines the scalar
# `f(x) = Σ layer(x) · g` (so `dy = g`), and compares `backward` with centered differences
# `(f(x + ε e_i) − f(x − ε e_i)) / 2ε` in float64, for the input and every parameter. For big
# layers `mode="directional"` compares along one random direction instead.

# %%
import matplotlib.pyplot as plt
import numpy as np

from overfeat_np.exercises import check_maxpool_backward
from overfeat_np.gradcheck import check_layer_gradients, numerical_gradient
from overfeat_np.im2col import col2im, im2col
from overfeat_np.layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential
from overfeat_np.losses import softmax_cross_entropy

rng = np.random.default_rng(0)
errors = {}  # layer -> worst relative error of its gradients, plotted at the end

# %% [markdown]
# ## 1. Linear: y = x Wᵀ + b
#
# x is (N, in), W is (out, in), y is (N, out): `y[n, o] = Σ_i x[n, i] W[o, i] + b[o]`.
# Differentiating one term at a time:
#
# - `∂y[n,o]/∂x[n,i] = W[o,i]`, so `dx[n,i] = Σ_o dy[n,o] W[o,i]`, i.e. **dx = dy W**;
# - `∂y[n,o]/∂W[o,i] = x[n,i]`, summed over the batch: **dW = dyᵀ x**;
# - `∂y[n,o]/∂b[o] = 1`: **db = Σ_n dy[n, :]**.
#
# Note the shapes fall out right: every gradient has the shape of what it is the gradient of.

# %%
lin = Linear(5, 3, seed=0)
x = rng.standard_normal((4, 5)).astype(np.float32)
y, cache = lin.forward(x)
dy = rng.standard_normal(y.shape).astype(np.float32)
dx, grads = lin.backward(dy, cache)
np.testing.assert_allclose(dx, dy @ lin.params["W"], rtol=1e-6)
np.testing.assert_allclose(grads["W"], dy.T @ x, rtol=1e-6)
np.testing.assert_allclose(grads["b"], dy.sum(axis=0), rtol=1e-6)
errors["Linear"] = check_layer_gradients(lin, x)
print("Linear: backward = formulas; relative errors vs finite differences", errors["Linear"])

# %% [markdown]
# ## 2. ReLU: y = max(x, 0)
#
# Each output depends on its own input only, with slope 1 where x > 0 and 0 where x < 0, so
# **dx = dy · [x > 0]**. At exactly x = 0 the function has a kink; we use 0 there (any value in
# [0, 1] is a valid subgradient). Finite differences across the kink are meaningless, so the
# check uses inputs away from 0.

# %%
x = rng.choice([-1.0, 1.0], (3, 6)) * rng.uniform(0.1, 1.0, (3, 6))
y, cache = ReLU().forward(x)
dy = rng.standard_normal(y.shape)
np.testing.assert_array_equal(ReLU().backward(dy, cache)[0], dy * (x > 0))
errors["ReLU"] = check_layer_gradients(ReLU(), x)
print("ReLU ok", errors["ReLU"])

# %% [markdown]
# ## 3. Max pooling
#
# Each output is the maximum of its window. Moving any non-maximal element a little does not
# change the output; moving the maximum moves the output by the same amount. So the whole
# gradient of a window **goes to the element that was the maximum**, and the rest get zero.
#
# Ties (two equal maxima) are a kink like ReLU's 0: the package gives the gradient to exactly
# one element, the first maximum scanning the window column by column, so that no gradient is
# ever counted twice. Finite differences need tie-free inputs, e.g. a permutation of distinct
# values.

# %%
x = rng.permutation(16).reshape(1, 1, 4, 4).astype(np.float64)
pool = MaxPool2D(2)
y, cache = pool.forward(x)
dx = pool.backward(np.ones_like(y) * [[[[1, 2], [3, 4]]]], cache)[0]
assert np.count_nonzero(dx) == y.size  # one element per window receives the gradient
errors["MaxPool2D"] = check_layer_gradients(pool, x)

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, arr, title in zip(axes, [x[0, 0], y[0, 0], dx[0, 0]], ["input x", "max-pooled y", "dx for dy = [[1,2],[3,4]]"]):
    ax.imshow(arr, cmap="viridis")
    for (r, q), v in np.ndenumerate(arr):
        ax.text(q, r, f"{v:.0f}", ha="center", va="center", color="w")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %%
ties = np.ones((1, 1, 2, 2))
y, cache = pool.forward(ties)
print("gradient on a window of four equal values:\n", pool.backward(np.ones_like(y), cache)[0][0, 0])

# %% [markdown]
# ### Your turn: max pooling backward
#
# Write the backward pass of non-overlapping k x k max pooling between START and END: given the
# input x (N, C, H, W) and the gradient dout of the pooled output (N, C, H//k, W//k), return dx,
# shaped like x, with each window's gradient on its maximum and zeros elsewhere (rows and
# columns beyond the last full window get zero too). Hint: reshape x into windows of k*k values
# and use `argmax`. The check compares with the package on tie-free inputs.

# %%
def my_maxpool_backward(dout, x, k):
    # START OF YOUR CODE
    raise NotImplementedError
    # END OF YOUR CODE


# %%
print(check_maxpool_backward(my_maxpool_backward))

# %% [markdown]
# ## 4. Convolution, through im2col
#
# Lesson 01 wrote the forward pass as `cols = im2col(x)` then `out = W₂ · cols` with
# `W₂ = W.reshape(F, C·kh·kw)`. That is a linear layer applied to columns, so section 1 gives
# the backward at once (with `d2` the output gradient laid out as (F, OH·OW·N)):
#
# - **dW₂ = d2 · colsᵀ**, **db = row sums of d2**;
# - **dcols = W₂ᵀ · d2**, the gradient of every copied patch.
#
# Each input pixel was copied into several columns; by the chain rule it collects the sum of
# the gradients of all its copies. That "spread back and add" is `col2im`, the adjoint of
# `im2col`: **dx = col2im(dcols)**. Three GEMM-shaped products and one fold, no loop over
# pixels.

# %%
conv = Conv2D(3, 4, 3, stride=2, padding=1, seed=0)
conv.params["W"] *= 30  # O(1) weights, so the check is not passing on tiny numbers
x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
y, cache = conv.forward(x)
dy = rng.standard_normal(y.shape).astype(np.float32)
dx, grads = conv.backward(dy, cache)

cols, _ = im2col(x, 3, 3, stride=2, pad=1)
d2 = dy.transpose(1, 2, 3, 0).reshape(4, -1)  # (F, OH*OW*N), the column order of im2col
W2 = conv.params["W"].reshape(4, -1)
np.testing.assert_allclose(grads["W"], (d2 @ cols.T).reshape(conv.params["W"].shape), rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(grads["b"], d2.sum(axis=1), rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(dx, col2im(W2.T @ d2, x.shape, 3, 3, stride=2, pad=1), rtol=1e-5, atol=1e-5)
errors["Conv2D"] = check_layer_gradients(conv, x)
print("Conv2D ok", errors["Conv2D"])

# %% [markdown]
# Full finite differences cost two forward passes per element. For a layer of realistic size,
# the directional check compares `⟨backward, v⟩` with `(f(x + εv) − f(x − εv)) / 2ε` for one
# random direction v per tensor: two forward passes in all.

# %%
big = Conv2D(32, 64, 3, padding=1, seed=1)
print("directional check, 32->64 channels:",
      check_layer_gradients(big, rng.standard_normal((4, 32, 12, 12)), mode="directional"))

# %% [markdown]
# ## 5. Softmax cross-entropy
#
# With logits z (one row per sample) and the true class y, `p = softmax(z)` and the loss is
# `L = −log p_y = log Σ_k e^{z_k} − z_y`. Differentiating:
# `∂/∂z_k log Σ e^{z} = e^{z_k} / Σ e^{z} = p_k` and `∂z_y/∂z_k = [k = y]`, so
#
# **∂L/∂z = p − onehot(y)**, divided by N for the batch mean.
#
# Subtracting the row maximum before `exp` changes nothing mathematically (it cancels in p)
# and keeps `exp` from overflowing for large logits.

# %%
z = rng.standard_normal((5, 4)) * 3
labels = rng.integers(0, 4, 5)
loss, dz = softmax_cross_entropy(z, labels)
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
np.testing.assert_allclose(dz, (p - np.eye(4)[labels]) / 5, rtol=1e-10)
num = numerical_gradient(lambda: softmax_cross_entropy(z, labels)[0], z)
errors["softmax CE"] = {"logits": float(np.max(np.abs(num - dz)) / np.max(np.abs(dz)))}
assert errors["softmax CE"]["logits"] < 1e-6
huge_loss, _ = softmax_cross_entropy(np.array([[1e4, 0.0]], np.float32), np.array([1]))
print(f"loss {loss:.4f}; logits 1e4 apart give a finite loss of {huge_loss:.0f}")
assert np.isfinite(huge_loss)

# %% [markdown]
# ## 6. Chaining them
#
# A `Sequential` runs the backward passes in reverse order, feeding each layer's dx to the
# layer before as its dy. If every piece is right, the composition is right, and the check
# agrees.

# %%
net = Sequential(Conv2D(2, 4, 3, padding=1, seed=0), ReLU(), MaxPool2D(2), Flatten(), Linear(16, 3, seed=1))
for layer in net.layers:
    if "W" in layer.params:
        layer.params["W"] *= 30
xs = rng.standard_normal((2, 2, 4, 4))
errors["Sequential"] = check_layer_gradients(net, xs)
print("Sequential ok:", sorted(errors["Sequential"]))

fig, ax = plt.subplots(figsize=(7, 2.8))
names = list(errors)
ax.bar(names, [max(errors[n].values()) for n in names], color="tab:green")
ax.set_yscale("log")
ax.set_ylabel("worst relative error")
ax.set_title("hand-written backward vs finite differences (float64)")
plt.tight_layout()
plt.show()
assert all(max(e.values()) < 1e-5 for e in errors.values())

# %% [markdown]
# ## Summary
#
# - Backward of a layer = chain rule: each input sums the output gradients it influenced,
#   weighted by the local derivative.
# - Linear: dx = dy W, dW = dyᵀ x, db = Σ dy. ReLU: dy where x > 0. Max pooling: the window's
#   gradient goes to its maximum (to the first one on ties).
# - Convolution is a linear layer on im2col columns: two GEMMs for dW and dcols, then `col2im`
#   adds the gradients of all copies of a pixel.
# - Softmax cross-entropy: p − onehot(y), over N; computed with max-shifted logits.
# - `check_layer_gradients` compares with centered differences in float64 (or along a random
#   direction for big layers) and raises, never just prints.
#
# ## Exercises
#
# 1. Break `Linear.backward` on purpose (e.g. forget the transpose in dW for a square W) and
#    watch `check_layer_gradients` fail. Which error message do you get?
# 2. Make a max-pooling input with ties and run the full gradient check on it. Why does it fail,
#    and why is that not a bug in the layer?
# 3. Derive the backward of the L2 loss `0.5 Σ (pred − target)²` and compare with
#    `overfeat_np.losses.l2_loss`.
# 4. Why does the check use float64 and a centered (not one-sided) difference? Try `eps=1e-3`
#    and `eps=1e-10` and explain both failures.
