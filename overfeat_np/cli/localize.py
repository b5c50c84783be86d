"""Section 4 subcommands: `train-regressor` and `localize`; `run_evaluate_localization` serves
`overfeat-np evaluate --task localization`.

    overfeat-np train-regressor (--checkpoint PATH | --weights PATH) (--data ROOT | --synthetic N)
                                [--scales 1,2,4,6 | --object-size MIN,MAX] [--per-class] [--epochs 10]
                                [--window-memory MB] [--train-images N] [--val-images N | --no-eval]
                                [--out regressor.npz]
    overfeat-np localize IMAGE... (--checkpoint PATH | --weights PATH) --regressor PATH
                                [--scales 1,2,4,6 | --object-size MIN,MAX] [--method merge|paper|nms] [--out DIR]

--object-size MIN,MAX (pixels, the side of the smallest and largest expected object in the original
images) chooses the scales with `scales.scales_for_objects` when --scales is absent, and warns
(`scales.object_scale_warnings`) when a scale makes the objects far larger than the window.
--object-size-from ROOT reads the range from the boxes of ROOT/train's first --object-size-images N
boxed images instead (relative to each image's size, `scales.relative_object_sizes`).
"""

from __future__ import annotations

import os
import sys

from ..data import localization_set, regressor_set
from ..localize import (
    METHODS,
    centre_box_error,
    evaluate_localization,
    localize,
    train_regressor,
)
from ..merge import DEFAULT_MERGE_T
from ..regressor import build_regressor, load_regressor, save_regressor
from ..scales import (
    PAPER_SCALES,
    object_scale_warnings,
    object_sizes_for,
    relative_object_sizes,
    scales_for,
    scales_for_objects,
    select_scales,
)
from ..showcase import draw_localization
from .options import (
    add_data,
    add_model_source,
    add_scales,
    add_stride,
    image_folder,
    load_model,
    method_errors,
    positive_float,
    positive_int,
    read_images,
    report_boxes,
    scales_from,
)
from .registry import CLIError, command

DEFAULT_SCALES = ",".join(map(str, PAPER_SCALES))  # Section 4 uses Table 2's four scales
WINDOW_MEMORY_MB = 512.0  # train-regressor's default cap on held training windows
MAX_VAL_IMAGES = 500  # train-regressor's validation report reads at most this many images by default
OBJECT_SIZE_IMAGES = 20  # --object-size-from reads this many training images' boxes by default


