"""The `overfeat-np` command line (also `python -m overfeat_np`).

    overfeat-np demo [--quick] [--out runs/demo]       # all three tasks -> runs/demo/showcase.png
    overfeat-np train (--data ROOT | --synthetic N) [--model small] [--epochs 10] [--resume] ...
    overfeat-np evaluate (--checkpoint PATH | --weights PATH) (--data ROOT | --synthetic N)
    overfeat-np evaluate --task localization --weights PATH --regressor PATH (--data ROOT | --synthetic N)
    overfeat-np evaluate --task detection --detector PATH --regressor PATH (--data ROOT | --synthetic N)
    overfeat-np classify IMAGE... --checkpoint PATH [--top-k 5] [--scales 1,2,4,6]
    overfeat-np features IMAGE... --checkpoint PATH --layer K [--out DIR]

Every subcommand takes --backend numpy|cupy. A subcommand is one function registered with
`@command(name, help, add_arguments)`; later modules add theirs the same way. Expected failures
(missing files, an unusable backend, a checkpoint of another model) print one line and exit 1;
set OVERFEAT_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backend import BACKENDS, BackendError, get_backend, to_device, to_numpy
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import (
    CorruptImageError,
    DataLoader,
    EvalTransform,
    ImageFolderDataset,
    SyntheticShapes,
    load_rgb,
    make_sample,
    normalize,
    resize_smallest,
)
from .demo import run_demo
from .layers import Conv2D, Linear
from .memory import reuse_freed_memory
from .multiscale import classify_multiscale, scales_for, select_scales, softmax, ten_view
from .serialization import load_weights
from .train import RESIZE_RATIO, TrainConfig, default_transforms, evaluate, train
from .viz_dense import save_class_maps

PROG = "overfeat-np"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit code or None` as subcommand `name` with its own arguments."""
    def register(run):
        COMMANDS[name] = Command(name, help, add_arguments, run)
        return run

    return register


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


# --- shared helpers --------------------------------------------------------------------------
def _add_model_source(p, required=True):
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--checkpoint", help="a training checkpoint (e.g. runs/demo/latest.npz)")
    g.add_argument("--weights", help="a weights file (weights.npz, serialization.save_weights)")
    p.add_argument("--classes", help="class names, one per line (index = label); "
                                     "default: the checkpoint's own")


def _load_model(args):
    """(model, class names) from --checkpoint or --weights, on --backend."""
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, classes = model_from_checkpoint(ckpt, backend=args.backend), ckpt.get("classes")
    else:
        model, classes = load_weights(args.weights, backend=args.backend), None
    if args.classes:
        if not os.path.isfile(args.classes):
            raise CLIError(f"class list {args.classes} does not exist")
        with open(args.classes) as f:
            classes = [line.strip() for line in f if line.strip()]
    n = model.config.num_classes
    if classes is None:
        classes = [f"class {i}" for i in range(n)]
    if len(classes) != n:
        raise CLIError(f"the model has {n} classes but the class list has {len(classes)} names")
    return model, list(classes)


def _synthetic_size(model_input: int) -> int:
    # Synthetic images are drawn 1/8 larger than the crop, so training crops can move (Section 3).
    return model_input + model_input // 8


