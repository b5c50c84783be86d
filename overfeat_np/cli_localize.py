"""Command-line subcommands of Section 4: `train-regressor` and `localize`.

    overfeat-np train-regressor (--checkpoint PATH | --weights PATH) (--data ROOT | --synthetic N)
                                [--scales 1,2,4,6] [--per-class] [--epochs 10] [--out regressor.npz]
    overfeat-np localize IMAGE... (--checkpoint PATH | --weights PATH) --regressor PATH
                                [--scales 1,2,4,6] [--method merge|nms] [--out-dir DIR]
    overfeat-np evaluate --task localization (--checkpoint PATH | --weights PATH) --regressor PATH
                                (--data ROOT | --synthetic N) [--scales 1,2,4,6] [--limit N]

Both register with `cli.command` like the other subcommands; `cli.py` imports this module at
its end. `run_evaluate_localization(args)` serves `overfeat-np evaluate --task localization`.
"""

from __future__ import annotations

import os

from PIL import Image, ImageDraw

from .cli import CLIError, _add_model_source, _load_model, _read_images, command, parse_sizes
from .data import ImageFolderDataset
from .demo import localization_set
from .localize import (
    METHODS,
    centre_box_error,
    evaluate_localization,
    localize,
    train_regressor,
    window_samples,
)
from .merge import DEFAULT_MERGE_T
from .multiscale import scales_for, select_scales
from .regressor import build_regressor, load_regressor, save_regressor

PAPER_SCALES = "1,2,4,6"  # Section 4 uses 4 scales, Table 2's (1, 2, 4, 6)
_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240))


def parse_scales(spec: str, config) -> tuple:
    """Scales from "1,2,4,6" (numbers of `multiscale.scales_for(config)`) or "72x72,104x136" (H x W)."""
    spec = spec.strip()
    if "x" in spec:
        return parse_sizes(spec, config)
    try:
        return select_scales(scales_for(config), spec)
    except ValueError as exc:
        raise CLIError(f"--scales {spec!r}: {exc}; the model's scales are {scales_for(config)}") from exc


def draw_localization(image, loc, class_names, width: int = 2) -> Image.Image:
    """The image (uint8 (H, W, 3)) with the guesses of a `Localization` drawn, best one thickest."""
    img = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(img)
    for rank, (c, box, conf) in enumerate(zip(loc.classes, loc.boxes, loc.confidences)):
        colour = _COLOURS[int(c) % len(_COLOURS)]
        draw.rectangle([float(v) for v in box], outline=colour, width=width + (1 if rank == 0 else 0))
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{rank + 1} {class_names[int(c)]} {conf:.2f}", fill=colour)
    return img