def object_size(text) -> tuple:
    """argparse type of --object-size: "MIN,MAX" or "S" pixels -> (min, max) floats."""
    import argparse

    try:
        v = [float(x) for x in str(text).replace("-", ",").split(",") if x.strip()]
    except ValueError:
        v = []
    if len(v) not in (1, 2) or min(v) <= 0 or v[0] > v[-1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX pixels with 0 < MIN <= MAX (or one size), got {text!r}")
    return v[0], v[-1]


def add_object_size(p):
    """--object-size MIN,MAX: choose the scales from the expected object sizes (`scales_for_objects`)."""
    p.add_argument("--object-size", type=object_size, metavar="MIN,MAX",
                   help="side in pixels (sqrt of the area) of the smallest and largest expected object in the "
                        "original images: without --scales, the scales that show them at 0.4-0.9 of the "
                        "model's window (scales.scales_for_objects); with --scales, a warning for each scale "
                        "that makes them far larger than the window")
    p.add_argument("--object-size-from", metavar="ROOT",
                   help="as --object-size, with the sizes read from the boxes of a few training images: an "
                        "ImageNet-layout folder with boxes (ROOT/train/ and Annotation/ VOC XML); each box side "
                        "is taken relative to its image, so the range adapts to every image's size "
                        "(scales.relative_object_sizes)")
    p.add_argument("--object-size-images", type=positive_int, default=OBJECT_SIZE_IMAGES, metavar="N",
                   help="--object-size-from reads the boxes of the first N images that have boxes "
                        "(default %(default)s)")


def object_fractions(args):
    """--object-size-from ROOT: (min, max) object side / image side from its first N boxed images;
    read once per command (cached on args). None without the option."""
    root = getattr(args, "object_size_from", None)
    if root is None:
        return None
    if getattr(args, "_object_fractions", None) is None:
        data = image_folder(root, "train")
        n, picked = args.object_size_images, []
        for i in range(len(data)):
            s = data[i]
            if len(s["boxes"]):
                picked.append(s)
            if len(picked) >= n:
                break
        if not picked:
            raise CLIError(f"--object-size-from: no image with boxes in {root}/train (boxes come from "
                           f"Annotation/ VOC XML files)")
        args._object_fractions = relative_object_sizes(picked)
        print(f"object sizes from {len(picked)} training images of {root}: {args._object_fractions[0]:.2f}-"
              f"{args._object_fractions[1]:.2f} of the image side", file=sys.stderr)
    return args._object_fractions


def guided_scales(args, config, default, image_hw) -> tuple:
    """--scales, else --object-size's `scales_for_objects` for an image of image_hw, else default;
    prints `object_scale_warnings` for --object-size on stderr."""
    sizes = getattr(args, "object_size", None)
    fractions = object_fractions(args)
    if sizes is None and fractions is not None:
        sizes = object_sizes_for(fractions, image_hw)
    if args.scales or sizes is None:
        scales = scales_from(args.scales, config, default)
    else:
        scales = scales_for_objects(config, sizes, image_hw)
    if sizes is not None:
        for w in object_scale_warnings(config, scales, sizes, image_hw):
            print(f"warning: {w}", file=sys.stderr)
    return scales


def localization_scales(args, config, image_hw=None) -> tuple:
    """--scales, else --object-size (for images of image_hw), else Table 2's scales 1,2,4,6."""
    default = select_scales(scales_for(config), PAPER_SCALES)
    if image_hw is None:
        return scales_from(args.scales, config, default)
    return guided_scales(args, config, default, image_hw)


def load_regressor_file(path, model):
    if not os.path.isfile(path):
        raise CLIError(f"regressor file {path} does not exist (write one with overfeat-np train-regressor)")
    return load_regressor(path, model)


# --- train-regressor ------------------------------------------------------------------------------
def _train_args(p):
    add_model_source(p)
    add_data(p, "ImageNet-layout folder with boxes (Annotation/ VOC XML)",
             "use N synthetic images instead (half the localization set's objects, half small ones)",
             loader_options=False)
    add_scales(p, DEFAULT_SCALES)
    add_object_size(p)
    add_stride(p)
    p.add_argument("--per-class", action="store_true", help="per-class regression (PCR); default single-class (SCR)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--window-memory", type=positive_float, default=WINDOW_MEMORY_MB, metavar="MB",
                   help="hold at most this many MB of training windows at a time (default %(default)s): the "
                        "features are recomputed every epoch, so memory stays bounded whatever the data size")
    p.add_argument("--train-images", type=positive_int, metavar="N", help="train on the first N images only")
    p.add_argument("--val-images", type=positive_int, metavar="N",
                   help="evaluate on the first N validation images only (default: all, at most 500)")
    p.add_argument("--no-eval", action="store_true", help="skip the validation localization error")
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/regressor.npz", help="where to write the regressor (default %(default)s)")


def _localization_sets(args, model) -> tuple:
    """(train_set, val_set or None) with boxes, from --synthetic N or --data ROOT, cut to
    --train-images / --val-images (validation: at most MAX_VAL_IMAGES unless asked)."""
    if args.synthetic:
        size, n_cls = model.config.input_size, model.config.num_classes
        # half of objects of 20-80% of the window, half small (`data.SMALL_OBJECTS`); not cached:
        # streaming training redraws an image when an epoch needs it, memory stays bounded
        train_set = regressor_set(args.synthetic, args.seed, size, n_cls, cache=False)
        val = localization_set(max(args.synthetic // 8, 20), args.seed + 1000, size, n_cls)
    else:
        train_set = image_folder(args.data, "train", outside_boxes=args.outside_boxes)
        val = (image_folder(args.data, "val", outside_boxes=args.outside_boxes)
               if os.path.isdir(os.path.join(args.data, "val")) else None)
    if args.train_images is not None and args.train_images < len(train_set):
        train_set = _First(train_set, args.train_images)
    if args.no_eval:
        val = None
    elif val is not None:
        val = _First(val, args.val_images or MAX_VAL_IMAGES)
    return train_set, val


class _First:
    """The first n items of a data set (no copy)."""

    def __init__(self, data, n):
        self.data, self.n = data, min(int(n), len(data))
        self.num_classes = getattr(data, "num_classes", None)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.data[i % self.n]


@command("train-regressor", "train the Section-4 box regressor on frozen features of a classifier", _train_args)
def cmd_train_regressor(args):
    model, _ = load_model(args)
    train_set, val_set = _localization_sets(args, model)
    if not len(train_set):
        raise CLIError("no training images")
    scales = localization_scales(args, model.config, train_set[0]["image"].shape[:2])
    reg = build_regressor(model, per_class=args.per_class, seed=args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    c, f, _ = model.pooled_shape
    per_window = 4 * (c * f * f + 4) + 8  # patch, target (float32), label (int64)
    cap = max(1, int(args.window_memory * 2**20 // per_window))
    print(f"training on {len(train_set)} images at scales {list(scales)}, holding at most {cap} windows "
          f"({args.window_memory:g} MB) at a time")
    hist = train_regressor(model, reg, train_set, scales, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                           seed=args.seed, fine_stride=args.fine_stride, max_windows=cap,
                           progress=not args.no_progress)
    save_regressor(reg, args.out)
    print(f"{hist.windows} training windows per epoch ({hist.feature_seconds:.1f} s of features); "
          f"{reg!r}: L2 loss {hist.losses[0]:.4f} -> {hist.losses[-1]:.4f} in {hist.steps} steps "
          f"({hist.windows_per_second:.0f} windows/s); saved {args.out}")
    if val_set is not None and len(val_set):
        err = evaluate_localization(model, reg, val_set, scales, fine_stride=args.fine_stride)
        parts = ", ".join(f"{m} {e:.3f}" for m, e in err.items())
        print(f"validation localization error (top-5, IoU >= 0.5) on {len(val_set)} images: {parts}; "
              f"centre box with the true class: {centre_box_error(val_set):.3f}")
    report_boxes(train_set, val_set)
    return 0


# --- evaluate --task localization ----------------------------------------------------------------
def run_evaluate_localization(args) -> int:
    """Top-5 localization error (IoU >= 0.5) of --regressor on the classifier, merge vs NMS vs centre box.

    Reads the `overfeat-np evaluate` arguments: the classifier (--checkpoint/--weights), --regressor,
    --synthetic N (N localization images, seed --seed + 1000, as `demo`) or --data ROOT (val/ split
    with boxes), --scales (default 1,2,4,6) or --object-size, --t, --limit, --fine-stride/--coarse-stride.
    """
    model, _ = load_model(args)
    reg = load_regressor_file(args.regressor, model)
    n_cls = model.config.num_classes
    if args.synthetic:
        val = localization_set(args.synthetic, args.seed + 1000, model.config.input_size, n_cls)
    else:
        val = image_folder(args.data, "val", n_cls, outside_boxes=args.outside_boxes)
    if args.limit is not None:
        val = [val[i] for i in range(min(args.limit, len(val)))]
    if not len(val):
        raise CLIError("no images to evaluate on")
    scales = localization_scales(args, model.config, val[0]["image"].shape[:2])
    err = evaluate_localization(model, reg, val, scales, t=args.t, fine_stride=args.fine_stride)
    print(f"{len(val)} images at scales {[tuple(s) for s in scales]}: localization error (top-5, IoU >= 0.5) "
          f"{method_errors(err, 4)}; centre box with the true class {centre_box_error(val):.4f}")
    report_boxes(val)
    return 0


# --- localize -------------------------------------------------------------------------------------
def _localize_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_source(p)
    p.add_argument("--regressor", required=True, help="a regressor file (overfeat-np train-regressor --out)")
    add_scales(p, DEFAULT_SCALES)
    add_object_size(p)
    add_stride(p)
    p.add_argument("--method", choices=METHODS, default="merge",
                   help="merge: the package's accumulation (default; merge.accumulate: windows weighted by their image area); "
                        "paper: Section 4.3's greedy merge exactly; nms: non-maximum suppression")
    p.add_argument("-t", "--threshold", type=float, default=DEFAULT_MERGE_T, help="merge threshold t")
    p.add_argument("-k", "--top", type=int, default=5, help="guesses per image (default 5)")
    p.add_argument("--out", default="runs/localize", help="where to write IMAGE_boxes.png (default %(default)s)")


@command("localize", "predict the top-5 (class, box) of images: regressor + box accumulation", _localize_args)
def cmd_localize(args):
    model, names = load_model(args)
    reg = load_regressor_file(args.regressor, model)
    images = read_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    for path, image in zip(args.images, images):
        if min(image.shape[:2]) < 8:
            raise CLIError(f"image {path} is only {image.shape[1]}x{image.shape[0]} pixels")
        scales = localization_scales(args, model.config, image.shape[:2])
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
