"""`overfeat-np demo`: train the small OverFeat on synthetic shapes on a CPU, then show all three tasks.

    run_demo("runs/demo")              # about 45 s on 2 CPU cores (the classifier is most of it)
    run_demo("runs/demo", quick=True)  # about 40 s on 2 cores, for tests and a first look

The demo is a list of parts (`DEMO_PARTS`), each `part(run)` reading and extending one `DemoRun`
(the models trained so far, and the summary):

1. `classification_demo` (Section 3): trains the classifier; curves.png (loss/accuracy),
   filters.png (first-layer filters, as Figure 2), predictions.png, log.jsonl, latest.npz,
   weights.npz.
2. `localization_demo` (Section 4): a box regressor on the classifier's frozen features, trained
   on the synthetic localization set plus as many small objects (`data.regressor_set`);
   localization error with the default accumulation ("merge"), Section 4.3's greedy merge
   ("paper") and NMS against a centre-box guess; regressor.npz.
3. `detection_demo` (Section 5): the classifier plus a background class, fine-tuned spatially on
   the synthetic detection set, and a regressor on its features (that set plus small objects);
   mAP against the classifier used alone; pr_curves.png, detector.npz, detector_regressor.npz, classes.txt.
4. `showcase_demo`: the three tasks on fresh images in one picture, showcase.png.

summary.json collects every part's figures. The synthetic sets come from `data` (`localization_set`,
`detection_set`, `regressor_set`), the ones the CLI builds too. The held-out sets are the ones
`overfeat-np evaluate --synthetic N` builds (seed 1000), so the CLI reproduces the demo's numbers
from its files.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .backend import backend_name, get_backend, to_numpy
from .data import SyntheticShapes, detection_set, localization_set, regressor_set
from .losses import softmax
from .scales import detection_scales, detector_train_scales
from .train import TrainConfig, default_transforms, train
from .viz import plot_predictions, plot_run

INPUT_SIZE = 64  # the small model's training crop
IMAGE_SIZE = 72  # synthetic images are drawn a little larger, so random crops move the object
EVAL_SEED = 1000  # held-out synthetic sets: the seed `overfeat-np evaluate --synthetic N` uses (--seed 0)
# Localization at 64 + (2n - 1) * 8 pixels: exact fine-stride maps of the small model (lesson 06).
LOC_SCALES = ((72, 72), (88, 88), (104, 104), (136, 136))


def best_f1_scores(curves) -> dict:
    """{class: the detection score at which the class's F1 = 2PR / (P + R) on a test set peaks}.

    curves: {class: (precision, recall, thresholds)} from `detect.evaluate_detection`. Classes
    without ground truth or detections are left out. The showcase draws detections from there up:
    mAP ranks every detection, a picture needs one operating point.
    """
    out = {}
    for c, (p, r, thr) in curves.items():
        if len(thr) and not np.isnan(r).all():
            f1 = 2 * p * r / np.maximum(p + r, 1e-12)
            out[int(c)] = float(thr[int(np.argmax(f1))])
    return out


@dataclass
class DemoRun:
    """What the parts share: where and how to run, the models trained so far, the summary."""

    out_dir: str
    quick: bool = False
    xp: object = np  # the array module every model of the run lives on
    progress: bool = True
    summary: dict = field(default_factory=dict)
    classes: list | None = None  # object class names
    classifier: object = None  # models.OverFeat (C classes)
    regressor: object = None  # regressor.Regressor on the classifier's features
    detector: object = None  # models.OverFeat (C + 1 classes, background last)
    det_regressor: object = None  # regressor.Regressor on the detector's features
    det_min_score: dict = field(default_factory=dict)  # {class: merged score drawn from}, `best_f1_scores`

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


def _settings(quick: bool) -> dict:
    # Full: ~1900 classifier steps of batch 32 (~60k crops), 400 detector steps of batch 8 (more
    # steps barely move mAP; 10 regressor epochs instead of 5 lift it from 0.65 to 0.74).
    # Quick: 120 classifier steps and 500 detector steps. With 60 and 300 the quick mAP swung
    # between 0.32 and 0.62 with the BLAS thread count alone (rounding-level differences);
    # 120 and 500 give 0.61-0.62 with 1 or 2 threads, far from the test's bounds.
    if quick:
        return {"train_images": 1280, "val_images": 120, "epochs": 3, "milestones": (2,),
                "loc_images": 200, "loc_val": 40, "loc_scales": LOC_SCALES[::2], "loc_epochs": 30,
                "det_images": 200, "det_steps": 500, "det_reg_epochs": 8, "det_test": 60, "showcase": 3}
    return {"train_images": 6000, "val_images": 600, "epochs": 10, "milestones": (6, 8),
            "loc_images": 400, "loc_val": 100, "loc_scales": LOC_SCALES, "loc_epochs": 60,
            "det_images": 400, "det_steps": 400, "det_reg_epochs": 10, "det_test": 100, "showcase": 4}


def classification_demo(run: DemoRun):
    """Train the small model (Section 3 recipe, scaled down) and plot curves, filters, predictions."""
    s = _settings(run.quick)
    t0 = time.perf_counter()
    train_set = SyntheticShapes(s["train_images"], image_size=IMAGE_SIZE, seed=0, cache=True)
    val_set = SyntheticShapes(s["val_images"], image_size=IMAGE_SIZE, seed=1, cache=True)
    cfg = TrainConfig(model="small", input_size=INPUT_SIZE, epochs=s["epochs"], batch_size=32, lr=5e-2,
                      milestones=s["milestones"], backend=backend_name(run.xp), out_dir=run.out_dir,
                      progress=run.progress, log_every=5 if run.quick else 20)
    transforms = default_transforms(INPUT_SIZE, resize=None)
    history = train(cfg, train_set, val_set, transforms=transforms)
    model = history.model
    plot_run(run.out_dir, model)  # curves.png, filters.png

    n = 24
    images = np.stack([val_set[i]["image"] for i in range(n)])
    labels = np.array([val_set[i]["label"] for i in range(n)])
    x = np.stack([transforms[1](val_set[i])[0] for i in range(n)])  # (n, 3, 64, 64) center crops
    logits, _ = model.forward(run.xp.asarray(x))
    probs = softmax(to_numpy(logits).astype(np.float64))
    plot_predictions(images, labels, probs, val_set.classes, run.path("predictions.png"))
    final = history.final
    run.classifier, run.classes = model, list(val_set.classes)
    run.summary["classification"] = {
        "val_top1": final["val_top1"], "val_top5": final["val_top5"], "steps": history.global_step,
        "train_images": len(train_set), "val_images": len(val_set), "classes": val_set.classes,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return history


def fit_regressor(model, images, quick: bool = False, epochs: int | None = None) -> tuple:
    """The demo's box regressor recipe on `images` (samples with boxes, e.g. `regressor_set`): its
    scales, epochs (or `epochs`) and step size. Returns (regressor, RegressorHistory, number of
    windows). 60 epochs (20 before the small objects joined): twice the windows, half of them small."""
    from .localize import train_regressor, window_samples
    from .regressor import build_regressor

    s = _settings(quick)
    windows = window_samples(model, images, s["loc_scales"])
    reg = build_regressor(model)
    hist = train_regressor(model, reg, windows=windows, epochs=epochs or s["loc_epochs"], lr=0.01, batch_size=128)
    return reg, hist, len(windows)


def localization_demo(run: DemoRun):
    """Section 4: a regressor on the frozen classifier; error of the default accumulation ("merge"),
    Section 4.3's greedy merge ("paper") and NMS vs a centre box."""
    from .localize import centre_box_error, evaluate_localization
    from .regressor import save_regressor

    s, model = _settings(run.quick), run.classifier
    t0 = time.perf_counter()
    n_cls = model.config.num_classes
    # the localization set's objects plus as many small ones (`data.SMALL_OBJECTS`), so the default
    # accumulation can frame objects far smaller than the window (README, "Greedy merge vs NMS")
    reg, hist, n_windows = fit_regressor(model, regressor_set(s["loc_images"], 3, INPUT_SIZE, n_cls), run.quick)
    save_regressor(reg, run.path("regressor.npz"))
    val = localization_set(s["loc_val"], EVAL_SEED, INPUT_SIZE, n_cls)
    err = evaluate_localization(model, reg, val, s["loc_scales"])  # top-5 guesses, IoU >= 0.5 (ILSVRC)
    run.regressor = reg
    run.summary["localization"] = {
        "error_merge": float(err["merge"]), "error_paper": float(err["paper"]), "error_nms": float(err["nms"]),
        "error_centre_box": float(centre_box_error(val)),
        "val_images": len(val), "train_images": s["loc_images"], "windows": n_windows,
        "scales": [list(hw) for hw in s["loc_scales"]], "loss": [float(hist.losses[0]), float(hist.losses[-1])],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def detection_demo(run: DemoRun):
    """Section 5: background class, spatial training with on-the-fly negatives, a regressor, mAP."""
    from .detect import detect_with_classifier, evaluate_detection
    from .detect_train import DetectorTrainConfig, make_detector, train_detector
    from .localize import train_regressor
    from .regressor import build_regressor, save_regressor
    from .serialization import save_weights
    from .showcase import plot_pr_curves

    s, clf = _settings(run.quick), run.classifier
    t0 = time.perf_counter()
    n_cls = clf.config.num_classes
    train_set = detection_set(s["det_images"], 10, INPUT_SIZE, n_cls)
    det = make_detector(clf)
    cfg = DetectorTrainConfig(steps=s["det_steps"], batch_size=8, lr=0.03)
    hist = train_detector(det, train_set, cfg, progress=run.progress)
    reg = build_regressor(det)
    # Coarse stride, as the detector was trained: its windows are the ones the targets were assigned to.
    # The detector's images plus as many with small objects (`data.regressor_set`; the detector
    # itself trains on its own set only).
    train_regressor(det, reg, regressor_set(2 * s["det_images"], 10, INPUT_SIZE, n_cls, "detection"),
                    detector_train_scales(det.config), epochs=s["det_reg_epochs"], fine_stride=False)
    save_weights(det, run.path("detector.npz"))
    save_regressor(reg, run.path("detector_regressor.npz"))
    with open(run.path("classes.txt"), "w") as f:  # `overfeat-np detect` reads it beside detector.npz
        f.write("\n".join(run.classes) + "\n")

    test = detection_set(s["det_test"], EVAL_SEED, INPUT_SIZE, n_cls)
    scales = detection_scales(det.config)
    m, per_class, curves = evaluate_detection(det, reg, test, scales)
    base, _, _ = evaluate_detection(None, None, test, scales,
                                    detect_fn=lambda im: detect_with_classifier(clf, im, scales))
    plot_pr_curves(curves, run.classes, run.path("pr_curves.png"), per_class,
                   title=f"detection on {len(test)} images: mAP {m:.2f} (classifier alone {base:.2f})")
    losses = [r["loss"] for r in hist.steps]  # one record per 10 steps; 3 of them smooth the noise
    run.detector, run.det_regressor, run.det_min_score = det, reg, best_f1_scores(curves)
    run.summary["detection"] = {
        "mAP": float(m), "mAP_classifier_only": float(base),
        "AP": {run.classes[c]: None if np.isnan(ap) else float(ap) for c, ap in per_class.items()},
        "test_images": len(test), "train_images": len(train_set), "steps": cfg.steps,
        "scales": [list(hw) for hw in scales], "loss": [float(np.mean(losses[:3])), float(np.mean(losses[-3:]))],
        "best_f1_score": {run.classes[c]: v for c, v in run.det_min_score.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def showcase_demo(run: DemoRun):
    """Classification, localization and detection of fresh images, one row each: showcase.png."""
    from .showcase import METHOD_LABELS, showcase

    n = _settings(run.quick)["showcase"]
    fresh = detection_set(4 * n, EVAL_SEED + 1000, INPUT_SIZE, run.classifier.config.num_classes)
    samples = [fresh[i] for i in range(len(fresh)) if len(fresh[i]["boxes"])][:n]  # images with objects
    dets = showcase(samples, run.classifier, run.regressor, run.detector, run.path("showcase.png"), run.classes,
                    det_regressor=run.det_regressor, scales=detection_scales(run.classifier.config),
                    min_score=run.det_min_score,
                    caption="OverFeat (small, synthetic shapes): detections drawn from each class's "
                            "best-F1 score on the test set")
    run.summary["showcase"] = {"png": "showcase.png", "images": len(samples),
                               "objects": [len(s["boxes"]) for s in samples],
                               "detections": [len(d) for d in dets], "method": METHOD_LABELS["merge"]}


DEMO_PARTS = [classification_demo, localization_demo, detection_demo, showcase_demo]


def run_demo(out_dir: str = "runs/demo", quick: bool = False, backend="numpy", progress: bool = True) -> dict:
    """Run every part of the demo into `out_dir`; returns (and writes as summary.json) a summary.

    backend: "numpy", "cupy" or the array module itself (the CLI passes the one it resolved).
    """
    xp = get_backend(backend)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    run = DemoRun(out_dir, quick, xp, progress,
                  summary={"out_dir": os.path.abspath(out_dir), "quick": quick, "backend": backend_name(xp)})
    for part in DEMO_PARTS:
        part(run)
    summary = run.summary
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["files"] = sorted(f for f in os.listdir(out_dir) if not f.startswith("."))
    with open(run.path("summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