# --- train-regressor ------------------------------------------------------------------------------
def _train_args(p):
    _add_model_source(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", metavar="ROOT", help="ImageNet-layout folder with boxes (Annotation/ VOC XML)")
    g.add_argument("--synthetic", type=int, metavar="N", help="use N synthetic localization images instead")
    p.add_argument("--scales", default=PAPER_SCALES,
                   help=f"scale numbers of the model's Table-5 scales or HxW sizes (default {PAPER_SCALES})")
    p.add_argument("--per-class", action="store_true", help="per-class regression (PCR); default single-class (SCR)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/regressor.npz", help="where to write the regressor (default %(default)s)")
    p.add_argument("--no-progress", action="store_true")


def _localization_sets(args, model):
    """(train_set, val_set or None) with boxes, from --synthetic N or --data ROOT."""
    if args.synthetic:
        size, n_cls = model.config.input_size, model.config.num_classes  # objects of 20-80% of the window
        return (localization_set(args.synthetic, args.seed, size, n_cls),
                localization_set(max(args.synthetic // 8, 20), args.seed + 1000, size, n_cls))
    if not os.path.isdir(args.data):
        raise CLIError(f"data folder {args.data} does not exist (expected an ImageNet layout with boxes)")
    val = ImageFolderDataset(args.data, "val") if os.path.isdir(os.path.join(args.data, "val")) else None
    return ImageFolderDataset(args.data, "train"), val


def run_train_regressor(args):
    model, _ = _load_model(args)
    train_set, val_set = _localization_sets(args, model)
    scales = parse_scales(args.scales, model.config)
    reg = build_regressor(model, per_class=args.per_class, seed=args.seed)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    windows = window_samples(model, train_set, scales, progress=not args.no_progress)
    print(f"{len(windows)} training windows from {len(train_set)} images at scales {list(scales)} "
          f"({windows.seconds:.1f} s of features)")
    hist = train_regressor(model, reg, windows=windows, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, seed=args.seed)
    save_regressor(reg, args.out)
    print(f"{reg!r}: L2 loss {hist.losses[0]:.4f} -> {hist.losses[-1]:.4f} in {hist.steps} steps "
          f"({hist.windows_per_second:.0f} windows/s); saved {args.out}")
    if val_set is not None and len(val_set):
        err = evaluate_localization(model, reg, val_set, scales)
        parts = ", ".join(f"{m} {e:.3f}" for m, e in err.items())
        print(f"validation localization error (top-5, IoU >= 0.5) on {len(val_set)} images: {parts}; "
              f"centre box with the true class: {centre_box_error(val_set):.3f}")
    return 0


# --- evaluate --task localization ----------------------------------------------------------------
def run_evaluate_localization(args) -> int:
    """Top-5 localization error (IoU >= 0.5) of --regressor on the classifier, merge vs NMS vs centre box.

    Reads the `overfeat-np evaluate` arguments: the classifier (--checkpoint/--weights), --regressor,
    --synthetic N (N localization images, seed --seed + 1000, as `demo`) or --data ROOT (val/ split
    with boxes), --scales (default 1,2,4,6), --t, --limit.
    """
    model, _ = _load_model(args)
    if not os.path.isfile(args.regressor):
        raise CLIError(f"regressor file {args.regressor} does not exist (write one with overfeat-np train-regressor)")
    reg = load_regressor(args.regressor, model)
    scales = parse_scales(args.scales or PAPER_SCALES, model.config)
    if args.synthetic:
        val = localization_set(args.synthetic, args.seed + 1000, model.config.input_size, model.config.num_classes)
    else:
        if not os.path.isdir(os.path.join(args.data, "val")):
            raise CLIError(f"{args.data} has no val/ folder to evaluate on")
        val = ImageFolderDataset(args.data, "val")
        if val.num_classes != model.config.num_classes:
            raise CLIError(f"the model has {model.config.num_classes} classes, the data {val.num_classes}")
    if args.limit is not None:
        val = [val[i] for i in range(min(args.limit, len(val)))]
    if not len(val):
        raise CLIError("no images to evaluate on")
    err = evaluate_localization(model, reg, val, scales, t=args.t)
    print(f"{len(val)} images at scales {[tuple(s) for s in scales]}: localization error (top-5, IoU >= 0.5) "
          f"greedy merge {err['merge']:.4f}, NMS {err['nms']:.4f}; "
          f"centre box with the true class {centre_box_error(val):.4f}")
    return 0


# --- localize -------------------------------------------------------------------------------------
def _localize_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_source(p)
    p.add_argument("--regressor", required=True, help="a regressor file (overfeat-np train-regressor --out)")
    p.add_argument("--scales", default=PAPER_SCALES, help=f"as for train-regressor (default {PAPER_SCALES})")
    p.add_argument("--method", choices=METHODS, default="merge",
                   help="greedy merge of Section 4.3 (default) or non-maximum suppression")
    p.add_argument("-t", "--threshold", type=float, default=DEFAULT_MERGE_T, help="merge threshold t")
    p.add_argument("-k", "--top", type=int, default=5, help="guesses per image (default 5)")
    p.add_argument("--out-dir", default="runs/localize", help="where to write IMAGE_boxes.png (default %(default)s)")


def run_localize(args):
    model, names = _load_model(args)
    reg = load_regressor(args.regressor, model)
    scales = parse_scales(args.scales, model.config)
    images = _read_images(args.images)
    os.makedirs(args.out_dir, exist_ok=True)
    for path, image in zip(args.images, images):
        if min(image.shape[:2]) < 8:
            raise CLIError(f"image {path} is only {image.shape[1]}x{image.shape[0]} pixels")
        loc = localize(model, reg, image, scales, k=args.top, method=args.method, t=args.threshold)
        print(f"{path}:")
        for r, (c, box, conf) in enumerate(zip(loc.classes, loc.boxes, loc.confidences)):
            coords = ", ".join(f"{v:.1f}" for v in box)
            print(f"  {r + 1}. {names[int(c)]:<20} box ({coords})  confidence {conf:.3f}")
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(args.out_dir, f"{stem}_boxes.png")
        draw_localization(image, loc, names).save(out)
        print(f"  drawn to {out}")
    return 0


command("train-regressor", "train the Section-4 box regressor on frozen features of a classifier", _train_args)(
    run_train_regressor)
command("localize", "predict the top-5 (class, box) of images: regressor + greedy merge", _localize_args)(
    run_localize)


__all__ = ["draw_localization", "parse_scales", "run_evaluate_localization", "run_localize", "run_train_regressor"]
