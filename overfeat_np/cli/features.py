"""`overfeat-np features`: save one layer's output (Tables 1/3 numbering) for each image as .npy.

    overfeat-np features IMAGE... --checkpoint PATH --layer K [--out DIR] [--no-crop]
    overfeat-np features IMAGE... --official net_weight_0 --layer K [--no-crop]   # as `overfeat -f`
"""

from __future__ import annotations

import os

import numpy as np

from ..backend import to_numpy
from ..data import make_sample, normalize, official_preprocess, resize_smallest
from ..models import layer_output, num_layers
from ..train import RESIZE_RATIO
from .options import (
    add_model_source,
    centre_crop_input,
    load_model,
    official_preprocessing,
    read_images,
)
from .registry import CLIError, command


def _features_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_source(p, official=True)
    p.add_argument("--layer", type=int, required=True, help="layer number as in Tables 1/3 (1-based)")
    p.add_argument("--out", default=".", help="folder for the .npy files (default: current)")
    p.add_argument("--resize", type=int, help="smallest side before cropping (default input*256/231)")
    p.add_argument("--no-crop", action="store_true",
                   help="run the conv layers over the whole resized image (dense maps)")


def _input(image, config, args):
    """float32 (1, 3, H, W): the centre crop, or with --no-crop the whole resized image; with
    --preprocess official the release's crop, or with --no-crop its `overfeat -f` input (the whole
    image as it is, normalised)."""
    if official_preprocessing(args):
        return official_preprocess(image, config, task="features" if args.no_crop else "classify")
    if not args.no_crop:
        return centre_crop_input(image, config, args.resize)[None]
    size = args.resize or round(config.input_size * RESIZE_RATIO)
    return normalize(resize_smallest(image, make_sample(image, -1)["boxes"], size)[0])[None]


@command("features", "save one layer's output for each image as .npy", _features_args)
def cmd_features(args):
    model, _ = load_model(args)
    n, n_conv = num_layers(model.config), len(model.config.convs)
    if not 1 <= args.layer <= n:  # before reading any image
        raise CLIError(f"--layer must be in 1..{n} for the {model.config.name} model "
                       f"({n_conv} conv + {n - n_conv} full layers), got {args.layer}")
    os.makedirs(args.out, exist_ok=True)
    for path, image in zip(args.images, read_images(args.images)):
        y = to_numpy(layer_output(model, args.xp.asarray(_input(image, model.config, args)), args.layer))[0]
        stem = os.path.splitext(os.path.basename(path))[0]
        dst = os.path.join(args.out, f"{stem}.layer{args.layer}.npy")
        np.save(dst, y.astype(np.float32, copy=False))
        print(f"{path}: layer {args.layer} output {tuple(y.shape)} -> {dst}")
    return 0
