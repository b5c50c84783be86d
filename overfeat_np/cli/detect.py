"""Section 5 subcommands: `train-detector`, `detect`, `evaluate-detection`; `run_evaluate_detection`
also serves `overfeat-np evaluate --task detection`.

    overfeat-np train-detector --checkpoint runs/demo/latest.npz --synthetic 400 --out runs/detector
    overfeat-np detect IMAGE... --detector runs/detector/detector.npz --regressor runs/detector/regressor.npz
    overfeat-np evaluate --task detection --detector runs/detector/detector.npz \
        --regressor runs/detector/regressor.npz --synthetic 100   (evaluate-detection: the same)

Files written by train-detector: detector.npz (`serialization.save_weights`; the last class is
background), regressor.npz (`regressor.save_regressor`, trained on the detector's features),
classes.txt (object class names, one per line), log.json (training records).
"""

from __future__ import annotations

import json
import os

from ..data import detection_set, regressor_set
from ..detect import (
    DETECT_METHODS,
    background_index,
    detect,
    detections_to_json,
    evaluate_detection,
)
from ..detect_train import DetectorTrainConfig, make_detector, train_detector
from ..localize import train_regressor
from ..regressor import build_regressor, load_regressor, save_regressor
from ..scales import detection_scales, detector_train_scales
from ..serialization import load_weights, save_weights
from ..showcase import plot_pr_curves, save_detections
from .localize import add_object_size, guided_scales
from .options import (
    add_data,
    add_model_source,
    add_scales,
    add_stride,
    image_folder,
    load_model,
    positive_float,
    read_class_names,
    read_images,
    report_boxes,
    scales_from,
)
from .registry import CLIError, command


def _class_names(args, path, n) -> list:
    """--classes, else classes.txt beside the detector file, else "class i"."""
    src = args.classes or os.path.join(os.path.dirname(os.path.abspath(path)), "classes.txt")
    if args.classes or os.path.isfile(src):
        names = read_class_names(src)
        if len(names) != n:
            raise CLIError(f"{src} has {len(names)} names but the detector has {n} object classes")
        return names
    return [f"class {i}" for i in range(n)]


def _load_detector(args) -> tuple:
    """(detector, regressor or None, object class names) from --detector/--regressor, on args.xp."""
    if not os.path.isfile(args.detector):
        raise CLIError(f"detector file {args.detector} does not exist (write one with overfeat-np train-detector)")
    det = load_weights(args.detector, backend=args.xp)
    reg = load_regressor(args.regressor, det) if args.regressor else None
    return det, reg, _class_names(args, args.detector, background_index(det))


def add_detector_source(p):
    """--detector, --regressor, --classes, --scales, stride, --threshold, --t (detect and evaluation)."""
    p.add_argument("--detector", required=True, help="detector weights (train-detector's detector.npz)")
    p.add_argument("--regressor", help="box regressor trained on the detector (regressor.npz); "
                                       "default: none, the windows are the boxes")
    p.add_argument("--classes", help="object class names, one per line (default: classes.txt beside --detector)")
    add_detection_options(p)


def add_detection_options(p, scales_default="the model's scales.detection_scales"):
    """What `run_evaluate_detection` reads besides the files: --scales, --object-size, stride,
    --threshold, --t, --method."""
    add_scales(p, scales_default)
    add_object_size(p)
    add_stride(p)
    p.add_argument("--threshold", type=float, default=0.5, help="per-location class probability (default 0.5)")
    p.add_argument("--t", type=float, default=0.5, help="merge threshold t (default 0.5)")
    p.add_argument("--method", choices=DETECT_METHODS, default="merge",
                   help="merge: the package's accumulation (default; merge.accumulate: windows weighted by their image area); "
                        "paper: Section 4.3's greedy merge exactly; nms: non-maximum suppression")


# --- detect ----------------------------------------------------------------------------------
def _detect_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_detector_source(p)
    p.add_argument("--min-score", type=float, default=0.0,
                   help="report merged detections from this score (accumulated confidence) up; default 0: all. "
                        "The demo's summary.json lists each class's best-F1 score (detection.best_f1_score)")
    p.add_argument("--out", default=os.path.join("runs", "detect"), help="output folder (default runs/detect)")


@command("detect", "find every object in each image: detections.json and one picture per image", _detect_args)
def cmd_detect(args):
    det, reg, names = _load_detector(args)
    images = read_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for path, image in zip(args.images, images):
        scales = guided_scales(args, det.config, detection_scales(det.config), image.shape[:2])
        dets = [d for d in detect(det, reg, image, scales, args.threshold, args.t, fine_stride=args.fine_stride,
                                  method=args.method)
                if d.score >= args.min_score]
        results.append(detections_to_json(dets, names, path))
        png = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "_detections.png")
        save_detections(image, dets, names, png, title=f"{os.path.basename(path)}: {len(dets)} detections")
        print(f"{path}: " + (", ".join(f"{names[d.cls]} {d.score:.2f} at {[round(v) for v in d.box]}"
                                         for d in dets) or "no detection") + f" -> {png}")
    with open(os.path.join(args.out, "detections.json"), "w") as f:
        json.dump({"scales": [list(s) for s in scales], "threshold": args.threshold, "t": args.t,
                   "method": args.method, "min_score": args.min_score, "images": results}, f, indent=1)
    print(f"wrote {os.path.join(args.out, 'detections.json')}")
    return 0


