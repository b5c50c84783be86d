"""Time localization (Section 4) with the small model: prediction per image and regressor training.

    python benchmarks/bench_localize.py                   # numpy, small model width 1, 4 scales
    python benchmarks/bench_localize.py --width 0.5 --images 20 --backend cupy

Prediction: `predict_boxes` (features once per scale, classifier and regressor at every pooling
offset, top-5 classes) + `greedy_merge` (and NMS for comparison), on 64x64 synthetic images
resized to the small model's Table-5-rule scales 1, 2, 4, 6 (72x72 ... 168x232). Training:
windows per second of `train_regressor` on cached features, and the time to compute those
features (images per second). Untrained weights: the cost does not depend on their values,
except for the merge, which is timed on the boxes of an untrained model (many weak boxes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from overfeat_np.backend import get_backend
from overfeat_np.data import SyntheticShapes
from overfeat_np.localize import merge_predictions, predict_boxes, train_regressor, window_samples
from overfeat_np.models import overfeat_small
from overfeat_np.regressor import build_regressor
from overfeat_np.scales import scales_for, select_scales


def _sync(xp):
    if xp.__name__.startswith("cupy"):
        xp.cuda.Stream.null.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--images", type=int, default=10, help="images to predict (after one warm-up)")
    ap.add_argument("--train-images", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--scales", default="1,2,4,6")
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args(argv)
    xp = get_backend(args.backend)
    model = overfeat_small(num_classes=6, width=args.width, backend=args.backend)
    reg = build_regressor(model)
    scales = select_scales(scales_for(model.config), args.scales)
    data = SyntheticShapes(args.images + 1, image_size=64, mode="localization", seed=1)
    images = [data[i]["image"] for i in range(len(data))]
    print(f"small model width {args.width}, {args.backend}, scales {list(scales)}")

    predict_boxes(model, reg, images[0], scales)  # warm-up
    times = {"predict_boxes": [], "greedy_merge": [], "nms (baseline)": []}
    n_boxes = 0
    for img in images[1:]:
        t0 = time.perf_counter()
        pred = predict_boxes(model, reg, img, scales)
        _sync(xp)
        t1 = time.perf_counter()
        merge_predictions(pred, method="merge")
        t2 = time.perf_counter()
        merge_predictions(pred, method="nms")
        t3 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(dt)
        n_boxes += len(pred.boxes)
    # best and median over images: the best is robust to other processes sharing the CPU
    print(f"{len(images) - 1} images, {n_boxes / (len(images) - 1):.0f} boxes/image; ms/image best (median)")
    for key, ts in times.items():
        print(f"  {key:<16} {1e3 * min(ts):8.1f} ({1e3 * np.median(ts):.1f})")
    total = [a + b for a, b in zip(times["predict_boxes"], times["greedy_merge"])]
    print(f"  {'localize total':<16} {1e3 * min(total):8.1f} ({1e3 * np.median(total):.1f})")

    train_set = SyntheticShapes(args.train_images, image_size=64, mode="localization", seed=2)
    windows = window_samples(model, train_set, scales)
    _sync(xp)
    print(f"window_samples: {args.train_images * len(scales) / windows.seconds:8.1f} image-scales/s "
          f"({len(windows)} windows from {args.train_images} images, {windows.seconds:.2f} s)")
    per_img = len(windows) / args.train_images
    best = 0.0
    for _ in range(args.epochs):  # one epoch per run, best of: robust to other load
        hist = train_regressor(model, reg, windows=windows, epochs=1, batch_size=128)
        _sync(xp)
        best = max(best, hist.windows_per_second)
    print(f"train_regressor: {best:8.0f} windows/s = {best / per_img:.0f} images/s (all scales; "
          f"{per_img:.0f} windows/image; best of {args.epochs} epochs of {hist.steps} steps)")
    return 0


if __name__ == "__main__":
    main()
