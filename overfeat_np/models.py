"""The OverFeat networks: the fast model (Table 1), the accurate model (Table 3), a small variant.

A network is data (`OverFeatConfig`) turned into three parts, because dense inference needs to
cut it exactly there (Section 3.3):
    features   conv layers with their ReLUs and pools, up to the last conv's ReLU (unpooled)
    pool       the last max pooling, which `dense` applies at every offset (fine stride)
    classifier Flatten + full layers (ReLU after each hidden one, dropout 0.5 on their outputs)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from .backend import get_array_module
from .layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer of Tables 1/3 (filter kh=kw, zero padding) and the pooling after it (0: none)."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int = 0  # non-overlapping max pooling window (= stride); 0 when the layer has none


@dataclass(frozen=True)
class OverFeatConfig:
    """Architecture as data. The last conv must pool: that pooling is the one offset for fine stride."""

    name: str
    input_size: int  # training crop: 231 (fast), 221 (accurate)
    convs: tuple  # of ConvSpec
    hidden: tuple  # widths of the hidden full layers, e.g. (3072, 4096) for the fast model
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.5  # on the outputs of the hidden full layers (Section 3)

    def __post_init__(self):
        if not self.convs or self.convs[-1].pool < 1:
            raise ValueError(f"{self.name}: the last conv layer must be followed by max pooling")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OverFeatConfig:
        d = dict(d)
        d["convs"] = tuple(ConvSpec(**c) for c in d["convs"])
        d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    @property
    def total_stride(self) -> int:
        """Total subsampling of the network: product of conv strides and pools (fast 32, accurate 36)."""
        s = 1
        for c in self.convs:
            s *= c.stride * max(c.pool, 1)
        return s


def _scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


def fast_config(num_classes: int = 1000, width: float = 1.0) -> OverFeatConfig:
    """Table 1: the fast model, 231x231 input. `width` scales every layer's number of maps."""
    w = lambda n: _scaled(n, width)
    return OverFeatConfig(
        name="fast" if width == 1.0 else f"fast-w{width:g}",
        input_size=231,
        convs=(
            ConvSpec(w(96), 11, 4, 0, 2),
            ConvSpec(w(256), 5, 1, 0, 2),
            ConvSpec(w(512), 3, 1, 1, 0),
            ConvSpec(w(1024), 3, 1, 1, 0),
            ConvSpec(w(1024), 3, 1, 1, 2),
        ),
        hidden=(w(3072), w(4096)),
        num_classes=num_classes,
    )


def accurate_config(num_classes: int = 1000, width: float = 1.0) -> OverFeatConfig:
    """Table 3: the accurate model, 221x221 input."""
    w = lambda n: _scaled(n, width)
    return OverFeatConfig(
        name="accurate" if width == 1.0 else f"accurate-w{width:g}",
        input_size=221,
        convs=(
            ConvSpec(w(96), 7, 2, 0, 3),
            ConvSpec(w(256), 7, 1, 0, 2),
            ConvSpec(w(512), 3, 1, 1, 0),
            ConvSpec(w(512), 3, 1, 1, 0),
            ConvSpec(w(1024), 3, 1, 1, 0),
            ConvSpec(w(1024), 3, 1, 1, 3),
        ),
        hidden=(w(4096), w(4096)),
        num_classes=num_classes,
    )


def small_config(num_classes: int = 6, width: float = 1.0, input_size: int = 64) -> OverFeatConfig:
    """A laptop-sized OverFeat with the fast model's shape (conv+pool, conv+pool, 3 convs, pool,
    2 hidden full layers), 64x64 input and total stride 16, for the lessons, tests and demo.

    With input_size = 64 the pooled map is 3x3 (first full layer 3x3, like fast layer 6's 6x6);
    images of 64 + 16k pixels give exact dense maps of (1 + k) positions per axis.
    """
    w = lambda n: _scaled(n, width)
    return OverFeatConfig(
        name="small" if width == 1.0 else f"small-w{width:g}",
        input_size=input_size,
        convs=(
            ConvSpec(w(16), 5, 2, 0, 2),
            ConvSpec(w(32), 3, 1, 0, 2),
            ConvSpec(w(64), 3, 1, 1, 0),
            ConvSpec(w(64), 3, 1, 1, 0),
            ConvSpec(w(64), 3, 1, 1, 2),
        ),
        hidden=(w(128), w(128)),
        num_classes=num_classes,
    )


