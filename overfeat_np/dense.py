"""Dense sliding-window inference: full layers as convolutions, fine stride by offset pooling.

Section 3.3 of Sermanet et al. (ICLR 2014), "ConvNets and sliding window efficiency" and Table 5.

A full layer whose input is a C x h x w map *is* a convolution with an h x w kernel (its weight
matrix reshaped, not copied), and the full layers after it are 1x1 convolutions. Run on an image
larger than the training crop, the whole network then slides over it and shares every
computation that overlapping windows have in common: one class vector per `total_stride` pixels
(`fc_to_conv`, `dense_forward` with `fine_stride=False`).

Fine stride: the last max pooling (k x k, k = 3 accurate, 2 fast) is taken at every offset
(dx, dy) in {0..k-1}^2 (`offset_pool`), the head is run on each of the k*k pooled copies, and the
k*k output maps are interleaved, so the stride becomes total_stride / k (12 accurate, 16 fast)
(`dense_head`). Both maps are *exactly* the network run on every training-size window cropped at
that stride, for nets without zero padding (the property tests check it); with padding (the real
models) a dense unit near a window's border sees real pixels where the crop would see zeros, the
approximation the paper accepts.

Ragged offsets: offset d gives a pooled map of (U - d) // k rows (U = unpooled rows), so
different offsets can disagree by one row. The positions they cover are exactly the fine
positions q = 0 .. U - f*k (f = head kernel), offset d owning the q with q % k == d, so the
interleave keeps every one of them and crops nothing. For the sizes of Table 5 all offsets agree
and this is the same as cropping to the common size. `dense_forward` finally keeps the positions
whose training-size window lies inside the image (a net whose layers leave some pixels of the
training crop unused, like `small_config` at 64, can otherwise produce one more position).

One engine for every task: `dense_passes` resizes an image to each scale and runs the feature
layers once; `dense_outputs` turns those unpooled maps into per-location outputs of any head (the
classifier here, the box regressor in `regressor`, the detector's classes in `detect`), laid out by
the scale's `grid.DenseGrid`. Shapes alone (Table 5) are in `accounting.map_shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .backend import get_array_module
from .data.transforms import hflip
from .grid import DenseGrid, dense_grid, pool_offsets
from .layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential
from .preprocess import check_image, scale_image, to_input


# --- full layers as convolutions ----------------------------------------------------------------
def _conv_from(W, b) -> Conv2D:
    """A stride-1, unpadded Conv2D holding the given arrays (no random init, no copy)."""
    return Conv2D.from_params(W, b)


def fc_to_conv(head: Sequential, in_shape: tuple) -> Sequential:
    """Turn a head `[Flatten,] Linear, ReLU, Dropout, ..., Linear` into convolutions (Section 3.3).

    in_shape: (C, h, w), the map the head was trained on (fast 1024x6x6, accurate 1024x5x5).
    The first Linear (out, C*h*w) becomes a Conv2D with an h x w kernel, later ones 1x1 kernels;
    their W/b are reshaped *views* of the Linear arrays (np.shares_memory holds), so the maths is
    unchanged and a later in-place update of the Linear weights shows through. Dropout is the
    identity at inference and is dropped. Returns a Sequential mapping (N, C, H, W) to
    (N, out, H - h + 1, W - w + 1).
    """
    c, h, w = (int(s) for s in in_shape)
    layers, shape = [], (c, h, w)
    for i, layer in enumerate(head.layers):
        if isinstance(layer, Flatten):
            if layers:
                raise ValueError(f"fc_to_conv: Flatten must come first in the head, found it at position {i}")
        elif isinstance(layer, Linear):
            n_in = shape[0] * shape[1] * shape[2]
            if layer.in_features != n_in:
                raise ValueError(
                    f"fc_to_conv: layer {i} {layer!r} expects {layer.in_features} inputs but the map entering it "
                    f"is {shape} = {n_in}; pass the head's training input shape as in_shape (model.pooled_shape)"
                )
            W, b = layer.params["W"], layer.params["b"]
            layers.append(_conv_from(W.reshape(layer.out_features, *shape), b))
            shape = (layer.out_features, 1, 1)
        elif isinstance(layer, ReLU):
            layers.append(ReLU())
        elif isinstance(layer, Dropout):
            continue  # identity at inference
        else:
            raise TypeError(f"fc_to_conv: cannot convert layer {i} {layer!r}; the head may hold only "
                             "Flatten, Linear, ReLU and Dropout")
    if not layers or not isinstance(layers[0], Conv2D):
        raise ValueError("fc_to_conv: the head must start with a Linear layer (after an optional Flatten)")
    return Sequential(layers)


@dataclass
class DenseNet:
    """An OverFeat model in fully convolutional form: features, last pooling, conv head.

    Build it once per call of a task (`fully_convolutional`) and hand it down: its head holds
    views of the model's Linear weights, so it always computes with the model's current values.
    """

    features: Sequential  # up to the last conv's ReLU (unpooled maps)
    pool: MaxPool2D  # the last pooling, k x k; applied at every offset for fine stride
    head: Sequential  # fc_to_conv(model.classifier, model.pooled_shape)
    config: object  # the model's OverFeatConfig

    @property
    def k(self) -> int:
        return self.pool.kernel_size

    @property
    def xp(self):
        return get_array_module(self.head.layers[0].params["W"])

    def outputs(self, unpooled, grid: DenseGrid, head: Sequential | None = None):
        """`dense_outputs` of `head` (default: the classifier) on these unpooled maps."""
        return dense_outputs(self.head if head is None else head, unpooled, grid)


def fully_convolutional(model) -> DenseNet:
    """The dense form of an `OverFeat` model (reshapes only, no copy)."""
    return DenseNet(model.features, model.pool, fc_to_conv(model.classifier, model.pooled_shape), model.config)


def infer(seq: Sequential, x):
    """Inference through a Sequential, dropping each layer's cache at once (im2col columns are big)."""
    for layer in seq.layers:
        x, _ = layer.forward(x, train=False)
    return x


