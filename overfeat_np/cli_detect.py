"""Detection subcommands of `overfeat-np` (Section 5): train-detector, detect, evaluate-detection.

    overfeat-np train-detector --checkpoint runs/demo/latest.npz --synthetic 400 --out runs/detector
    overfeat-np detect IMAGE... --detector runs/detector/detector.npz --regressor runs/detector/regressor.npz
    overfeat-np evaluate --task detection --detector runs/detector/detector.npz \
        --regressor runs/detector/regressor.npz --synthetic 100   (evaluate-detection: the same)

They register themselves with `cli.command` when this module is imported (cli.py imports it).
`run_evaluate_detection(args)` also serves `overfeat-np evaluate --task detection`.
Files written by train-detector: detector.npz (`serialization.save_weights`; the last class is
background), regressor.npz (`regressor.save_regressor`, trained on the detector's features),
classes.txt (object class names, one per line), log.json (training records).
"""

from __future__ import annotations

import json
import os

from .cli import CLIError, _add_model_source, _load_model, _read_images, command, parse_sizes
from .data import ImageFolderDataset
from .demo import detection_set
from .detect import default_scales, detect, detections_to_json, evaluate_detection
from .detect_train import DetectorTrainConfig, background_index, make_detector, train_detector
from .serialization import load_weights, save_weights


def parse_scales(text, config) -> tuple:
    """"104,136" (squares) or "281x317,245x245" -> ((H, W), ...); None/"" -> `default_scales`."""
    return parse_sizes(text, config) if text else default_scales(config)


def _synthetic_detection(n, config, num_classes, seed):
    # Images twice the training size hold 0..3 objects of 0.2-0.45 of the side (about 0.4-0.9 of a window).
    return detection_set(n, seed, config.input_size, num_classes)


def _class_names(args, path, n):
    src = args.classes or os.path.join(os.path.dirname(os.path.abspath(path)), "classes.txt")
    if os.path.isfile(src):
        with open(src) as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != n:
            raise CLIError(f"{src} has {len(names)} names but the detector has {n} object classes")
        return names
    if args.classes:
        raise CLIError(f"class list {args.classes} does not exist")
    return [f"class {i}" for i in range(n)]


def _load_detector(args):
    """(detector, regressor or None, object class names) from --detector/--regressor."""
    if not os.path.isfile(args.detector):
        raise CLIError(f"detector file {args.detector} does not exist (write one with overfeat-np train-detector)")
    det = load_weights(args.detector, backend=args.backend)
    reg = None
    if args.regressor:
        from .regressor import load_regressor

        reg = load_regressor(args.regressor, det)
    return det, reg, _class_names(args, args.detector, background_index(det))


def _add_detector_source(p):
    p.add_argument("--detector", required=True, help="detector weights (train-detector's detector.npz)")
    p.add_argument("--regressor", help="box regressor trained on the detector (regressor.npz); "
                                       "default: none, the windows are the boxes")
    p.add_argument("--classes", help="object class names, one per line (default: classes.txt beside --detector)")
    p.add_argument("--scales", help="sizes the image is resized to: 104,136 or 281x317,... "
                                    "(default: detect.default_scales)")
    p.add_argument("--threshold", type=float, default=0.5, help="per-location class probability (default 0.5)")
    p.add_argument("--t", type=float, default=0.5, help="greedy merge threshold (default 0.5)")


# --- detect ----------------------------------------------------------------------------------
def _detect_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_detector_source(p)
    p.add_argument("--min-score", type=float, default=0.0,
                   help="report merged detections from this score (summed probabilities) up; default 0: all. "
                        "The demo's summary.json lists each class's best-F1 score (detection.best_f1_score)")
    p.add_argument("--out", default=os.path.join("runs", "detect"), help="output folder (default runs/detect)")


@command("detect", "find every object in each image: detections.json and one picture per image", _detect_args)
def cmd_detect(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .showcase import draw_detections

    det, reg, names = _load_detector(args)
    scales = parse_scales(args.scales, det.config)
    images = _read_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for path, image in zip(args.images, images):
        dets = [d for d in detect(det, reg, image, scales, args.threshold, args.t) if d.score >= args.min_score]
        results.append(detections_to_json(dets, names, path))
        fig, ax = plt.subplots(figsize=(5, 5 * image.shape[0] / image.shape[1]))
        draw_detections(ax, image, dets, names, title=f"{os.path.basename(path)}: {len(dets)} detections")
        png = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "_detections.png")
        fig.savefig(png, dpi=100, bbox_inches="tight")
        plt.close(fig)
        print(f"{path}: " + (", ".join(f"{names[d.cls]} {d.score:.2f} at {[round(v) for v in d.box]}"
                                         for d in dets) or "no detection") + f" -> {png}")
    with open(os.path.join(args.out, "detections.json"), "w") as f:
        json.dump({"scales": [list(s) for s in scales], "threshold": args.threshold, "t": args.t,
                   "min_score": args.min_score, "images": results}, f, indent=1)
    print(f"wrote {os.path.join(args.out, 'detections.json')}")
    return 0