class OverFeat:
    """An OverFeat network built from a config; see the module docstring for its three parts.

    params / grads are flat dicts keyed "features.i.W", "classifier.j.b", ...
    init="normal" draws the paper's initialisation from `seed`; "none" leaves the weights empty
    for a caller that loads them (saves seconds and a copy of the full models' 580 MB).
    """

    def __init__(self, config: OverFeatConfig, seed: int = 0, backend: str = "numpy", init: str = "normal"):
        self.config = config
        rng = np.random.default_rng(seed)
        layers, c = [], config.in_channels
        for i, spec in enumerate(config.convs):
            layers += [
                Conv2D(c, spec.out_channels, spec.kernel, spec.stride, spec.padding, seed=rng,
                       backend=backend, init=init, need_input_grad=i > 0),
                ReLU(),
            ]
            if spec.pool and i < len(config.convs) - 1:
                layers.append(MaxPool2D(spec.pool))
            c = spec.out_channels
        self.features = Sequential(layers)
        self.pool = MaxPool2D(config.convs[-1].pool)
        c_, h, w = self.pool.output_shape(self.features.output_shape((config.in_channels, config.input_size,
                                                                      config.input_size)))
        if h != w:
            raise ValueError(f"{config.name}: pooled map {h}x{w} is not square")
        self.pooled_shape = (c_, h, w)  # input of the first full layer (e.g. 1024x6x6 for fast)
        head, n_in = [Flatten()], c_ * h * w
        for width in config.hidden:
            head += [Linear(n_in, width, seed=rng, backend=backend, init=init), ReLU(),
                     Dropout(config.dropout, seed=rng.integers(2**63))]
            n_in = width
        head.append(Linear(n_in, config.num_classes, seed=rng, backend=backend, init=init))
        self.classifier = Sequential(head)

    def __repr__(self):
        return f"OverFeat({self.config.name}, classes={self.config.num_classes})"

    @property
    def parts(self) -> dict:
        return {"features": self.features, "classifier": self.classifier}

    @property
    def params(self) -> dict:
        return {f"{name}.{k}": v for name, part in self.parts.items() for k, v in part.params.items()}

    def load_params(self, flat: dict):
        """Assign arrays from a flat dict keyed like `params` (no copy)."""
        for key, v in flat.items():
            part, rest = key.split(".", 1)
            self.parts[part].load_params({rest: v})

    def to(self, backend: str):
        """Move all parameters to "numpy" or "cupy"; returns self."""
        self.features.to(backend)
        self.classifier.to(backend)
        return self

    @property
    def xp(self):
        return get_array_module(next(iter(self.params.values())))

    @property
    def dropout_layers(self):
        return [layer for layer in self.classifier.layers if isinstance(layer, Dropout)]

    def forward_features(self, x, train=False):
        """x (N, 3, H, W) -> pooled last-conv maps (N, C5, h, w) and a cache."""
        f, fc = self.features.forward(x, train=train)
        p, pc = self.pool.forward(f, train=train)
        return p, (fc, pc)

    def forward(self, x, train=False):
        """x (N, 3, S, S) with S = config.input_size -> class scores (N, num_classes), cache."""
        if x.ndim != 4 or x.shape[1:] != (self.config.in_channels, self.config.input_size, self.config.input_size):
            raise ValueError(
                f"{self!r}: expected input (N, {self.config.in_channels}, {self.config.input_size}, "
                f"{self.config.input_size}), got {tuple(x.shape)}; use overfeat_np.dense for larger images"
            )
        p, (fc, pc) = self.forward_features(x, train)
        y, cc = self.classifier.forward(p, train=train)
        return y, (fc, pc, cc)

    def backward(self, dy, cache):
        """dy (N, num_classes) -> (None, grads): the input gradient is never needed here."""
        fc, pc, cc = cache
        d, gc = self.classifier.backward(dy, cc)
        d, _ = self.pool.backward(d, pc)
        dx, gf = self.features.backward(d, fc)
        grads = {f"classifier.{k}": v for k, v in gc.items()}
        grads.update({f"features.{k}": v for k, v in gf.items()})
        return dx, grads


