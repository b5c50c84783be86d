"""The OverFeat networks: the fast model (Table 1), the accurate model (Table 3), a small variant.

A network is data (`OverFeatConfig`) turned into three parts, because dense inference needs to
cut it exactly there (Section 3.3):
    features   conv layers with their ReLUs and pools, up to the last conv's ReLU (unpooled)
    pool       the last max pooling, which `dense` applies at every offset (fine stride)
    classifier Flatten + full layers (ReLU after each hidden one, dropout 0.5 on their outputs)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    def from_dict(cls, d: dict) -> "OverFeatConfig":
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
    return max(1, int(round(n * width)))


def fast_config(num_classes: int = 1000, width: float = 1.0) -> OverFeatConfig:
    """Table 1: the fast model, 231x231 input. `width` scales every layer's number of maps."""
    w = lambda n: _scaled(n, width)  # noqa: E731
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
    w = lambda n: _scaled(n, width)  # noqa: E731
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
    w = lambda n: _scaled(n, width)  # noqa: E731
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
    """

    def __init__(self, config: OverFeatConfig, seed: int = 0, backend: str = "numpy"):
        self.config = config
        rng = np.random.default_rng(seed)
        layers, c = [], config.in_channels
        for i, spec in enumerate(config.convs):
            layers += [
                Conv2D(c, spec.out_channels, spec.kernel, spec.stride, spec.padding, seed=rng,
                       backend=backend, need_input_grad=i > 0),
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
            head += [Linear(n_in, width, seed=rng, backend=backend), ReLU(),
                     Dropout(config.dropout, seed=rng.integers(2**63))]
            n_in = width
        head.append(Linear(n_in, config.num_classes, seed=rng, backend=backend))
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
