"""`overfeat-np classify`: top-k labels of images, from one centre crop (default), dense multi-scale
classification (--scales, Section 3.3) or the 10-view baseline (--ten-view).

    overfeat-np classify IMAGE... --checkpoint PATH [--top-k 5] [--scales 1,2,4,6] [--save-maps DIR]
    overfeat-np classify IMAGE... --official net_weight_0 [--preprocess official]   # the release's numbers
"""

from __future__ import annotations

import os

import numpy as np

from ..backend import to_numpy
from ..data.official import official_preprocess
from ..losses import softmax
from ..multiscale import classify_multiscale, ten_view
from ..viz_dense import save_class_maps
from .options import (
    add_model_source,
    add_scales,
    add_stride,
    centre_crop_input,
    load_model,
    official_preprocessing,
    positive_int,
    read_images,
    scales_from,
)
from .registry import CLIError, UsageError, command


def _classify_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_source(p, official=True)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--resize", type=int, help="smallest side before the center crop "
                                              "(default input*256/231; 0: no resize)")
    add_scales(p, "one centre crop; with it, multi-scale dense classification, Section 3.3")
    add_stride(p)
    p.add_argument("--flip", dest="flip", action="store_true", default=True,
                   help="with --scales: also classify the mirrored image (default)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="with --scales: do not also classify the mirrored image")
    p.add_argument("--save-maps", metavar="DIR",
                   help="with --scales: save each image's per-scale class maps of its top class as "
                        "DIR/<image>_maps.png")
    p.add_argument("--ten-view", action="store_true",
                   help="the 10-view baseline instead: 4 corners + centre crops and their mirrors, averaged")


def _dense_probs(args, model, classes, images) -> list:
    """Per image: mean over scales and flips of each class's spatial max probability (Section 3.3;
    it does not sum to 1). With --save-maps, the per-scale maps of the top class too."""
    scales = scales_from(args.scales, model.config, ())
    probs = []
    for path, im in zip(args.images, images):
        p, maps = classify_multiscale(model, im, scales, args.fine_stride, args.flip)
        probs.append(p)
        if args.save_maps:
            os.makedirs(args.save_maps, exist_ok=True)
            out = os.path.join(args.save_maps, os.path.splitext(os.path.basename(path))[0] + "_maps.png")
            save_class_maps(maps, out, classes)
            print(f"wrote {out}")
    return probs


@command("classify", "top-k labels with probabilities for each image (centre crop, or dense "
                     "multi-scale with --scales)", _classify_args)
def cmd_classify(args):
    model, classes = load_model(args)
    if args.save_maps and not args.scales:
        raise CLIError("--save-maps needs --scales (the maps come from dense multi-scale classification)")
    if args.scales and args.ten_view:
        raise CLIError("choose one of --scales (dense multi-scale) and --ten-view")
    official = official_preprocessing(args)
    if official and (args.scales or args.ten_view or args.resize is not None):
        raise UsageError("--preprocess official is the release's single centre crop at coarse stride; drop "
                         "--scales, --ten-view and --resize (or use --preprocess standard)")
    images = read_images(args.images)
    if official:
        x = np.concatenate([official_preprocess(im, model) for im in images])  # (N, 3, S, S)
        probs = softmax(to_numpy(model.forward(args.xp.asarray(x))[0]).astype(np.float64))
    elif args.scales:
        probs = _dense_probs(args, model, classes, images)
    elif args.ten_view:
        probs = [ten_view(model, im) for im in images]
    else:
        x = np.stack([centre_crop_input(im, model.config, args.resize) for im in images])  # (N, 3, S, S)
        logits, _ = model.forward(args.xp.asarray(x))
        probs = softmax(to_numpy(logits).astype(np.float64))
    k = max(1, min(args.top_k, len(classes)))
    for path, p in zip(args.images, probs):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{classes[c]} {p[c]:.3f}" for c in top))
    return 0