def overfeat_fast(num_classes: int = 1000, width: float = 1.0, seed: int = 0, backend: str = "numpy") -> OverFeat:
    """The fast model of Table 1 (145,909,792 weights at 1000 classes)."""
    return OverFeat(fast_config(num_classes, width), seed=seed, backend=backend)


def overfeat_accurate(num_classes: int = 1000, width: float = 1.0, seed: int = 0, backend: str = "numpy") -> OverFeat:
    """The accurate model of Table 3 (144,643,872 weights at 1000 classes)."""
    return OverFeat(accurate_config(num_classes, width), seed=seed, backend=backend)


def overfeat_small(num_classes: int = 6, width: float = 1.0, seed: int = 0, backend: str = "numpy",
                   input_size: int = 64) -> OverFeat:
    """The small variant (`small_config`) that trains in minutes on a laptop CPU."""
    return OverFeat(small_config(num_classes, width, input_size), seed=seed, backend=backend)


# --- registry -------------------------------------------------------------------------------------

_CONFIGS = {"fast": fast_config, "accurate": accurate_config, "small": small_config}
MODEL_NAMES = tuple(_CONFIGS)


def build_config(name: str, num_classes: int = 1000, width: float = 1.0) -> OverFeatConfig:
    """The config of a registered model ("fast", "accurate", "small") without building it."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown model {name!r}: choose one of {MODEL_NAMES}")
    if num_classes < 1 or width <= 0:
        raise ValueError(f"{name}: need num_classes >= 1 and width > 0, got {num_classes} and {width}")
    return _CONFIGS[name](num_classes=num_classes, width=width)


def build_model(name: str, num_classes: int, width: float = 1.0, seed: int = 0, backend: str = "numpy") -> OverFeat:
    """A registered model by name ("fast", "accurate", "small"), as used by the CLI."""
    return OverFeat(build_config(name, num_classes, width), seed=seed, backend=backend)


# --- accounting: Table 4 and a shape table, by shape inference only ---------------------------------

class LayerRow(NamedTuple):
    """One row of `describe`: a conv, pool or full layer named with the paper's numbering."""

    name: str  # "conv1", "pool1", ..., "full6" (fast) / "full7" (accurate)
    kind: str  # "conv" | "pool" | "full"
    in_shape: tuple  # (C, H, W) entering the layer (Tables 1/3 "input size" is (H, W))
    out_shape: tuple  # (C, H, W); full layers are convolutions, (out, 1, 1) at the training size
    weights: int  # Table 4 counts weights only
    biases: int
    macs: int  # multiply-adds for one input of the described size (Table 4 "connections")


@dataclass(frozen=True)
class _ConvShape:
    """What accounting needs of a Conv2D, without allocating its weights (the full fast model's
    parameters are 580 MB and take seconds to draw). Shapes come from Conv2D's own method."""

    in_channels: int
    out_channels: int
    kernel_size: tuple
    stride: int
    padding: int

    def output_shape(self, in_shape):
        return Conv2D.output_shape(self, in_shape)


@dataclass(frozen=True)
class _LinearShape:
    out_features: int  # the number of inputs follows from shape inference


def _accounting_layers(model) -> list:
    """The conv, pool and full layers of an OverFeat (or of the model a config would build), in order."""
    if isinstance(model, OverFeat):
        layers = [*model.features.layers, model.pool, *model.classifier.layers]
        return [layer for layer in layers if isinstance(layer, (Conv2D, MaxPool2D, Linear))]
    if not isinstance(model, OverFeatConfig):
        raise TypeError(f"expected an OverFeat model or an OverFeatConfig, got {type(model).__name__}")
    layers, c = [], model.in_channels
    for spec in model.convs:
        layers.append(_ConvShape(c, spec.out_channels, (spec.kernel, spec.kernel), spec.stride, spec.padding))
        if spec.pool:
            layers.append(MaxPool2D(spec.pool))
        c = spec.out_channels
    return layers + [_LinearShape(n) for n in (*model.hidden, model.num_classes)]