# --- offset pooling and the fine-stride head ---------------------------------------------------
def offset_pool(maps, k: int, dx: int, dy: int):
    """Non-overlapping k x k max pooling started at column dx, row dy (Section 3.3 step b).

    maps (N, C, H, W) -> (N, C, (H - dy) // k, (W - dx) // k).
    """
    if not (0 <= dx < k and 0 <= dy < k):
        raise ValueError(f"offset_pool: offsets must lie in 0..k-1 = 0..{k - 1}, got dx={dx}, dy={dy}")
    h, w = maps.shape[2] - dy, maps.shape[3] - dx
    if h < k or w < k:
        raise ValueError(f"offset_pool: map {tuple(maps.shape[2:])} at offset (dx={dx}, dy={dy}) leaves "
                         f"{h}x{w}, smaller than the {k}x{k} window; use a larger image")
    return MaxPool2D(k).forward(maps[:, :, dy:, dx:])[0]


def _head_kernel(head_conv: Sequential) -> tuple:
    first = head_conv.layers[0]
    if not isinstance(first, Conv2D):
        raise TypeError(f"dense_head: expected a convolutional head (fc_to_conv), got first layer {first!r}")
    return first.kernel_size


def dense_head(head_conv: Sequential, unpooled, k: int, fine_stride: bool = True):
    """Pool at every offset, run the head on each copy, interleave (Section 3.3 steps b-e).

    unpooled (N, C, U_h, U_w) -> (N, C_out, L_h, L_w), stride k on the unpooled grid when
    `fine_stride=False` (offset (0, 0) only: L = U // k - f + 1) and stride 1 otherwise
    (L = U - f*k + 1, f the head kernel: every offset's map lands on out[..., dy::k, dx::k]).
    Offsets with equal pooled shapes go through the head as one batch (bigger GEMMs).
    """
    fh, fw = _head_kernel(head_conv)
    n = unpooled.shape[0]
    pooled = {}
    for dx, dy in pool_offsets(k, fine_stride):
        uh, uw = unpooled.shape[2] - dy, unpooled.shape[3] - dx
        if uh // k < fh or uw // k < fw:
            if (dx, dy) == (0, 0):
                raise ValueError(
                    f"dense_head: unpooled map {tuple(unpooled.shape[2:])} pools to {uh // k}x{uw // k}, smaller "
                    f"than the head's {fh}x{fw} kernel; the image must be at least the training size"
                )
            continue  # this offset owns no complete window: it contributes no position
        pooled[(dx, dy)] = offset_pool(unpooled, k, dx, dy)
    groups = {}
    for off, p in pooled.items():
        groups.setdefault(p.shape, []).append(off)
    xp = get_array_module(unpooled)
    maps = {}
    for offs in groups.values():
        y = infer(head_conv, xp.concatenate([pooled[o] for o in offs], axis=0) if len(offs) > 1 else pooled[offs[0]])
        for i, o in enumerate(offs):
            maps[o] = y[i * n:(i + 1) * n]
    if not fine_stride:
        return maps[(0, 0)]
    # Offset d covers the fine positions q with q % k == d: their count per axis adds up to L.
    lh = sum(maps[(0, dy)].shape[2] for dy in range(k) if (0, dy) in maps)
    lw = sum(maps[(dx, 0)].shape[3] for dx in range(k) if (dx, 0) in maps)
    y0 = maps[(0, 0)]
    out = xp.empty((n, y0.shape[1], lh, lw), dtype=y0.dtype)
    for (dx, dy), y in maps.items():
        out[:, :, dy::k, dx::k] = y
    return out


