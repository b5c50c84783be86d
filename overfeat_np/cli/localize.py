"""Section 4 subcommands: `train-regressor` and `localize`; `run_evaluate_localization` serves
`overfeat-np evaluate --task localization`.

    overfeat-np train-regressor (--checkpoint PATH | --weights PATH) (--data ROOT | --synthetic N)
                                [--scales 1,2,4,6] [--per-class] [--epochs 10] [--out regressor.npz]
    overfeat-np localize IMAGE... (--checkpoint PATH | --weights PATH) --regressor PATH
                                [--scales 1,2,4,6] [--method merge|nms] [--out DIR]
"""

from __future__ import annotations

import os

from ..data import localization_set
from ..localize import (
    METHODS,
    centre_box_error,
    evaluate_localization,
    localize,
    train_regressor,
    window_samples,
)
from ..merge import DEFAULT_MERGE_T
from ..regressor import build_regressor, load_regressor, save_regressor
from ..scales import PAPER_SCALES, scales_for, select_scales
from ..showcase import draw_localization
from .options import (
    add_data,
    add_model_source,
    add_scales,
    add_stride,
    image_folder,
    load_model,
    positive_float,
    read_images,
    scales_from,
)
from .registry import CLIError, command

DEFAULT_SCALES = ",".join(map(str, PAPER_SCALES))  # Section 4 uses Table 2's four scales


def localization_scales(args, config) -> tuple:
    """--scales, default Table 2's scales 1,2,4,6 of the model."""
    return scales_from(args.scales, config, select_scales(scales_for(config), PAPER_SCALES))


def load_regressor_file(path, model):
    if not os.path.isfile(path):
        raise CLIError(f"regressor file {path} does not exist (write one with overfeat-np train-regressor)")
    return load_regressor(path, model)


# --- train-regressor ------------------------------------------------------------------------------
def _train_args(p):
    add_model_source(p)
    add_data(p, "ImageNet-layout folder with boxes (Annotation/ VOC XML)",
             "use N synthetic localization images instead", loader_options=False)
    add_scales(p, DEFAULT_SCALES)
    add_stride(p)
    p.add_argument("--per-class", action="store_true", help="per-class regression (PCR); default single-class (SCR)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/regressor.npz", help="where to write the regressor (default %(default)s)")


def _localization_sets(args, model) -> tuple:
    """(train_set, val_set or None) with boxes, from --synthetic N or --data ROOT."""
    if args.synthetic:
        size, n_cls = model.config.input_size, model.config.num_classes  # objects of 20-80% of the window
        return (localization_set(args.synthetic, args.seed, size, n_cls),
                localization_set(max(args.synthetic // 8, 20), args.seed + 1000, size, n_cls))
    train_set = image_folder(args.data, "train")
    val = image_folder(args.data, "val") if os.path.isdir(os.path.join(args.data, "val")) else None
    return train_set, val


@command("train-regressor", "train the Section-4 box regressor on frozen features of a classifier", _train_args)
def cmd_train_regressor(args):
    model, _ = load_model(args)
    scales = localization_scales(args, model.config)
    train_set, val_set = _localization_sets(args, model)
    reg = build_regressor(model, per_class=args.per_class, seed=args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    windows = window_samples(model, train_set, scales, fine_stride=args.fine_stride, progress=not args.no_progress)
    print(f"{len(windows)} training windows from {len(train_set)} images at scales {list(scales)} "
          f"({windows.seconds:.1f} s of features)")
    hist = train_regressor(model, reg, windows=windows, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, seed=args.seed)
    save_regressor(reg, args.out)
    print(f"{reg!r}: L2 loss {hist.losses[0]:.4f} -> {hist.losses[-1]:.4f} in {hist.steps} steps "
          f"({hist.windows_per_second:.0f} windows/s); saved {args.out}")
    if val_set is not None and len(val_set):
        err = evaluate_localization(model, reg, val_set, scales, fine_stride=args.fine_stride)
        parts = ", ".join(f"{m} {e:.3f}" for m, e in err.items())
        print(f"validation localization error (top-5, IoU >= 0.5) on {len(val_set)} images: {parts}; "
              f"centre box with the true class: {centre_box_error(val_set):.3f}")
    return 0


# --- evaluate --task localization ----------------------------------------------------------------
def run_evaluate_localization(args) -> int:
    """Top-5 localization error (IoU >= 0.5) of --regressor on the classifier, merge vs NMS vs centre box.

    Reads the `overfeat-np evaluate` arguments: the classifier (--checkpoint/--weights), --regressor,
    --synthetic N (N localization images, seed --seed + 1000, as `demo`) or --data ROOT (val/ split
    with boxes), --scales (default 1,2,4,6), --t, --limit, --fine-stride/--coarse-stride.
    """
    model, _ = load_model(args)
    reg = load_regressor_file(args.regressor, model)
    scales = localization_scales(args, model.config)
    n_cls = model.config.num_classes
    if args.synthetic:
        val = localization_set(args.synthetic, args.seed + 1000, model.config.input_size, n_cls)
    else:
        val = image_folder(args.data, "val", n_cls)
    if args.limit is not None:
        val = [val[i] for i in range(min(args.limit, len(val)))]
    if not len(val):
        raise CLIError("no images to evaluate on")
    err = evaluate_localization(model, reg, val, scales, t=args.t, fine_stride=args.fine_stride)
    print(f"{len(val)} images at scales {[tuple(s) for s in scales]}: localization error (top-5, IoU >= 0.5) "
          f"greedy merge {err['merge']:.4f}, NMS {err['nms']:.4f}; "
          f"centre box with the true class {centre_box_error(val):.4f}")
    return 0


# --- localize -------------------------------------------------------------------------------------
def _localize_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_source(p)
    p.add_argument("--regressor", required=True, help="a regressor file (overfeat-np train-regressor --out)")
    add_scales(p, DEFAULT_SCALES)
    add_stride(p)
    p.add_argument("--method", choices=METHODS, default="merge",
                   help="greedy merge of Section 4.3 (default) or non-maximum suppression")
    p.add_argument("-t", "--threshold", type=float, default=DEFAULT_MERGE_T, help="merge threshold t")
    p.add_argument("-k", "--top", type=int, default=5, help="guesses per image (default 5)")
    p.add_argument("--out", default="runs/localize", help="where to write IMAGE_boxes.png (default %(default)s)")


@command("localize", "predict the top-5 (class, box) of images: regressor + greedy merge", _localize_args)
def cmd_localize(args):
    model, names = load_model(args)
    reg = load_regressor_file(args.regressor, model)
    scales = localization_scales(args, model.config)
    images = read_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    for path, image in zip(args.images, images):
        if min(image.shape[:2]) < 8:
            raise CLIError(f"image {path} is only {image.shape[1]}x{image.shape[0]} pixels")
        loc = localize(model, reg, image, scales, k=args.top, method=args.method, t=args.threshold,
                       fine_stride=args.fine_stride)
        print(f"{path}:")
        for r, (c, box, conf) in enumerate(zip(loc.classes, loc.boxes, loc.confidences)):
            coords = ", ".join(f"{v:.1f}" for v in box)
            print(f"  {r + 1}. {names[int(c)]:<20} box ({coords})  confidence {conf:.3f}")
        out = os.path.join(args.out, f"{os.path.splitext(os.path.basename(path))[0]}_boxes.png")
        draw_localization(image, loc, names).save(out)
        print(f"  drawn to {out}")
    return 0