def _input_hw(config, input_hw):
    if input_hw is None:
        return config.input_size, config.input_size
    h, w = (input_hw, input_hw) if np.isscalar(input_hw) else tuple(input_hw)
    return int(h), int(w)


def describe(model, input_hw=None) -> list:
    """Rows (LayerRow) for every conv, pool and full layer of `model` (an OverFeat or an OverFeatConfig)
    at input size input_hw (int or (H, W); default: the training size), by shape inference only.

    Above the training size the full layers are applied densely as convolutions (Section 3.3): the
    first one with a kernel as large as the pooled map at the training size, the others 1x1; the
    counts are then those of one pooling offset (coarse stride).
    """
    config = model.config if isinstance(model, OverFeat) else model
    layers = _accounting_layers(model)
    convs_pools = [layer for layer in layers if not isinstance(layer, (Linear, _LinearShape))]
    fulls = [layer for layer in layers if isinstance(layer, (Linear, _LinearShape))]
    s = config.input_size
    kernel = _feature_rows(convs_pools, (config.in_channels, s, s))[-1].out_shape[1:]  # first full's kernel
    h, w = _input_hw(config, input_hw)
    rows = _feature_rows(convs_pools, (config.in_channels, h, w))
    shape = rows[-1].out_shape
    if shape[1] < kernel[0] or shape[2] < kernel[1]:
        raise ValueError(f"{config.name}: input {h}x{w} is smaller than the training size {s}x{s}; "
                         f"the full layers need a pooled map of at least {kernel[0]}x{kernel[1]}")
    for i, layer in enumerate(fulls):
        kh, kw = kernel if i == 0 else (1, 1)
        if isinstance(layer, Linear) and layer.in_features != shape[0] * kh * kw:
            raise ValueError(f"{config.name}: full layer {i} expects {layer.in_features} inputs, "
                             f"shape inference gives {shape[0]}x{kh}x{kw}")
        out = (layer.out_features, shape[1] - kh + 1, shape[2] - kw + 1)
        n_w = layer.out_features * shape[0] * kh * kw
        rows.append(LayerRow(f"full{len(config.convs) + i + 1}", "full", shape, out, n_w, out[0],
                             n_w * out[1] * out[2]))
        shape = out
    return rows


def _feature_rows(layers, shape) -> list:
    """Rows of the conv and pool layers from an input sample shape (C, H, W), via output_shape."""
    rows, conv_i = [], 0
    for layer in layers:
        out = layer.output_shape(shape)
        if isinstance(layer, MaxPool2D):
            rows.append(LayerRow(f"pool{conv_i}", "pool", shape, out, 0, 0, 0))
        else:
            conv_i += 1
            kh, kw = layer.kernel_size
            n_w = out[0] * shape[0] * kh * kw
            rows.append(LayerRow(f"conv{conv_i}", "conv", shape, out, n_w, out[0], n_w * out[1] * out[2]))
        shape = out
    return rows


def count_parameters(model, biases: bool = False) -> int:
    """Number of weights (Table 4 counts no biases) of an OverFeat or OverFeatConfig."""
    return sum(r.weights + (r.biases if biases else 0) for r in describe(model))


def count_connections(model, input_hw=None) -> int:
    """Multiply-adds of every conv and full layer for one input (default: the training size; Table 4)."""
    return sum(r.macs for r in describe(model, input_hw))


def format_description(rows) -> str:
    """A printable table of `describe` rows, with totals."""
    def shape(s):
        return "x".join(str(v) for v in s)
    lines = [f"{'layer':<7} {'kind':<5} {'input':>14} {'output':>14} {'weights':>13} {'mult-adds':>15}"]
    lines += [f"{r.name:<7} {r.kind:<5} {shape(r.in_shape):>14} {shape(r.out_shape):>14} "
              f"{r.weights:>13,} {r.macs:>15,}" for r in rows]
    total_w, total_b, total_m = (sum(getattr(r, f) for r in rows) for f in ("weights", "biases", "macs"))
    lines.append(f"{'total':<7} {'':<5} {'':>14} {'':>14} {total_w:>13,} {total_m:>15,}")
    lines.append(f"({total_w / 1e6:.1f} M weights + {total_b:,} biases; {total_m / 1e9:.2f} G multiply-adds)")
    return "\n".join(lines)
