"""Layers: small classes that hold parameters in plain dicts around the pure functions.

Interface of every layer:
    y, cache = layer.forward(x, train=False)
    dx, grads = layer.backward(dy, cache)      # grads has the keys of layer.params
No activation state lives on the layer (the cache carries it), so a layer is re-entrant, and
backward never writes into `dy`. Parameters are initialised as in the paper (Section 3: normal,
mean 0, std 1e-2; biases 0) from a seeded generator on the host, so NumPy and CuPy start equal.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import get_array_module, get_backend, rng_normal, to_device
from .im2col import conv_outsize

INIT_STD = 1e-2  # Section 3: weights ~ N(0, 1e-2)


def _as_rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _init_params(w_shape, seed, backend, dtype, init):
    """{"W", "b"} for a layer: "normal" is the paper's N(0, 1e-2) with zero biases (Section 3);
    "zeros" and "none" (left empty) skip the random draw when the weights will be loaded anyway."""
    xp = get_backend(backend)
    if init == "normal":
        W = rng_normal(_as_rng(seed), w_shape, INIT_STD, xp, dtype)
    elif init == "zeros":
        W = xp.zeros(w_shape, dtype=dtype)
    elif init == "none":
        W = xp.empty(w_shape, dtype=dtype)
    else:
        raise ValueError(f"init must be 'normal', 'zeros' or 'none', got {init!r}")
    return {"W": W, "b": xp.zeros((w_shape[0],), dtype=dtype)}


def _check_input(layer, x, ndim: int, channels: int | None = None):
    """Shape/dtype checks shared by the layers; errors name the layer, expected and actual shape."""
    shape = getattr(x, "shape", None)
    want = f"(N, {channels if channels is not None else 'C'}, H, W)" if ndim == 4 else (
        f"(N, {channels if channels is not None else 'features'})")
    if shape is None or len(shape) != ndim:
        raise ValueError(f"{layer!r}: expected a {ndim}-D input of shape {want}, got shape {shape}")
    if x.dtype.kind != "f":
        raise ValueError(
            f"{layer!r}: expected a floating-point input (float32) of shape {want}, got dtype "
            f"{x.dtype} with shape {shape}; convert with x.astype('float32')"
        )
    if channels is not None and shape[1] != channels:
        what = "channels" if ndim == 4 else "features"
        raise ValueError(f"{layer!r}: expected input shape {want} ({channels} {what}), got shape {shape}")


class Layer:
    """Base: no parameters, identity shape. Subclasses override forward/backward."""

    params: dict

    def __init__(self):
        self.params = {}

    def to(self, backend: str):
        """Move the parameters to `backend` ("numpy" or "cupy"); returns self."""
        self.params = {k: to_device(v, backend) for k, v in self.params.items()}
        return self

    def output_shape(self, in_shape: tuple) -> tuple:
        """Shape of one output sample for one input sample shape, without computing."""
        return tuple(in_shape)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Conv2D(Layer):
    """2-D cross-correlation via im2col + one GEMM. W (out, in, kh, kw), b (out,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 seed=None, backend="numpy", dtype=np.float32, need_input_grad=True, init="normal"):
        super().__init__()
        kh, kw = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = (int(kh), int(kw)), int(stride), int(padding)
        # The first layer's input gradient is never used: skipping it saves one GEMM and col2im.
        self.need_input_grad = need_input_grad
        self.params = _init_params((out_channels, in_channels, kh, kw), seed, backend, dtype, init)

    @classmethod
    def from_params(cls, W, b, stride=1, padding=0, need_input_grad=True):
        """A Conv2D holding the given arrays W (out, in, kh, kw), b (out,) as they are (no copy)."""
        f, c, kh, kw = W.shape
        if tuple(b.shape) != (f,):
            raise ValueError(f"Conv2D.from_params: bias shape {tuple(b.shape)} does not match W {tuple(W.shape)}")
        conv = cls(c, f, (kh, kw), stride, padding, need_input_grad=need_input_grad, init="none")
        conv.params = {"W": W, "b": b}
        return conv

    def __repr__(self):
        kh, kw = self.kernel_size
        return (f"Conv2D({self.in_channels}->{self.out_channels}, kernel={kh}x{kw}, "
                f"stride={self.stride}, padding={self.padding})")

    def output_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"{self!r}: expected a sample shape ({self.in_channels}, H, W), got {tuple(in_shape)}")
        _, h, w = in_shape
        kh, kw = self.kernel_size
        p = self.padding
        if kh > h + 2 * p or kw > w + 2 * p:
            raise ValueError(
                f"{self!r}: kernel {kh}x{kw} is larger than the padded input "
                f"{h + 2 * p}x{w + 2 * p} (input shape {in_shape}); use a larger input or a smaller kernel"
            )
        return (self.out_channels, conv_outsize(h, kh, self.stride, p), conv_outsize(w, kw, self.stride, p))

    def forward(self, x, train=False):
        """x (N, in, H, W) -> y (N, out, OH, OW)."""
        _check_input(self, x, 4, self.in_channels)
        self.output_shape(x.shape[1:])
        return F.conv2d_forward(x, self.params["W"], self.params["b"], self.stride, self.padding)

    def backward(self, dy, cache):
        """dy (N, out, OH, OW) -> dx (N, in, H, W) or None, {"W", "b"}."""
        dx, dW, db = F.conv2d_backward(dy, cache, self.need_input_grad)
        return dx, {"W": dW, "b": db}


