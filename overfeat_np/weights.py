"""The original OverFeat release's weights (user-supplied: they cannot be shipped with this project).

The release has one file per model: `net_weight_0` (fast, Table 1) and `net_weight_1` (accurate,
Table 3). Each is raw float32 in the machine's native byte order (little-endian on x86), with
no header: for every layer in order, its weights W then its biases b. Full layers are stored as
the convolutions they are at test time (Section 3.3): fast layer 6 is W (3072, 1024, 6, 6),
later full layers (out, in, 1, 1). Our Linear (3072, 1024*6*6) is that same array reshaped,
because Flatten is C-order over (C, H, W), so no transposition is ever needed.

    fast:     145,909,792 weights + 11,080 biases = 145,920,872 floats = 583,683,488 bytes
    accurate: 144,643,872 weights + 12,616 biases = 144,656,488 floats = 578,625,952 bytes

A file longer than the tensors is read with a warning that names the extra bytes (they are
ignored); a shorter one is an error.

Their preprocessing (`official_preprocess`, from overfeat_np.data.official: resize the shorter
side to 231, centre crop, top-left 221 for the accurate model) feeds RGB in 0..255 minus
118.380948, divided by 61.896913: one scalar for all channels, unlike per-channel normalisation. Their 1000 outputs
are the ILSVRC-2012 classes in ILSVRC2012_ID order (output 0 = n02119789 kit fox), not sorted
WordNet ids: `class_names()` gives them, from the list shipped with the package; map to other
class lists by wnid, never by index or name ("crane" is two classes).
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

from .backend import get_array_module
from .data.imagenet_files import ILSVRC2012_CLASS_FILE, ilsvrc2012_classes
from .data.official import OFFICIAL_MEAN, OFFICIAL_STD, official_preprocess

__all__ = [
    "CLASS_NAMES_SOURCE", "OFFICIAL_FILES", "OFFICIAL_MEAN", "OFFICIAL_SIZES", "OFFICIAL_STD",
    "OfficialLayer", "check_official_size", "class_names", "layer_offsets", "load_official",
    "official_file_size", "official_preprocess", "official_shapes", "read_class_names",
    "read_official",
]
from .models import OverFeat, accurate_config, fast_config

OFFICIAL_FILES = {"fast": "net_weight_0", "accurate": "net_weight_1"}
OFFICIAL_SIZES = {"fast": 583_683_488, "accurate": 578_625_952}  # bytes
_F32 = np.dtype("=f4")  # native byte order, as the release wrote them
_MAX_ABS = 1e6  # far above any trained weight; byte-swapped or non-float data exceeds it


class OfficialLayer(NamedTuple):
    """Where one layer lives in an official weight file; offsets in bytes from the start."""

    name: str  # "conv1", ..., "full6"
    w_offset: int
    w_shape: tuple  # (out, in, kh, kw); full layers as convolutions
    b_offset: int
    b_shape: tuple  # (out,)


def official_shapes(config) -> list:
    """[(name, W shape (out, in, kh, kw), b shape (out,))] of every conv and full layer of `config`,
    in file order, by shape arithmetic at the training size (full layers as convolutions)."""
    shapes, c, s = [], config.in_channels, config.input_size
    for i, spec in enumerate(config.convs, 1):
        shapes.append((f"conv{i}", (spec.out_channels, c, spec.kernel, spec.kernel), (spec.out_channels,)))
        c, s = spec.out_channels, (s + 2 * spec.padding - spec.kernel) // spec.stride + 1
        s = s // spec.pool if spec.pool else s  # non-overlapping pooling drops the remainder
    k = s  # the first full layer spans the whole pooled map, later ones are 1x1
    for j, width in enumerate((*config.hidden, config.num_classes)):
        shapes.append((f"full{len(config.convs) + j + 1}", (width, c, k, k), (width,)))
        c, k = width, 1
    return shapes


def layer_offsets(config) -> list:
    """The byte layout of an official-format file for `config`: W then b of every layer, in order."""
    layout, offset = [], 0
    for name, w_shape, b_shape in official_shapes(config):
        b_offset = offset + int(np.prod(w_shape)) * _F32.itemsize
        layout.append(OfficialLayer(name, offset, w_shape, b_offset, b_shape))
        offset = b_offset + int(np.prod(b_shape)) * _F32.itemsize
    return layout


def official_file_size(config) -> int:
    """Bytes of an official-format file for `config` (583,683,488 for the fast model)."""
    last = layer_offsets(config)[-1]
    return last.b_offset + int(np.prod(last.b_shape)) * _F32.itemsize


def check_official_size(path, model: str = "fast"):
    """Raise a clear error unless `path` is at least as long as the official `model` file (a longer
    one is read with a warning, see read_official); returns the model's config (1000 classes)."""
    if model not in OFFICIAL_SIZES:
        raise ValueError(f"unknown official model {model!r}: choose 'fast' ({OFFICIAL_FILES['fast']}) "
                         f"or 'accurate' ({OFFICIAL_FILES['accurate']})")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no OverFeat weight file at {path!r}; the original release names it "
                                f"{OFFICIAL_FILES[model]}")
    size, want = os.path.getsize(path), OFFICIAL_SIZES[model]
    # The fast file is longer than the accurate one: its exact size is a wrong model, not extra bytes.
    other = next((m for m, s in OFFICIAL_SIZES.items() if s == size and m != model), None)
    if size < want or other:
        hint = (f"this size matches the {other} model's file ({OFFICIAL_FILES[other]}): pass model={other!r}"
                if other else "it matches neither official file: a truncated download or another file?")
        raise ValueError(f"{path!r}: expected {want:,} bytes for the {model} model ({OFFICIAL_FILES[model]}), "
                         f"got {size:,}; {hint}")
    return fast_config(1000) if model == "fast" else accurate_config(1000)


