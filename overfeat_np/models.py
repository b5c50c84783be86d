"""The OverFeat networks: the fast model (Table 1), the accurate model (Table 3), a small variant.

A network is data (`OverFeatConfig`) turned into three parts, because dense inference needs to
cut it exactly there (Section 3.3):
    features   conv layers with their ReLUs and pools, up to the last conv's ReLU (unpooled)
    pool       the last max pooling, which `dense` applies at every offset (fine stride)
    classifier Flatten + full layers (ReLU after each hidden one, dropout 0.5 on their outputs)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .backend import get_array_module, rng_normal
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
    # How training initialises the weights: "paper" N(0, 1e-2) (Section 3) or "he" N(0, 2 / fan_in)
    # (`he_init`), for layers too narrow for the paper's constant (the small model).
    weight_init: str = "paper"
    detection_scales: tuple = ()  # default (H, W) sizes of detection; () = Table 5's rule (`scales`)
    detector_train_scales: tuple = ()  # sizes detector fine-tuning uses; () = detection_scales

    def __post_init__(self):
        if not self.convs or self.convs[-1].pool < 1:
            raise ValueError(f"{self.name}: the last conv layer must be followed by max pooling")
        if self.weight_init not in ("paper", "he"):
            raise ValueError(f"{self.name}: weight_init must be 'paper' or 'he', got {self.weight_init!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OverFeatConfig:
        d = dict(d)
        d["convs"] = tuple(ConvSpec(**c) for c in d["convs"])
        d["hidden"] = tuple(d["hidden"])
        for key in ("detection_scales", "detector_train_scales"):  # JSON gives lists; equality needs tuples
            d[key] = tuple(tuple(int(v) for v in hw) for hw in d.get(key, ()))
        if "weight_init" not in d:  # files written before the field existed: the small model used He
            d["weight_init"] = "he" if d["name"].startswith("small") else "paper"
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
    Its fan-ins (75-576) make the paper's N(0, 1e-2) vanish, so it trains from He init. Detection
    defaults to 64 + 8 (2n - 1) = 104, 136, 168 (exact fine-stride maps, n = 3, 5, 7; made for the
    128-pixel synthetic detection images, whose objects then fill 0.4-1.2 of a window) and
    fine-tunes its detector at 64 + 32 n = 96, 128, 160.
    """
    w = lambda n: _scaled(n, width)
    s = input_size
    return OverFeatConfig(
        name="small" if width == 1.0 else f"small-w{width:g}",
        input_size=s,
        convs=(
            ConvSpec(w(16), 5, 2, 0, 2),
            ConvSpec(w(32), 3, 1, 0, 2),
            ConvSpec(w(64), 3, 1, 1, 0),
            ConvSpec(w(64), 3, 1, 1, 0),
            ConvSpec(w(64), 3, 1, 1, 2),
        ),
        hidden=(w(128), w(128)),
        num_classes=num_classes,
        weight_init="he",
        detection_scales=tuple((s + 8 * (2 * n - 1),) * 2 for n in (3, 5, 7)),
        detector_train_scales=tuple((s + 32 * n,) * 2 for n in (1, 2, 3)),
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


def build_config(name: str, num_classes: int = 1000, width: float = 1.0, input_size: int | None = None
                 ) -> OverFeatConfig:
    """The config of a registered model ("fast", "accurate", "small") without building it.

    input_size: the small model's training crop (default 64); the others' is fixed by their table.
    """
    if name not in _CONFIGS:
        raise ValueError(f"unknown model {name!r}: choose one of {MODEL_NAMES}")
    if num_classes < 1 or width <= 0:
        raise ValueError(f"{name}: need num_classes >= 1 and width > 0, got {num_classes} and {width}")
    if input_size is not None and name != "small":
        raise ValueError(f"input_size applies to the small model only; the {name} model's input is fixed "
                         "by its table (231 fast, 221 accurate)")
    extra = {} if input_size is None else {"input_size": int(input_size)}
    return _CONFIGS[name](num_classes=num_classes, width=width, **extra)


def build_model(name: str, num_classes: int, width: float = 1.0, seed: int = 0, backend="numpy",
                input_size: int | None = None, init: str = "paper") -> OverFeat:
    """A registered model by name ("fast", "accurate", "small"), initialised.

    init: "paper" N(0, 1e-2) (Section 3), "he" (`he_init` on the hidden layers), or "auto": the
    config's `weight_init` (He for the small model, the paper's for the others), as training uses.
    """
    if init not in ("auto", "paper", "he"):
        raise ValueError(f"init must be 'auto', 'paper' or 'he', got {init!r}")
    config = build_config(name, num_classes, width, input_size)
    model = OverFeat(config, seed=seed, backend=backend)
    if (config.weight_init if init == "auto" else init) == "he":
        he_init(model, seed)
    return model


# --- initialisation ---------------------------------------------------------------------------------
def he_normal(params: dict, rng: np.random.Generator, skip=()) -> None:
    """Redraw every weight "*.W" of `params` (in dict order, except the keys in `skip`) in place
    from N(0, 2 / fan_in) (He et al. 2015), fan_in = prod(W.shape[1:]); biases are left as they are.

    Drawn on the host from `rng`, so NumPy and CuPy start equal for one seed.
    """
    for key, w in params.items():
        if key.endswith(".W") and key not in skip:
            std = math.sqrt(2.0 / math.prod(w.shape[1:]))
            w[...] = rng_normal(rng, w.shape, std, xp=get_array_module(w), dtype=w.dtype)


def he_init(model: OverFeat, seed: int = 0) -> OverFeat:
    """He initialisation of the hidden layers of `model` (config.weight_init = "he"), in place.

    The output layer keeps the paper's N(0, 1e-2), so training starts from near-uniform class
    scores (loss ln C) instead of large random ones that make the first steps jump; biases stay 0.
    Returns the model.
    """
    last = max(k for k in model.params if k.startswith("classifier.") and k.endswith(".W"))
    he_normal(model.params, np.random.default_rng([seed, 1]), skip=(last,))
    return model


# --- one layer's output (Tables 1/3 numbering) -----------------------------------------------------
def num_layers(config) -> int:
    """Layers in the paper's numbering: convs + hidden full layers + the output layer."""
    return len(config.convs) + len(config.hidden) + 1


def layer_output(model: OverFeat, x, layer: int):
    """Output of the paper's layer `layer` (1-based, Tables 1/3) for x (N, 3, H, W).

    Conv layers end after their ReLU and max pooling (if any); hidden full layers after their
    ReLU; the last layer gives the class scores. Full layers need H = W = input_size.
    """
    n_conv, n = len(model.config.convs), num_layers(model.config)
    if not 1 <= layer <= n:
        raise ValueError(f"layer must be in 1..{n} for the {model.config.name} model ({n_conv} conv + "
                         f"{n - n_conv} full layers), got {layer}")
    done = 0
    for lyr in model.features.layers:
        if isinstance(lyr, Conv2D):
            if done == layer:
                return x
            done += 1
        x, _ = lyr.forward(x)
    x, _ = model.pool.forward(x)
    if layer == n_conv:
        return x
    if x.shape[1:] != model.pooled_shape:
        raise ValueError(f"full layers need the {model.config.input_size}x{model.config.input_size} "
                         f"training input; crop the image or pick a conv layer (1..{n_conv})")
    for lyr in model.classifier.layers:
        if isinstance(lyr, Linear):
            if done == layer:
                return x
            done += 1
        x, _ = lyr.forward(x)
    return x