# --- train-detector ----------------------------------------------------------------------------
def _train_detector_args(p):
    _add_model_source(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", metavar="ROOT", help="ImageNet/VOC-layout folder with boxes (train/ split)")
    g.add_argument("--synthetic", type=int, metavar="N", help="N synthetic detection images (0..3 objects)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--scales", help="training sizes (default 96,128,160 for the small model)")
    p.add_argument("--regressor-epochs", type=int, default=5, help="box regressor epochs (0: no regressor)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("runs", "detector"))
    p.add_argument("--no-progress", action="store_true")


@command("train-detector", "fine-tune a classifier into a detector (background class, Section 5)",
         _train_detector_args)
def cmd_train_detector(args):
    clf, names = _load_model(args)
    if args.synthetic:
        data = _synthetic_detection(args.synthetic, clf.config, clf.config.num_classes, args.seed)
        names = data.classes
    else:
        if not os.path.isdir(args.data):
            raise CLIError(f"data folder {args.data} does not exist")
        data = ImageFolderDataset(args.data, "train")
        if data.num_classes != clf.config.num_classes:
            raise CLIError(f"the classifier has {clf.config.num_classes} classes, the data {data.num_classes}")
    if args.scales:
        tscales = parse_scales(args.scales, clf.config)
    elif clf.config.name.startswith("small"):
        tscales = tuple((clf.config.input_size + 32 * n,) * 2 for n in (1, 2, 3))  # 96, 128, 160
    else:
        tscales = default_scales(clf.config)
    det = make_detector(clf, seed=args.seed)
    cfg = DetectorTrainConfig(scales=tscales, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              seed=args.seed)
    hist = train_detector(det, data, cfg, progress=not args.no_progress)
    os.makedirs(args.out, exist_ok=True)
    save_weights(det, os.path.join(args.out, "detector.npz"))
    with open(os.path.join(args.out, "classes.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    log = {"config": vars(cfg), "steps": hist.steps, "images_per_s": hist.images_per_s}
    if args.regressor_epochs > 0:
        from .localize import train_regressor
        from .regressor import build_regressor, save_regressor

        reg = build_regressor(det, seed=args.seed)
        rh = train_regressor(det, reg, data, tscales, epochs=args.regressor_epochs, fine_stride=False,
                             progress=not args.no_progress)
        save_regressor(reg, os.path.join(args.out, "regressor.npz"))
        log["regressor_losses"] = rh.losses
    with open(os.path.join(args.out, "log.json"), "w") as f:
        json.dump(log, f, indent=1, default=list)
    print(f"detector trained: {cfg.steps} steps, {hist.images_per_s:.1f} images/s, last loss "
          f"{hist.steps[-1]['loss']:.3f}; files in {args.out}")
    return 0


# --- evaluate --task detection ---------------------------------------------------------------------
def add_evaluate_detection_args(p):
    """The arguments `run_evaluate_detection` reads (for `evaluate --task detection` too)."""
    _add_detector_source(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", metavar="ROOT", help="ImageNet/VOC-layout folder with boxes (val/ split)")
    g.add_argument("--synthetic", type=int, metavar="N", help="N synthetic detection images")
    p.add_argument("--seed", type=int, default=0, help="synthetic seed used for training (evaluation uses seed+1000)")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--out", help="folder for pr_curves.png and map.json (default: print only)")


def run_evaluate_detection(args) -> int:
    """mAP of a detector on a data set: prints mAP and per-class AP; --out writes map.json, pr_curves.png."""
    det, reg, names = _load_detector(args)
    scales = parse_scales(args.scales, det.config)
    n_cls = background_index(det)
    if getattr(args, "synthetic", None):
        data = _synthetic_detection(args.synthetic, det.config, n_cls, args.seed + 1000)
    else:
        if not os.path.isdir(os.path.join(args.data, "val")):
            raise CLIError(f"{args.data} has no val/ folder to evaluate on")
        data = ImageFolderDataset(args.data, "val")
        if data.num_classes != n_cls:
            raise CLIError(f"the detector has {n_cls} object classes, the data {data.num_classes}")
    m, per_class, curves = evaluate_detection(det, reg, data, scales, args.threshold, args.t,
                                              limit=args.limit, progress=True)
    n = len(data) if args.limit is None else min(args.limit, len(data))
    print(f"{n} images: mAP {m:.4f} (IoU 0.5, VOC all-points AP)")
    for c, ap in per_class.items():
        print(f"  {names[c]}: AP {ap:.4f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "map.json"), "w") as f:
            json.dump({"mAP": m, "AP": {names[c]: ap for c, ap in per_class.items()}, "images": n}, f, indent=1)
        from .showcase import plot_pr_curves

        plot_pr_curves(curves, names, os.path.join(args.out, "pr_curves.png"), per_class,
                       title=f"{n} images: mAP {m:.2f}")
    return 0


@command("evaluate-detection", "mAP of a detector on a data set (Section 5); the same as evaluate --task "
                               "detection, but --regressor is optional (windows as boxes)", add_evaluate_detection_args)
def cmd_evaluate_detection(args):
    return run_evaluate_detection(args)
