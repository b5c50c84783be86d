"""What the subcommands share: their common options and the inputs behind them.

Options: the model source (--checkpoint | --weights, --classes), the data (--data | --synthetic,
--num-classes, --workers), --scales (`scales.parse_scales`: Table-5 scale numbers and sizes, mixed),
the dense stride (--fine-stride | --coarse-stride), and what every subcommand gets because it
computes (--backend, --blas-threads, --no-progress). Inputs: the model and its class names, images,
and the data sets. Everything here reads `args.xp`, the array module `main` resolved once.
"""

from __future__ import annotations

import argparse
import functools
import os

from ..backend import BACKENDS
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import EvalTransform, ImageFolderDataset, classification_sets, load_rgb, make_sample
from ..data.folders import OUTSIDE_BOXES
from ..localize import METHODS
from ..scales import parse_scales
from ..serialization import load_weights
from ..showcase import METHOD_LABELS
from ..train import RESIZE_RATIO, default_transforms
from ..weights import load_official
from .registry import CLIError, UsageError

SCALES_HELP = ("scale numbers of the model's six Table-5 scales and/or sizes S or HxW, mixed freely: "
               "1,2,4,6 or 104,281x317")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def int_list(text: str) -> tuple:
    """argparse type: comma-separated whole numbers, e.g. "30,50,60" -> (30, 50, 60)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers like 30,50,60, got {text!r}") from None


# --- options ---------------------------------------------------------------------------------
def add_compute(p):
    """--backend, --blas-threads, --no-progress: every subcommand computes, so every one has them."""
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (CPU, default) or cupy (NVIDIA GPU)")
    p.add_argument("--blas-threads", type=positive_int, metavar="N",
                   help="BLAS threads of this process (default 1, or $OVERFEAT_BLAS_THREADS: safe on a busy "
                        "machine and repeatable; more for a big model on idle cores; train --resume: the count "
                        "the run was trained with)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_model_source(p, required=True, official=False):
    """--checkpoint | --weights (| --official with `official`), and --classes."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--checkpoint", help="a training checkpoint (e.g. runs/demo/latest.npz)")
    g.add_argument("--weights", help="a weights file (weights.npz, serialization.save_weights)")
    if official:
        g.add_argument("--official", metavar="NET_WEIGHT",
                       help="the original release's net_weight_0 (fast) or net_weight_1 (accurate); its "
                            "1000 outputs are named from the shipped ILSVRC-2012 class list")
        p.add_argument("--official-model", choices=("fast", "accurate"),
                       help="the model of --official (default: from the file name, net_weight_1 = accurate)")
        p.add_argument("--preprocess", choices=("standard", "official"),
                       help="standard: this package's (resize 256/231 of the crop, centre crop, ImageNet "
                            "mean/std); official: the release's exactly (shorter side 231, centre crop, "
                            "(x - 118.38) / 61.90, coarse stride). Default: official with --official")
    p.add_argument("--classes", help="class names, one per line (index = label); default: the checkpoint's own")


def add_data(p, data_help="ImageNet-layout folder (train/<wnid>/*.JPEG, val/...)",
             synthetic_help="use N synthetic shape images instead", loader_options=True):
    """--data ROOT | --synthetic N (one required); with loader_options also --num-classes and --workers."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", metavar="ROOT", help=data_help)
    g.add_argument("--synthetic", type=positive_int, metavar="N", help=synthetic_help)
    p.add_argument("--outside-boxes", choices=OUTSIDE_BOXES, default="clip",
                   help="with --data: boxes reaching outside their image are clipped (default) or dropped; "
                        "either way they are counted and reported")
    if loader_options:
        p.add_argument("--num-classes", type=int, help="classes of the synthetic set (default 6)")
        p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")


def add_scales(p, default: str):
    p.add_argument("--scales", metavar="LIST", help=f"{SCALES_HELP} (default {default})")


def add_stride(p, default: bool = True, what: str = ""):
    """--fine-stride | --coarse-stride: the last pooling at every offset or at one (`default`: fine)."""
    p.add_argument("--fine-stride", dest="fine_stride", action="store_true", default=default,
                   help=f"{what}the last pooling at every offset: output stride 16/12 instead of 32/36"
                        + (" (default)" if default else ""))
    p.add_argument("--coarse-stride", dest="fine_stride", action="store_false",
                   help=f"{what}no offset pooling (output stride 32/36, Section 3.3)" + ("" if default else " (default)"))


def scales_from(text, config, default) -> tuple:
    """--scales text -> ((H, W), ...) for `config` (`scales.parse_scales`; its ValueError is the
    one-line message); `default` (sizes) when the option is absent."""
    if not text:
        return tuple(tuple(hw) for hw in default)
    try:
        return parse_scales(text, config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# --- inputs ----------------------------------------------------------------------------------
def read_class_names(path) -> list:
    """Class names from a text file, one per line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise CLIError(f"class list {path} does not exist")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def load_model(args) -> tuple:
    """(model on args.xp, class names) from --checkpoint or --weights (and --classes)."""
    if getattr(args, "official", None):
        name = args.official_model or ("accurate" if os.path.basename(args.official).endswith("_1") else "fast")
        model = load_official(args.official, name, backend=args.xp)
        classes = model.class_names
    elif args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, classes = model_from_checkpoint(ckpt, backend=args.xp), ckpt.get("classes")
    else:
        model, classes = load_weights(args.weights, backend=args.xp), None
    if args.classes:
        classes = read_class_names(args.classes)
    n = model.config.num_classes
    if classes is None:
        classes = [f"class {i}" for i in range(n)]
    if len(classes) != n:
        raise CLIError(f"the model has {n} classes but the class list has {len(classes)} names")
    return model, list(classes)