def read_official(path, config, backend: str = "numpy") -> OverFeat:
    """Build OverFeat(config) and fill it from an official-format file (layout `layer_offsets`).

    Works for any config. The file must hold at least `official_file_size(config)` bytes; bytes
    past the last tensor are ignored with a warning that counts them. The file is memory-mapped
    and each layer copied straight into the model's own arrays.
    """
    path = os.fspath(path)
    want, size = official_file_size(config), os.path.getsize(path)
    if size < want:
        raise ValueError(f"{path!r}: expected {want:,} bytes for an official-format {config.name} file "
                         f"({len(layer_offsets(config))} layers, W then b each), got {size:,}: "
                         f"{want - size:,} bytes short, a truncated file?")
    if size > want:
        warnings.warn(f"{path!r}: {size - want:,} extra bytes after the {want:,} bytes of the "
                      f"{config.name} model's tensors (bytes {want:,}..{size - 1:,}) are ignored",
                      stacklevel=2)
    model = OverFeat(config, backend=backend, init="none")
    keys = list(model.params)
    pairs = list(zip(keys[0::2], keys[1::2]))  # params are ordered layer by layer, W then b
    layout = layer_offsets(config)
    assert len(pairs) == len(layout) and all(w.endswith("W") and b.endswith("b") for w, b in pairs)
    # An explicit shape maps just the tensors: the extra bytes need not be whole floats.
    data = np.memmap(path, dtype=_F32, mode="r", shape=(want // _F32.itemsize,))
    try:
        params = model.params
        for (w_key, b_key), layer in zip(pairs, layout):
            for key, off, shape in ((w_key, layer.w_offset, layer.w_shape), (b_key, layer.b_offset, layer.b_shape)):
                n = int(np.prod(shape))
                src = data[off // _F32.itemsize: off // _F32.itemsize + n]
                dst = params[key]
                dst[...] = get_array_module(dst).asarray(src.reshape(dst.shape))
                biggest = max(float(dst.max()), -float(dst.min()))  # two reductions, no |dst| temporary
                if not np.isfinite(biggest) or biggest > _MAX_ABS:
                    raise ValueError(f"{path!r}: {layer.name} holds values up to {biggest:g}; this is not a "
                                     "native-endian float32 OverFeat weight file (wrong byte order?)")
    finally:
        del data  # unmap
    return model


CLASS_NAMES_SOURCE = (
    f"{ILSVRC2012_CLASS_FILE}: the 1000 ILSVRC-2012 classes in ILSVRC2012_ID order, generated from "
    "the ILSVRC-2012 devkit's data/meta.mat (leaf synsets, IDs 1-1000); the original release "
    "compiles the same names in the same order into its library")


def class_names(wnids: bool = False) -> list:
    """The names (wnids=True: WordNet ids) of the original weights' 1000 outputs, output k being
    ILSVRC2012_ID k+1 (output 0 = kit fox, n02119789). Source: CLASS_NAMES_SOURCE."""
    ids, names = ilsvrc2012_classes()
    return ids if wnids else names


_shipped_class_names = class_names  # load_official's argument `class_names` hides the function


def load_official(path, model: str = "fast", backend: str = "numpy", class_names=None) -> OverFeat:
    """The original release's `net_weight_0` (model="fast") or `net_weight_1` ("accurate") as an OverFeat.

    class_names: optional path of another class list (one name per line, 1000 lines, in output
    order); by default the shipped ILSVRC-2012 names (`class_names()`). Stored as `net.class_names`.
    """
    config = check_official_size(path, model)
    net = read_official(path, config, backend=backend)
    net.class_names = (_shipped_class_names() if class_names is None
                       else read_class_names(class_names, config.num_classes))
    return net


def read_class_names(path, expected: int = 1000) -> list:
    """Class names, one per non-empty line, in file order; exactly `expected` of them."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != expected:
        raise ValueError(f"{os.fspath(path)!r}: expected {expected} class names (one per line), got {len(names)}")
    return names
