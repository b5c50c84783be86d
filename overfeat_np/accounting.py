"""Counting without computing: parameters, connections, multiply-adds and map shapes.

Table 4 (parameters and connections of the fast and accurate models), Tables 1 and 3 (map sizes
per layer) and Table 5 (map sizes of dense inference at every scale, per pooling offset), all by
shape inference over an `OverFeatConfig` or a built `OverFeat`: no weights are drawn and nothing
runs, so the full models are described in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from .grid import num_windows, output_stride, pool_offsets
from .layers import Conv2D, Linear, MaxPool2D
from .models import OverFeat, OverFeatConfig


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


# --- dense inference (Table 5) ----------------------------------------------------------------------
def unpooled_hw(config, input_hw) -> tuple:
    """(U_h, U_w) of the last conv's maps (before the last pooling) for an (H, W) input."""
    layers = _accounting_layers(config)[:-(len(config.hidden) + 2)]  # drop the last pool and the full layers
    try:
        rows = _feature_rows(layers, (config.in_channels, *(int(v) for v in input_hw)))
    except ValueError as exc:
        raise ValueError(f"map_shapes: {config.name} has no output for input {tuple(input_hw)} ({exc}); "
                         f"use an input of at least {config.input_size}x{config.input_size}") from None
    return rows[-1].out_shape[1:]


def head_kernel(config) -> int:
    """Side f of the pooled map of one training crop: the first full layer's kernel when dense."""
    f = unpooled_hw(config, (config.input_size,) * 2)[0] // config.convs[-1].pool
    if f < 1:
        raise ValueError(f"map_shapes: {config.name}'s training size {config.input_size} leaves no pooled map "
                         "for the head")
    return f


def map_shapes(config, input_hw, fine_stride: bool = True) -> dict:
    """Sizes at every stage of `dense.dense_forward`, by shape inference only (no weights, no compute).

    Returns {"input": (H, W), "unpooled": (U_h, U_w), "offsets": (k, k) or (1, 1),
    "pooled": {(dx, dy): (h, w)}, "pre_reshape": {(dx, dy): (h, w)}, "final": (H', W'),
    "stride": output stride in pixels}. For the accurate model at the sizes of `scales.SCALES_ACCURATE`
    these are the columns of Table 5 (every offset has the table's pooled and pre-reshape size).
    """
    s = config.input_size
    if input_hw[0] < s or input_hw[1] < s:
        raise ValueError(f"map_shapes: input {tuple(input_hw)} is smaller than the {s}x{s} training size")
    k = config.convs[-1].pool
    f = head_kernel(config)
    uh, uw = unpooled_hw(config, input_hw)
    pooled = {(dx, dy): ((uh - dy) // k, (uw - dx) // k) for dx, dy in pool_offsets(k, fine_stride)}
    pre = {o: (ph - f + 1, pw - f + 1) for o, (ph, pw) in pooled.items()}
    full = (uh - f * k + 1, uw - f * k + 1) if fine_stride else pre[(0, 0)]
    qh, qw = num_windows(config, input_hw, fine_stride)
    return {"input": tuple(int(v) for v in input_hw), "unpooled": (uh, uw),
            "offsets": (k, k) if fine_stride else (1, 1), "pooled": pooled, "pre_reshape": pre,
            "final": (min(full[0], qh), min(full[1], qw)), "stride": output_stride(config, fine_stride)}


def dense_macs(config, input_hw, fine_stride: bool = True) -> int:
    """Multiply-adds of `dense.dense_forward` on one (H, W) image, from shapes alone (convs and head).

    At the training size this is Table 4's "connections" count (about 2.80 G fast, 5.36 G accurate).
    """
    layers = _accounting_layers(config)[:-(len(config.hidden) + 2)]
    rows = _feature_rows(layers, (config.in_channels, *(int(v) for v in input_hw)))
    f = head_kernel(config)
    widths = (*config.hidden, config.num_classes)
    per_position = rows[-1].out_shape[0] * f * f * widths[0] + sum(a * b for a, b in pairwise(widths))
    shapes = map_shapes(config, input_hw, fine_stride)
    positions = sum(max(ph, 0) * max(pw, 0) for ph, pw in shapes["pre_reshape"].values())
    return sum(r.macs for r in rows) + positions * per_position
