"""Detection speed (Section 5): detect() per image at the small model's scales, detector training images/s.

    python benchmarks/bench_detect.py [--width 1.0] [--images 20] [--steps 30] [--backend numpy]

Untrained weights (timing does not depend on them, except that a trained detector proposes
fewer boxes to merge: `--threshold` is set low so the merge does real work). Set
OPENBLAS_NUM_THREADS=1 on a loaded machine: tiny GEMMs with many threads thrash.
"""

from __future__ import annotations

import argparse
import time

from overfeat_np.data import SyntheticShapes
from overfeat_np.detect import detect
from overfeat_np.detect_train import DetectorTrainConfig, make_detector, train_detector
from overfeat_np.models import he_init, overfeat_small
from overfeat_np.regressor import build_regressor
from overfeat_np.scales import detection_scales


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--backend", default="numpy")
    a = ap.parse_args()
    det = make_detector(he_init(overfeat_small(6, width=a.width, backend=a.backend)))
    reg = build_regressor(det)
    data = SyntheticShapes(max(a.images, 64), image_size=128, mode="detection", seed=0, cache=True, min_scale=0.2)
    scales = detection_scales(det.config)
    images = [data[i]["image"] for i in range(a.images)]
    detect(det, reg, images[0], scales)  # warm-up
    for name, r in (("windows", None), ("regressor", reg)):
        t0 = time.perf_counter()
        n = sum(len(detect(det, r, im, scales, a.threshold)) for im in images)
        dt = (time.perf_counter() - t0) / len(images)
        print(f"detect ({name} boxes), 128x128 image, scales {[s[0] for s in scales]}: "
              f"{1e3 * dt:.1f} ms/image ({n / len(images):.1f} detections/image)")
    cfg = DetectorTrainConfig(steps=3, batch_size=8)
    train_detector(det, data, cfg)  # warm-up
    cfg = DetectorTrainConfig(steps=a.steps, batch_size=8)
    h = train_detector(det, data, cfg)
    print(f"train_detector: {h.images_per_s:.1f} images/s (batch 8, scales {[s[0] for s in cfg.scales]}, "
          f"coarse stride, width {a.width})")


if __name__ == "__main__":
    main()
