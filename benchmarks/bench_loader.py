"""Throughput of overfeat_np.data.DataLoader (images/s) with 0, 1, 2, ... worker processes.

(a) SyntheticShapes at 64x64, random 56x56 crops and flips (images drawn on the fly);
(b) an ImageNet-layout tree of JPEGs written to a temporary folder, decoded, resized to smallest
    side 256, randomly cropped to 231x231 and flipped, as in Section 3 of the paper.

Usage: python benchmarks/bench_loader.py [--images 500] [--workers 0 1 2] [--batch-size 32]
                                        [--step-ms 0]
Worker start-up time is reported separately and not counted in the throughput. --step-ms makes
the consumer sleep that long per batch, standing in for a training step on a GPU: with workers
the loading then overlaps it, without them it adds to it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from overfeat_np.data import (
    DataLoader,
    ImageFolderDataset,
    SyntheticShapes,
    TrainTransform,
    write_imagenet_layout,
)


def measure(dataset, transform, batch_size, num_workers, epochs, step_s=0.0):
    """(start-up seconds, images/s over `epochs` full epochs) for one loader configuration."""
    with DataLoader(dataset, batch_size, transform, num_workers=num_workers, seed=0) as loader:
        t0 = time.perf_counter()
        for _ in loader.batches(0, start_batch=len(loader) - 1):  # starts the workers
            pass
        startup = time.perf_counter() - t0
        images = 0
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            for batch in loader.batches(epoch):
                images += len(batch["indices"])
                time.sleep(step_s)
        return startup, images / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=500, help="JPEGs in the ImageNet-layout tree")
    p.add_argument("--synthetic-images", type=int, default=2048)
    p.add_argument("--height", type=int, default=300)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per configuration")
    p.add_argument("--step-ms", type=float, default=0.0,
                   help="simulated training step per batch (sleep), overlapped by workers")
    args = p.parse_args(argv)

    rows = []
    synth = SyntheticShapes(args.synthetic_images, image_size=64, num_classes=10)
    for w in args.workers:
        rows.append(("synthetic 64x64 -> crop 56", w,
                     *measure(synth, TrainTransform(56, resize=None), args.batch_size, w,
                              args.epochs, args.step_ms / 1e3)))

    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        source = SyntheticShapes(args.images, image_size=(args.height, args.width),
                                 mode="localization", num_classes=10, seed=1)
        write_imagenet_layout(root, source, "train")
        size_mb = sum(os.path.getsize(os.path.join(d, f))
                      for d, _, files in os.walk(os.path.join(root, "train")) for f in files) / 1e6
        print(f"wrote {args.images} JPEGs of {args.height}x{args.width} ({size_mb:.1f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
        folder = ImageFolderDataset(root, "train")
        name = f"JPEG {args.height}x{args.width} -> 256 -> crop 231"
        for w in args.workers:
            rows.append((name, w, *measure(folder, TrainTransform(231, resize=256),
                                           args.batch_size, w, args.epochs,
                                           args.step_ms / 1e3)))

    print(f"\nbatch size {args.batch_size}, simulated step {args.step_ms:g} ms, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| {'dataset':<36} | workers | start-up s | images/s |")
    print(f"|{'-' * 38}|---------|------------|----------|")
    for name, w, startup, rate in rows:
        print(f"| {name:<36} | {w:>7} | {startup:>10.2f} | {rate:>8.0f} |")


if __name__ == "__main__":
    main()