MIN_IMAGE_SIDE = 8  # below this an image holds no object a window could see, whatever the scale


def read_images(paths) -> list:
    """uint8 (H, W, 3) RGB arrays of the image files; a folder, a missing file or an image under
    MIN_IMAGE_SIDE pixels is a CLIError naming it."""
    for p in paths:
        if os.path.isdir(p):
            raise CLIError(f"{p} is a folder, not an image; give image files, e.g. {os.path.join(p, '*.jpg')}")
        if not os.path.isfile(p):
            raise CLIError(f"image {p} does not exist")
    images = [load_rgb(p) for p in paths]
    for p, im in zip(paths, images):
        if min(im.shape[:2]) < MIN_IMAGE_SIDE:
            raise CLIError(f"image {p} is only {im.shape[1]}x{im.shape[0]} pixels; give an image at least "
                           f"{MIN_IMAGE_SIDE} pixels on each side (it is resized to the model's input)")
    return images


def official_preprocessing(args) -> bool:
    """Whether --preprocess (default: official exactly when the model is --official) asks for the
    original release's preprocessing (`data.official.official_preprocess`)."""
    choice = getattr(args, "preprocess", None)
    return choice == "official" or (choice is None and bool(getattr(args, "official", None)))


def centre_crop_input(image, config, resize=None):
    """uint8 (H, W, 3) -> float32 (3, S, S): resize the smallest side (default S * 256/231; 0: keep),
    centre crop S = config.input_size (Section 3)."""
    s = config.input_size
    resize = round(s * RESIZE_RATIO) if resize is None else (None if resize == 0 else resize)
    return EvalTransform(crop=s, resize=resize)(make_sample(image, -1))[0]


def image_folder(root, split: str, num_classes: int | None = None, owner: str = "the model",
                 decode_min_side: int | None = None, outside_boxes: str = "clip",
                 pil_images: bool = False):
    """The `split` of an ImageNet-layout tree; a missing folder or another class count is a CLIError.

    decode_min_side: the shorter side the transform resizes to; large JPEGs are then decoded at
    a reduced size that still covers it (`data.image_io.decode_rgb`). pil_images: samples hold
    the decoded PIL image, for Train/EvalTransform only (`ImageFolderDataset`)."""
    if not os.path.isdir(root):
        raise CLIError(f"data folder {root} does not exist (expected an ImageNet layout: "
                       f"{root}/train/<wnid>/*.JPEG, {root}/val/...)")
    if split == "val" and not os.path.isdir(os.path.join(root, "val")):
        raise CLIError(f"{root} has no val/ folder to evaluate on")
    data = ImageFolderDataset(root, split, decode_min_side=decode_min_side,
                              outside_boxes=outside_boxes, pil_images=pil_images)
    if num_classes is not None and data.num_classes != num_classes:
        raise CLIError(f"{owner} has {num_classes} classes, the data {data.num_classes}")
    return data


def classification_data(args, input_size: int, need_train: bool = True) -> tuple:
    """(train_set or None, val_set or None, (train_tf, eval_tf)) from --synthetic N or --data ROOT."""
    if args.synthetic:
        train_set, val_set = classification_sets(args.synthetic, args.seed, input_size, args.num_classes or 6)
        return (train_set if need_train else None), val_set, default_transforms(input_size, resize=None)
    transforms = default_transforms(input_size)
    side = transforms[0].resize  # every image is resized to this shorter side first (Section 3)
    # Only the transforms read these images: they resample their crop from the decoded PIL image.
    folder = functools.partial(image_folder, args.data, decode_min_side=side, pil_images=True)
    train_set = folder("train") if need_train else None
    has_val = os.path.isdir(os.path.join(args.data, "val"))
    val_set = folder("val") if has_val or not need_train else None
    return train_set, val_set, transforms


def report_boxes(*datasets):
    """Print what became of boxes outside their image, for the image folders among `datasets`."""
    for data in datasets:
        counts = getattr(data, "box_counts", None)
        if counts and counts["outside"]:
            print(f"{data.root} ({data.split}): {data.box_report()}")


# The pictures' names (`showcase.METHOD_LABELS`), the default said to be one in printouts.
_METHOD_NAMES = {**METHOD_LABELS, "merge": "accumulation (merge, the default)"}


def method_errors(errors: dict, digits: int) -> str:
    """One localization error per accumulation method ({method: error}, `localize.METHODS`), named
    as the README's tables name them: "accumulation (merge, the default) 0.12, ..., NMS 0.12"."""
    return ", ".join(f"{_METHOD_NAMES[m]} {errors[m]:.{digits}f}" for m in METHODS)
