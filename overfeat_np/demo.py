"""`overfeat-np demo`: train the small OverFeat on synthetic shapes on a CPU and draw what it learned.

    run_demo("runs/demo")              # a few minutes on 2 CPU cores
    run_demo("runs/demo", quick=True)  # ~20 s, for tests and a first look

Writes into out_dir: curves.png (loss/accuracy), filters.png (first-layer filters, as the
paper's Figure 2), predictions.png (held-out images with predicted labels), log.jsonl,
latest.npz (checkpoint), weights.npz, summary.json.

The demo is a list of parts (`DEMO_PARTS`), each `part(out_dir, quick, backend, summary)` adding
its results to the summary dict; later parts (localization, detection) append themselves.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .backend import to_device, to_numpy
from .data import SyntheticShapes
from .train import TrainConfig, default_transforms, train
from .viz import plot_predictions

INPUT_SIZE = 64  # the small model's training crop
IMAGE_SIZE = 72  # synthetic images are drawn a little larger, so random crops move the object


def _settings(quick: bool) -> dict:
    # Full: ~1900 steps of batch 32 (~60k crops); quick: 60 steps, enough to leave chance behind.
    if quick:
        return {"train_images": 640, "val_images": 120, "epochs": 3, "milestones": (2,)}
    return {"train_images": 6000, "val_images": 600, "epochs": 10, "milestones": (6, 8)}


def classification_demo(out_dir: str, quick: bool, backend: str, summary: dict, progress: bool = True):
    """Train the small model (Section 3 recipe, scaled down) and plot curves, filters, predictions."""
    s = _settings(quick)
    train_set = SyntheticShapes(s["train_images"], image_size=IMAGE_SIZE, seed=0, cache=True)
    val_set = SyntheticShapes(s["val_images"], image_size=IMAGE_SIZE, seed=1, cache=True)
    cfg = TrainConfig(model="small", input_size=INPUT_SIZE, epochs=s["epochs"], batch_size=32, lr=5e-2,
                      milestones=s["milestones"], backend=backend, out_dir=out_dir, progress=progress,
                      log_every=5 if quick else 20)
    transforms = default_transforms(INPUT_SIZE, resize=None)
    history = train(cfg, train_set, val_set, transforms=transforms)
    model = history.model

    n = 24
    images = np.stack([val_set[i]["image"] for i in range(n)])
    labels = np.array([val_set[i]["label"] for i in range(n)])
    x = np.stack([transforms[1](val_set[i])[0] for i in range(n)])  # (n, 3, 64, 64) center crops
    logits, _ = model.forward(to_device(x, backend))
    logits = to_numpy(logits).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    plot_predictions(images, labels, probs, val_set.classes, os.path.join(out_dir, "predictions.png"))
    final = history.final
    summary["classification"] = {
        "val_top1": final["val_top1"], "val_top5": final["val_top5"], "steps": history.global_step,
        "train_images": len(train_set), "val_images": len(val_set), "classes": val_set.classes,
    }
    return history


DEMO_PARTS = [classification_demo]


def run_demo(out_dir: str = "runs/demo", quick: bool = False, backend: str = "numpy",
             progress: bool = True) -> dict:
    """Run every part of the demo into `out_dir`; returns (and writes as summary.json) a summary."""
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    summary = {"out_dir": os.path.abspath(out_dir), "quick": quick, "backend": backend}
    for part in DEMO_PARTS:
        part(out_dir, quick, backend, summary, progress=progress)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["files"] = sorted(f for f in os.listdir(out_dir) if not f.startswith("."))
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