# --- train-detector ----------------------------------------------------------------------------
def _train_detector_args(p):
    add_model_source(p)
    add_data(p, "ImageNet/VOC-layout folder with boxes (train/ split)",
             "N synthetic detection images (0..3 objects; its regressor also sees N with small objects)",
             loader_options=False)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=positive_float, default=0.03)
    add_scales(p, "the model's scales.detector_train_scales; 96,128,160 for the small model")
    p.add_argument("--regressor-epochs", type=int, default=5, help="box regressor epochs (0: no regressor)")
    add_stride(p, default=False, what="the box regressor's training windows: ")
    p.add_argument("--no-flip", action="store_true",
                   help="no random horizontal flips (digits, text: a mirrored object is another object)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("runs", "detector"))


@command("train-detector", "fine-tune a classifier into a detector (background class, Section 5)",
         _train_detector_args)
def cmd_train_detector(args):
    clf, names = load_model(args)
    n_cls = clf.config.num_classes
    if args.synthetic:
        # Images twice the training size hold 0..3 objects of 0.2-0.45 of the side (about 0.4-0.9 of a window).
        data = detection_set(args.synthetic, args.seed, clf.config.input_size, n_cls)
        names = data.classes
    else:
        data = image_folder(args.data, "train", n_cls, owner="the classifier", outside_boxes=args.outside_boxes)
    tscales = scales_from(args.scales, clf.config, detector_train_scales(clf.config))
    det = make_detector(clf, seed=args.seed)
    cfg = DetectorTrainConfig(scales=tscales, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              seed=args.seed, flip=not args.no_flip)
    hist = train_detector(det, data, cfg, progress=not args.no_progress)
    os.makedirs(args.out, exist_ok=True)
    save_weights(det, os.path.join(args.out, "detector.npz"))
    with open(os.path.join(args.out, "classes.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    log = {"config": vars(cfg), "steps": hist.steps, "images_per_s": hist.images_per_s}
    if args.regressor_epochs > 0:
        reg = build_regressor(det, seed=args.seed)
        # Coarse by default, as the detector was trained: its windows are the ones targets were assigned to.
        # synthetic: the detector's images plus as many with small objects, as the demo does
        rdata = regressor_set(2 * args.synthetic, args.seed, clf.config.input_size, n_cls, "detection") \
            if args.synthetic else data
        rh = train_regressor(det, reg, rdata, tscales, epochs=args.regressor_epochs, fine_stride=args.fine_stride,
                             progress=not args.no_progress)
        save_regressor(reg, os.path.join(args.out, "regressor.npz"))
        log["regressor_losses"] = rh.losses
    with open(os.path.join(args.out, "log.json"), "w") as f:
        json.dump(log, f, indent=1, default=list)
    print(f"detector trained: {cfg.steps} steps, {hist.images_per_s:.1f} images/s, last loss "
          f"{hist.steps[-1]['loss']:.3f}; files in {args.out}")
    report_boxes(data)
    return 0


# --- evaluate-detection (and evaluate --task detection) ------------------------------------------
def _evaluate_detection_args(p):
    add_detector_source(p)
    add_data(p, "ImageNet/VOC-layout folder with boxes (val/ split)", "N synthetic detection images",
             loader_options=False)
    p.add_argument("--seed", type=int, default=0, help="synthetic seed used for training (evaluation uses seed+1000)")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--out", help="folder for pr_curves.png and map.json (default: print only)")


def run_evaluate_detection(args) -> int:
    """mAP of a detector on a data set: prints mAP and per-class AP; --out writes map.json, pr_curves.png."""
    det, reg, names = _load_detector(args)
    n_cls = background_index(det)
    if args.synthetic:
        data = detection_set(args.synthetic, args.seed + 1000, det.config.input_size, n_cls)
    else:
        data = image_folder(args.data, "val", n_cls, owner="the detector", outside_boxes=args.outside_boxes)
    if not len(data):
        raise CLIError("no images to evaluate on")
    scales = guided_scales(args, det.config, detection_scales(det.config), data[0]["image"].shape[:2])
    m, per_class, curves = evaluate_detection(det, reg, data, scales, args.threshold, args.t, limit=args.limit,
                                              progress=not args.no_progress, fine_stride=args.fine_stride,
                                              method=args.method)
    n = len(data) if args.limit is None else min(args.limit, len(data))
    print(f"{n} images at scales {[tuple(s) for s in scales]}, {args.method}: mAP {m:.4f} (IoU 0.5, VOC all-points AP)")
    for c, ap in per_class.items():
        print(f"  {names[c]}: AP {ap:.4f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "map.json"), "w") as f:
            json.dump({"mAP": m, "AP": {names[c]: ap for c, ap in per_class.items()}, "images": n}, f, indent=1)
        plot_pr_curves(curves, names, os.path.join(args.out, "pr_curves.png"), per_class,
                       title=f"{n} images: mAP {m:.2f}")
    report_boxes(data)
    return 0


@command("evaluate-detection", "mAP of a detector on a data set (Section 5); the same as evaluate --task "
                               "detection, but --regressor is optional (windows as boxes)", _evaluate_detection_args)
def cmd_evaluate_detection(args):
    return run_evaluate_detection(args)