def dense_outputs(head_conv: Sequential, unpooled, grid: DenseGrid):
    """Any convolutional head (classifier, box regressor, detector) at every output of `grid`.

    unpooled (N, C, U_h, U_w), the last conv's maps of the grid's input -> (N, C_out, H', W') with
    (H', W') = grid.shape: the head at every pooling offset of the grid (`dense_head`), with the
    positions whose window would leave the input dropped (a net whose layers leave some pixels of
    the training crop unused, like `small_config` at 64, can otherwise produce one more).
    """
    y = dense_head(head_conv, unpooled, grid.k, grid.fine_stride)
    cropped = grid.crop(y)
    return cropped if cropped is y else get_array_module(y).ascontiguousarray(cropped)


class ScalePass(NamedTuple):
    """One scale of a multi-scale dense pass: where its outputs look and the maps they read."""

    scale_id: int  # index into the scales of `dense_passes`
    grid: DenseGrid  # positions, offsets and windows of this scale; boxes back to the image
    unpooled: object  # (V, C, U_h, U_w) last-conv maps on the model's backend; V = 2 with flip


def dense_passes(net: DenseNet, image, scales, fine_stride: bool = True, flip: bool = False,
                 mean=None, std=None):
    """Section 3.3's multi-scale pass: for each (H, W) scale, yield a `ScalePass`.

    The image uint8 (H, W, 3) is resized to the scale (`preprocess.scaled_size`), normalised and
    run through the feature layers once; with `flip` its mirror image runs in the same batch
    (view 1). Classification, localization and detection all read their heads from these maps
    (`DenseNet.outputs`), so the features are computed once per scale whatever the task.
    """
    check_image(image, "dense_passes")
    for si, scale in enumerate(scales):
        img = scale_image(image, scale)
        views = [img, hflip(img)] if flip else [img]
        grid = dense_grid(net.config, img.shape[:2], fine_stride, image.shape[:2])
        yield ScalePass(si, grid, infer(net.features, to_input(views, mean, std, net.xp)))


# --- whole-image inference ----------------------------------------------------------------------
def _check_images(config, images):
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4 or shape[1] != config.in_channels:
        raise ValueError(f"dense_forward: expected images (N, {config.in_channels}, H, W), got shape {shape}")
    if images.dtype.kind != "f":
        raise ValueError(f"dense_forward: expected float32 images, got {images.dtype}; normalise uint8 images "
                         "with overfeat_np.data.transforms.normalize")


def dense_forward(model, images, fine_stride: bool = True):
    """Class scores of every training-size window: images (N, 3, H, W), H, W >= input_size ->
    (N, num_classes, H', W') with (H', W') = `grid.dense_grid(config, (H, W), fine_stride).shape`.

    Location (i, j) is the window `grid.output_windows(config, (H', W'))[i, j]`. Scores are the
    last layer's raw outputs (apply a softmax over axis 1 for probabilities).
    """
    _check_images(model.config, images)
    grid = dense_grid(model.config, images.shape[2:], fine_stride)
    net = fully_convolutional(model)
    return net.outputs(infer(net.features, images), grid)
