"""Host<->device traffic per training step, counted on the CPU double of CuPy (no GPU needed).

    python benchmarks/transfer_counts.py [--steps 6] [--log-every 3] [--width 0.0625]

Prints, for the fast model's training step (`train._train_step`, a narrow fast model at its
full 231x231 input) and the detector's (`detect_train.train_detector`, small model), the
host->device transfers (and bytes), device->host transfers, synchronisations and driver
queries of every step after the first (warm-up). Counts do not depend on the width; bytes do.
"""

from __future__ import annotations

import argparse

from overfeat_np import cupy_double
from overfeat_np.data import SyntheticShapes
from overfeat_np.detect_train import DetectorTrainConfig, make_detector, train_detector
from overfeat_np.models import build_model
from overfeat_np.train import TrainConfig, default_transforms, train

FIELDS = ("to_device", "to_device_bytes", "to_host", "syncs", "driver_queries")


def _row(name, counts):
    return f"{name:<28}" + "".join(f"{counts[f]:>16,}" for f in FIELDS)


def fast_steps(steps: int, log_every: int, width: float, batch: int) -> list:
    """Counter deltas of each training step of the fast model (step 1 included, for reference)."""
    data = SyntheticShapes(batch * steps, image_size=240, seed=0, cache=True)
    cfg = TrainConfig(model="fast", width=width, batch_size=batch, epochs=1, max_steps=steps, milestones=(),
                      backend="cupy", out_dir=None, progress=False, log_every=log_every, eval_every=0)
    marks = []
    cupy_double.COUNTS.reset()
    train(cfg, data, transforms=default_transforms(231, resize=None),
          on_step=lambda _r: marks.append(cupy_double.COUNTS.snapshot()))
    deltas, prev = [], None
    for m in marks:
        deltas.append(m if prev is None else {k: m[k] - prev[k] for k in m})
        prev = m
    return deltas


def detector_per_step(steps: int, width: float, batch: int) -> dict:
    """Counter delta per detector step after warm-up: (run of 1 + steps) minus (run of 1), / steps."""
    data = SyntheticShapes(64, image_size=128, mode="detection", seed=0, cache=True, min_scale=0.2)

    def run(n):
        det = make_detector(build_model("small", 6, width, backend="cupy"))
        cupy_double.COUNTS.reset()
        train_detector(det, data, DetectorTrainConfig(steps=n, batch_size=batch, log_every=10_000))
        return cupy_double.COUNTS.snapshot()

    one, more = run(1), run(1 + steps)
    return {k: (more[k] - one[k]) / steps for k in one}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--log-every", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.0625, help="fast model's width (counts do not depend on it)")
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    with cupy_double.installed():
        print(f"{'':<28}" + "".join(f"{f:>16}" for f in FIELDS))
        for i, d in enumerate(fast_steps(a.steps, a.log_every, a.width, a.batch), 1):
            tag = " (warm-up)" if i == 1 else (" (log step)" if i % a.log_every == 0 else "")
            print(_row(f"fast step {i}{tag}", d))
        print(_row(f"detector, mean of {a.steps} steps", detector_per_step(a.steps, 0.25, a.batch)))


if __name__ == "__main__":
    main()