def _datasets(args, input_size: int, need_train: bool = True):
    """(train_set, val_set, transforms) from --data ROOT or --synthetic N."""
    if args.synthetic:
        size = _synthetic_size(input_size)
        n_val = max(args.synthetic // 8, 100)
        train_set = SyntheticShapes(args.synthetic, image_size=size, seed=args.seed, cache=True,
                                    num_classes=args.num_classes or 6) if need_train else None
        val_set = SyntheticShapes(n_val, image_size=size, seed=args.seed + 1000, cache=True,
                                  num_classes=args.num_classes or 6)
        return train_set, val_set, default_transforms(input_size, resize=None)
    root = args.data
    if not os.path.isdir(root):
        raise CLIError(f"data folder {root} does not exist (expected an ImageNet layout: "
                       f"{root}/train/<wnid>/*.JPEG, {root}/val/...)")
    train_set = ImageFolderDataset(root, "train") if need_train else None
    val_set = ImageFolderDataset(root, "val") if os.path.isdir(os.path.join(root, "val")) else None
    return train_set, val_set, default_transforms(input_size)


def _add_data(p, required=True):
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--data", metavar="ROOT", help="ImageNet-layout folder (train/<wnid>/*.JPEG, val/...)")
    g.add_argument("--synthetic", type=int, metavar="N", help="use N synthetic shape images instead")
    p.add_argument("--num-classes", type=int, help="classes of the synthetic set (default 6)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")


def _read_images(paths):

    images = []
    for p in paths:
        if not os.path.isfile(p):
            raise CLIError(f"image {p} does not exist")
        images.append(load_rgb(p))
    return images


def _preprocess(image, model, resize):
    """uint8 (H, W, 3) -> float32 (3, S, S): resize the smallest side, center crop S (Section 3)."""
    s = model.config.input_size
    resize = round(s * RESIZE_RATIO) if resize is None else (None if resize == 0 else resize)
    return EvalTransform(crop=s, resize=resize)(make_sample(image, -1))[0]


def parse_sizes(text: str, config) -> tuple:
    """--scales as image sizes: "104,136" (squares) or "281x317,245x245" -> ((H, W), ...), each
    side at least the model's training input (a smaller image has no complete window)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            hw = tuple(int(v) for v in part.split("x")) if "x" in part else (int(part),) * 2
        except ValueError:
            raise CLIError(f"--scales: cannot read {part!r}; write sizes like 104,136 or 281x317") from None
        if len(hw) != 2 or min(hw) < config.input_size:
            raise CLIError(f"--scales: {part!r} must be H or HxW with both sides >= the "
                           f"{config.input_size}-pixel training input of {config.name}")
        out.append(hw)
    return tuple(out)


# --- train -----------------------------------------------------------------------------------
def _train_args(p):
    _add_data(p)
    p.add_argument("--model", choices=("fast", "accurate", "small"), help="network (default small)")
    p.add_argument("--width", type=float, help="multiply every layer's maps (default 1)")
    p.add_argument("--input-size", type=int, help="small model input (default 64)")
    p.add_argument("--epochs", type=int, help="default 10")
    p.add_argument("--batch-size", type=int, help="default 128 (Section 3)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 5e-2, Section 3)")
    p.add_argument("--milestones", help="comma-separated epochs after which lr is halved "
                                        "(default 30,50,60,70,80)")
    p.add_argument("--momentum", type=float, help="default 0.6")
    p.add_argument("--weight-decay", type=float, help="default 1e-5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from OUT/latest.npz (or the given checkpoint) exactly where it stopped")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: each epoch)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (with a checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--blas-threads", type=int, help="BLAS threads of the training process (default: all "
                   "cores, or with --workers the cores the workers leave free)")


@command("train", "train an OverFeat classifier (Section 3), resumable", _train_args)
def cmd_train(args):

    given = {"model": args.model, "width": args.width, "input_size": args.input_size, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "checkpoint_every": args.checkpoint_every,
             "max_steps": args.max_steps,
             "milestones": None if args.milestones is None else
             tuple(int(m) for m in args.milestones.split(",") if m.strip())}
    given = {k: v for k, v in given.items() if v is not None}
    base = {}
    if args.resume:
        path = os.path.join(args.out, "latest.npz") if args.resume is True else args.resume
        if not os.path.isfile(path):
            raise CLIError(f"cannot resume: no checkpoint at {path}")
        base = load_checkpoint(path)["train_config"] or {}
        base.pop("max_steps", None)  # a stop request of the earlier invocation, not of this one
        args.resume = path
    cfg = TrainConfig.from_dict({**base, **given, "backend": args.backend, "out_dir": args.out,
                                 "seed": args.seed, "workers": args.workers,
                                 "blas_threads": args.blas_threads, "progress": not args.no_progress})
    input_size = cfg.input_size or {"fast": 231, "accurate": 221, "small": 64}[cfg.model]
    train_set, val_set, transforms = _datasets(args, input_size)
    history = train(cfg, train_set, val_set, resume=args.resume, transforms=transforms)
    final = history.final
    msg = f"trained {history.global_step} steps; outputs in {args.out}"
    if "val_top1" in final:
        msg += f"; validation top-1 {final['val_top1']:.3f}, top-5 {final['val_top5']:.3f}"
    print(msg)
    return 0


# --- evaluate --------------------------------------------------------------------------------
TASKS = ("classification", "localization", "detection")


def _evaluate_args(p):
    p.add_argument("--task", choices=TASKS, default="classification",
                   help="classification: top-1/top-5 (needs --checkpoint or --weights); localization: "
                        "top-5 localization error, greedy merge vs NMS vs a centre box (Section 4; also "
                        "--regressor); detection: mAP (Section 5; needs --detector and --regressor, same as "
                        "the evaluate-detection subcommand)")
    _add_model_source(p, required=False)
    p.add_argument("--regressor", help="localization: train-regressor's file; detection: the regressor on the "
                                       "detector's features (train-detector's regressor.npz)")
    p.add_argument("--detector", help="detection: detector weights (train-detector's detector.npz)")
    _add_data(p)
    p.add_argument("--seed", type=int, default=0, help="synthetic set seed used for training (default 0); "
                                                       "the evaluation images use seed+1000")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scales", help="localization: scale numbers of the model's Table-5 scales or HxW sizes "
                                    "(default 1,2,4,6); detection: sizes, 104,136 or HxW (default "
                                    "detect.default_scales)")
    p.add_argument("--threshold", type=float, default=0.5, help="detection: per-location class probability")
    p.add_argument("--t", type=float, default=0.5, help="greedy merge threshold (default 0.5)")
    p.add_argument("--limit", type=int, help="localization/detection: evaluate the first N images only")
    p.add_argument("--out", help="detection: folder for pr_curves.png and map.json (default: print only)")


def _require(args, names: str, task: str, hint: str):
    """CLIError unless one of the --options in `names` ("a|b") was given."""
    if not any(getattr(args, n.replace("-", "_")) for n in names.split("|")):
        given = " or ".join(f"--{n}" for n in names.split("|"))
        raise CLIError(f"evaluate --task {task} needs {given} ({hint})")


@command("evaluate", "evaluate a trained model: classification accuracy (default), localization error "
                     "(--task localization) or detection mAP (--task detection)", _evaluate_args)
def cmd_evaluate(args):
    if args.task == "detection":
        from .cli_detect import run_evaluate_detection

        _require(args, "detector", "detection", "the fine-tuned detector, e.g. runs/demo/detector.npz")
        _require(args, "regressor", "detection", "boxes regressed on the detector's features, e.g. "
                                                 "runs/demo/detector_regressor.npz; evaluate-detection runs without")
        return run_evaluate_detection(args)
    _require(args, "checkpoint|weights", args.task, "the trained classifier, e.g. runs/demo/weights.npz")
    if args.task == "localization":
        from .cli_localize import run_evaluate_localization

        _require(args, "regressor", "localization", "overfeat-np train-regressor's output, e.g. "
                                                    "runs/demo/regressor.npz")
        return run_evaluate_localization(args)
    model, _ = _load_model(args)
    _, val_set, (_, eval_tf) = _datasets(args, model.config.input_size, need_train=False)
    if val_set is None:
        raise CLIError(f"{args.data} has no val/ folder to evaluate on")
    if val_set.num_classes != model.config.num_classes:
        raise CLIError(f"the model has {model.config.num_classes} classes, the data {val_set.num_classes}")
    loader = DataLoader(val_set, args.batch_size, eval_tf, shuffle=False, drop_last=False,
                        num_workers=args.workers)
    with loader:
        res = evaluate(model, loader, args.backend, progress=True)
    print(f"{res['count']} images: top-1 accuracy {res['top1']:.4f} (error {100 * (1 - res['top1']):.2f}%), "
          f"top-5 accuracy {res['top5']:.4f} (error {100 * (1 - res['top5']):.2f}%), loss {res['loss']:.4f}")
    return 0


# --- classify --------------------------------------------------------------------------------
def _classify_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_source(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--resize", type=int, help="smallest side before the center crop "
                                              "(default input*256/231; 0: no resize)")
    p.add_argument("--scales", help="multi-scale dense classification (Section 3.3) at these of the six "
                                    "Table-5 scales, e.g. 1,2,4,6 (default: one center crop)")
    p.add_argument("--fine-stride", dest="fine_stride", action="store_true", default=True,
                   help="with --scales: the last pooling at every offset, output stride 16/12 (default)")
    p.add_argument("--coarse-stride", dest="fine_stride", action="store_false",
                   help="with --scales: no offset pooling (output stride 32/36 instead of 16/12)")
    p.add_argument("--flip", dest="flip", action="store_true", default=True,
                   help="with --scales: also classify the mirrored image (default)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="with --scales: do not also classify the mirrored image")
    p.add_argument("--save-maps", metavar="DIR",
                   help="with --scales: save each image's per-scale class maps of its top class as "
                        "DIR/<image>_maps.png")
    p.add_argument("--ten-view", action="store_true",
                   help="the 10-view baseline instead: 4 corners + centre crops and their mirrors, averaged")


@command("classify", "top-k labels with probabilities for each image (center crop)", _classify_args)
def cmd_classify(args):
    model, classes = _load_model(args)
    images = _read_images(args.images)
    if args.save_maps and not args.scales:
        raise CLIError("--save-maps needs --scales (the maps come from dense multi-scale classification)")
    if args.scales and args.ten_view:
        raise CLIError("choose one of --scales (dense multi-scale) and --ten-view")
    if args.scales:
        scales = select_scales(scales_for(model.config), args.scales)
        probs = []
        for path, im in zip(args.images, images):
            # Mean over scales and flips of each class's spatial max probability (not summing to 1).
            p, maps = classify_multiscale(model, im, scales, args.fine_stride, args.flip)
            probs.append(p)
            if args.save_maps:
                os.makedirs(args.save_maps, exist_ok=True)
                out = os.path.join(args.save_maps, os.path.splitext(os.path.basename(path))[0] + "_maps.png")
                save_class_maps(maps, out, classes)
                print(f"wrote {out}")
    elif args.ten_view:
        probs = [ten_view(model, im) for im in images]
    else:
        x = np.stack([_preprocess(im, model, args.resize) for im in images])  # (N, 3, S, S)
        logits, _ = model.forward(to_device(x, args.backend))
        probs = softmax(to_numpy(logits).astype(np.float64))
    k = max(1, min(args.top_k, len(classes)))
    for path, p in zip(args.images, probs):
        top = np.argsort(-p, kind="stable")[:k]
        print(f"{path}: " + ", ".join(f"{classes[c]} {p[c]:.3f}" for c in top))
    return 0


# --- features --------------------------------------------------------------------------------
def _check_layer(model, layer: int) -> int:
    """Raise unless 1 <= layer <= number of layers; returns the number of conv layers."""
    n_conv, n_full = len(model.config.convs), len(model.config.hidden) + 1
    if not 1 <= layer <= n_conv + n_full:
        raise CLIError(f"--layer must be in 1..{n_conv + n_full} for the {model.config.name} model "
                       f"({n_conv} conv + {n_full} full layers), got {layer}")
    return n_conv


def forward_to_layer(model, x, layer: int):
    """Output of the paper's layer `layer` (1-based, Tables 1/3) for x (N, 3, H, W).

    Conv layers end after their ReLU and max pooling (if any); hidden full layers after their
    ReLU; the last layer gives the class scores. Full layers need H = W = input_size.
    """
    n_conv = _check_layer(model, layer)
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
        raise CLIError(f"full layers need the {model.config.input_size}x{model.config.input_size} "
                       f"training input; drop --no-crop or pick a conv layer (1..{n_conv})")
    for lyr in model.classifier.layers:
        if isinstance(lyr, Linear):
            if done == layer:
                return x
            done += 1
        x, _ = lyr.forward(x)
    return x


def _features_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_source(p)
    p.add_argument("--layer", type=int, required=True, help="layer number as in Tables 1/3 (1-based)")
    p.add_argument("--out", default=".", help="folder for the .npy files (default: current)")
    p.add_argument("--resize", type=int, help="smallest side before cropping (default input*256/231)")
    p.add_argument("--no-crop", action="store_true",
                   help="run the conv layers over the whole resized image (dense maps)")


@command("features", "save one layer's output for each image as .npy", _features_args)
def cmd_features(args):
    model, _ = _load_model(args)
    _check_layer(model, args.layer)
    os.makedirs(args.out, exist_ok=True)
    for path, image in zip(args.images, _read_images(args.images)):
        if args.no_crop:
            size = args.resize or round(model.config.input_size * 256 / 231)
            image = resize_smallest(image, make_sample(image, -1)["boxes"], size)[0]
            x = normalize(image)[None]
        else:
            x = _preprocess(image, model, args.resize)[None]
        y = to_numpy(forward_to_layer(model, to_device(x, args.backend), args.layer))[0]
        stem = os.path.splitext(os.path.basename(path))[0]
        dst = os.path.join(args.out, f"{stem}.layer{args.layer}.npy")
        np.save(dst, y.astype(np.float32, copy=False))
        print(f"{path}: layer {args.layer} output {tuple(y.shape)} -> {dst}")
    return 0


# --- demo ------------------------------------------------------------------------------------
def _demo_args(p):
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="a ~15-20 s version (fewer images and steps)")
    p.add_argument("--no-progress", action="store_true")


@command("demo", "the README's first command: train the small model on synthetic shapes, then show "
                 "classification, localization and detection in one picture (minutes on a CPU)", _demo_args)
def cmd_demo(args):
    s = run_demo(args.out, quick=args.quick, backend=args.backend, progress=not args.no_progress)
    c, loc, det = s["classification"], s["localization"], s["detection"]
    print(f"demo finished in {s['seconds']:.0f} s; outputs in {s['out_dir']}")
    print(f"  classification: validation top-1 {c['val_top1']:.3f}, top-5 {c['val_top5']:.3f} on "
          f"{c['val_images']} held-out images ({len(c['classes'])} classes, chance {1 / len(c['classes']):.3f})")
    print(f"  localization:   error (top-5, IoU >= 0.5) greedy merge {loc['error_merge']:.3f}, NMS "
          f"{loc['error_nms']:.3f}, centre box {loc['error_centre_box']:.3f} on {loc['val_images']} images")
    print(f"  detection:      mAP {det['mAP']:.3f} (classifier alone {det['mAP_classifier_only']:.3f}) on "
          f"{det['test_images']} images")
    print(f"  pictures: {os.path.join(s['out_dir'], 'showcase.png')} (the three tasks), "
          + ", ".join(f for f in s["files"] if f.endswith(".png") and f != "showcase.png"))
    return 0


# --- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OverFeat (Sermanet et al., ICLR 2014) in NumPy/CuPy")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.add_argument("--backend", choices=BACKENDS, default="numpy",
                       help="numpy (CPU, default) or cupy (NVIDIA GPU)")
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage error, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        get_backend(args.backend)  # fail before any work, with the install hint
        reuse_freed_memory()  # this process is ours: keep freed blocks instead of unmapping them
        return COMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, BackendError, FileNotFoundError, CorruptImageError, ValueError) as exc:
        if os.environ.get("OVERFEAT_DEBUG"):
            raise
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1


# Subcommands of later sections register themselves with `command` when imported; they import
# this module, so they come last.
from . import cli_detect, cli_localize  # noqa: F401