class MaxPool2D(Layer):
    """Max pooling; stride defaults to the kernel (non-overlapping, as in the paper). Floor size.

    On ties the whole gradient goes to the first maximum of the window scanned column by column.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.stride = int(kernel_size if stride is None else stride)

    def __repr__(self):
        return f"MaxPool2D(kernel={self.kernel_size}, stride={self.stride})"

    def output_shape(self, in_shape):
        c, h, w = in_shape
        k = self.kernel_size
        if k > h or k > w:
            raise ValueError(f"{self!r}: window {k}x{k} is larger than the input {h}x{w} "
                             f"(sample shape {tuple(in_shape)}); use a larger input or a smaller window")
        return (c, conv_outsize(h, k, self.stride, 0), conv_outsize(w, k, self.stride, 0))

    def forward(self, x, train=False):
        """x (N, C, H, W) -> (N, C, OH, OW)."""
        _check_input(self, x, 4)
        self.output_shape(x.shape[1:])
        return F.maxpool_forward(x, self.kernel_size, self.stride)

    def backward(self, dy, cache):
        """dy (N, C, OH, OW) -> dx (N, C, H, W), {}."""
        return F.maxpool_backward(dy, cache), {}


class ReLU(Layer):
    """max(x, 0), any shape."""

    def forward(self, x, train=False):
        """x (any shape) -> y (same shape)."""
        return F.relu_forward(x)

    def backward(self, dy, cache):
        """dy -> dx (same shape), {}."""
        return F.relu_backward(dy, cache), {}


class Dropout(Layer):
    """Inverted dropout: in training zero each unit with probability p and scale the rest by 1/(1-p);
    identity in evaluation. The mask comes from `self.rng` (a seeded numpy Generator, saved in
    checkpoints so a resumed run draws the same masks)."""

    def __init__(self, p=0.5, *, seed=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = _as_rng(seed)

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def forward(self, x, train=False):
        """x (any shape) -> y (same shape); draws a new mask from `self.rng` when training."""
        if not train or self.p == 0.0:
            return x, None
        mask = F.dropout_mask(x.shape, self.p, self.rng, get_array_module(x), x.dtype)
        return x * mask, mask

    def backward(self, dy, cache):
        """dy -> dx = dy * mask (the forward's mask), {}."""
        return (dy if cache is None else dy * cache), {}


class Linear(Layer):
    """y = x W^T + b with W (out, in), b (out,)."""

    def __init__(self, in_features, out_features, *, seed=None, backend="numpy", dtype=np.float32,
                 need_input_grad=True, init="normal"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.need_input_grad = need_input_grad
        self.params = _init_params((out_features, in_features), seed, backend, dtype, init)

    def __repr__(self):
        return f"Linear({self.in_features}->{self.out_features})"

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"{self!r}: expected input features ({self.in_features},), got {tuple(in_shape)}")
        return (self.out_features,)

    def forward(self, x, train=False):
        """x (N, in) -> (N, out)."""
        _check_input(self, x, 2, self.in_features)
        return F.linear_forward(x, self.params["W"], self.params["b"])

    def backward(self, dy, cache):
        """dy (N, out) -> dx (N, in) or None, {"W", "b"}."""
        dx, dW, db = F.linear_backward(dy, cache, self.need_input_grad)
        return dx, {"W": dW, "b": db}


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), C-order (so a following Linear is a CxHxW convolution)."""

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def forward(self, x, train=False):
        """x (N, C, H, W) -> (N, C*H*W)."""
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy, cache):
        """dy (N, C*H*W) -> dx (N, C, H, W), {}."""
        return dy.reshape(cache), {}


class Sequential(Layer):
    """Layers applied in order. `params`/grads are flat dicts keyed "index.name" (e.g. "0.W")."""

    def __init__(self, *layers):
        self.layers = list(layers[0]) if len(layers) == 1 and isinstance(layers[0], (list, tuple)) else list(layers)

    def __repr__(self):
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return Sequential(self.layers[i]) if isinstance(i, slice) else self.layers[i]

    @property
    def params(self):
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def load_params(self, flat: dict):
        """Assign parameters from a flat dict with the keys of `params` (shapes must match)."""
        for key, v in flat.items():
            i, name = key.split(".", 1)
            layer = self.layers[int(i)]
            if isinstance(layer, Sequential):
                layer.load_params({name: v})
            else:
                layer.params[name] = v

    def to(self, backend):
        for layer in self.layers:
            layer.to(backend)
        return self

    def output_shape(self, in_shape):
        for layer in self.layers:
            in_shape = layer.output_shape(in_shape)
        return in_shape

    def forward(self, x, train=False):
        """x -> (output of the last layer, list of the layers' caches)."""
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x, train=train)
            caches.append(cache)
        return x, caches

    def backward(self, dy, cache):
        """dy -> (dx or None, flat grads "i.key"), running the layers' backward in reverse."""
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            dy, g = self.layers[i].backward(dy, cache[i])
            for k, v in g.items():
                grads[f"{i}.{k}"] = v
            if dy is None:  # a layer that does not need its input gradient ends the chain
                for j in range(i):
                    if self.layers[j].params:
                        raise RuntimeError(f"layer {i} skipped its input gradient but layer {j} has parameters")
                break
        return dy, grads
