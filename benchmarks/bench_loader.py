"""Image loading speed on real photos: per core, with JPEG draft decoding, and through DataLoader.

Photos: the seven natural images scikit-image ships (astronaut, chelsea, coffee, rocket,
hubble_deep_field, immunohistochemistry, retina; no download), cut to 4:3 and resized with
Lanczos to 500x375 (ImageNet's typical size) and, as 2x2 mosaics of 800x600 tiles (so no source is
enlarged more than 1.8x), to 1600x1200; saved as JPEG quality 90, alternate ones mirrored.

(a) per core: decode + TrainTransform(231, resize=256) (smallest side 256, random 231 crop, flip,
    normalise) in this process, one image at a time; full decode vs decode_min_side=256 (draft:
    DCT scaling at 1/4 for 1600x1200; 500x375 is less than twice 256 and decodes in full). Images
    per second of this process's CPU time (what one core delivers, even on a shared machine) and
    of wall time; best of --repeats passes.
(b) draft accuracy: mean absolute difference (0..255) between the draft and the full decode,
    both resized to the same smallest-side-256 size, per photo, at 700x520 (1/2), 1024x768 (1/2)
    and 1600x1200 (1/4); bound: image_io.DRAFT_TOLERANCE.
(c) DataLoader over an ImageFolderDataset of the photos, with draft decoding, batch 32, with
    0, 1, 2, ... worker processes; and SyntheticShapes 64x64 (drawn, not decoded) for reference.

Usage: pip install -e ".[bench]"; python benchmarks/bench_loader.py [--images 112]
       [--workers 0 1 2] [--batch-size 32] [--repeats 3] [--step-ms 0]
Worker start-up time is reported separately and not counted in the throughput. --step-ms makes
the consumer sleep that long per batch, standing in for a training step on a GPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from overfeat_np.data import DataLoader, ImageFolderDataset, SyntheticShapes, TrainTransform
from overfeat_np.data.image_io import DRAFT_TOLERANCE, decode_rgb
from overfeat_np.data.transforms import resize_smallest

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")


def load_photos() -> list:
    """The bundled scikit-image photos, uint8 (H, W, 3) each."""
    try:
        from skimage import data
    except ImportError:
        raise SystemExit('this benchmark builds its JPEGs from scikit-image\'s photos: '
                         'pip install -e ".[bench]"') from None
    return [getattr(data, name)() for name in PHOTOS]


def fit(photo, h, w, flip=False) -> np.ndarray:
    """The centre of `photo` at aspect w/h, resized (Lanczos) to uint8 (h, w, 3)."""
    ph, pw = photo.shape[:2]
    ch, cw = (ph, round(ph * w / h)) if pw * h >= ph * w else (round(pw * h / w), pw)
    top, left = (ph - ch) // 2, (pw - cw) // 2
    img = Image.fromarray(photo[top:top + ch, left:left + cw]).resize((w, h), Image.LANCZOS)
    out = np.asarray(img)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def make_image(photos, k, h, w) -> np.ndarray:
    """Image k of size (h, w): one photo, or for large sizes a 2x2 mosaic of four."""
    flip = (k // len(photos)) % 2 == 1
    if h <= 600:
        return fit(photos[k % len(photos)], h, w, flip)
    tiles = [fit(photos[(k + j) % len(photos)], h // 2, w // 2, flip) for j in range(4)]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def write_tree(root, photos, n, h, w) -> float:
    """An ImageNet-layout train/ tree of n JPEGs (q90) in 4 classes; returns bytes per pixel."""
    size = 0
    for k in range(n):
        folder = os.path.join(root, "train", f"n{90000000 + k % 4:08d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"img_{k:05d}.JPEG")
        Image.fromarray(make_image(photos, k, h, w)).save(path, quality=90)
        size += os.path.getsize(path)
    return size / (n * h * w)


def per_core(dataset, transform, repeats) -> tuple:
    """Best (images per CPU second, images per wall second) of decode + transform over the whole
    dataset, in this process. CPU time is what one core delivers even when other processes share
    the machine (they slow the wall clock, not this process's CPU time)."""
    rng = np.random.default_rng(0)
    best_cpu = best_wall = 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(len(dataset)):
            transform(dataset[i], rng)
        best_cpu = max(best_cpu, len(dataset) / (time.process_time() - c0))
        best_wall = max(best_wall, len(dataset) / (time.perf_counter() - t0))
    return best_cpu, best_wall


def draft_differences(photos) -> list:
    """(size, scale, [mean |draft - full| per photo]) at sizes that draft at 1/2 and 1/4."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.jpg")
        for h, w in ((520, 700), (768, 1024), (1200, 1600)):
            diffs = []
            for photo in photos:
                Image.fromarray(fit(photo, h, w)).save(path, quality=90)
                full, _ = decode_rgb(path)
                small, scale = decode_rgb(path, 256)
                a, _ = resize_smallest(full, np.zeros((0, 4)), 256)
                b = np.asarray(Image.fromarray(small).resize(a.shape[1::-1], Image.BILINEAR))
                diffs.append(float(np.abs(a.astype(np.float64) - b).mean()))
            rows.append((f"{w}x{h}", scale, diffs))
    return rows


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
    p.add_argument("--images", type=int, default=112, help="JPEGs per size (a multiple of 14 "
                   "uses every photo both ways round equally)")
    p.add_argument("--synthetic-images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=3, help="per-core passes; the best is kept")
    p.add_argument("--epochs", type=int, default=1, help="timed loader epochs per configuration")
    p.add_argument("--step-ms", type=float, default=0.0,
                   help="simulated training step per batch (sleep), overlapped by workers")
    args = p.parse_args(argv)

    photos = load_photos()
    load_before = os.getloadavg()[0]
    transform = TrainTransform(231, resize=256)
    core_rows, loader_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in ((375, 500), (1200, 1600)):
            root = os.path.join(tmp, f"{w}x{h}")
            bpp = write_tree(root, photos, args.images, h, w)
            print(f"wrote {args.images} JPEGs of {w}x{h}, q90, {bpp:.2f} bytes/pixel")
            for min_side in (None, 256):
                ds = ImageFolderDataset(root, "train", with_boxes=False, decode_min_side=min_side)
                core_rows.append((f"{w}x{h}", "draft" if min_side else "full",
                                  *per_core(ds, transform, args.repeats)))
            ds = ImageFolderDataset(root, "train", with_boxes=False, decode_min_side=256)
            for nw in args.workers:
                loader_rows.append((f"JPEG {w}x{h} -> 256 -> 231, draft", nw,
                                    *measure(ds, transform, args.batch_size, nw, args.epochs,
                                             args.step_ms / 1e3)))
    synth = SyntheticShapes(args.synthetic_images, image_size=64, num_classes=10)
    for nw in args.workers:
        loader_rows.append(("synthetic 64x64 -> crop 56", nw,
                            *measure(synth, TrainTransform(56, resize=None), args.batch_size, nw,
                                     args.epochs, args.step_ms / 1e3)))
    diffs = draft_differences(photos)

    print(f"\n{os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (1 min)\n")
    print("(a) per core: decode + resize 256 + random crop 231 + flip + normalise, one process "
          "(500x375 is less than twice 256: 'draft' decodes it in full too)")
    print("| photos    | decode | images per CPU s | images per wall s |")
    print("|-----------|--------|------------------|-------------------|")
    for size, mode, cpu, wall in core_rows:
        print(f"| {size:<9} | {mode:<6} | {cpu:>16.0f} | {wall:>17.0f} |")
    print(f"\n(b) mean |draft - full| after resizing both to smallest side 256 "
          f"(0..255; bound {DRAFT_TOLERANCE:g}), per photo: {', '.join(PHOTOS)}")
    for size, scale, d in diffs:
        print(f"  {size:<9} scale 1/{round(1 / scale)}: max {max(d):.2f}, mean {np.mean(d):.2f} "
              f"({' '.join(f'{v:.2f}' for v in d)})")
    print(f"\n(c) DataLoader, batch size {args.batch_size}, simulated step {args.step_ms:g} ms")
    print(f"| {'dataset':<36} | workers | start-up s | images/s | per worker |")
    print(f"|{'-' * 38}|---------|------------|----------|------------|")
    for name, nw, startup, rate in loader_rows:
        per = f"{rate / nw:>10.0f}" if nw else f"{'-':>10}"
        print(f"| {name:<36} | {nw:>7} | {startup:>10.2f} | {rate:>8.0f} | {per} |")
    worst = max(max(d) for _, _, d in diffs)
    if worst > DRAFT_TOLERANCE:
        raise SystemExit(f"draft decoding differs by {worst:.2f} > {DRAFT_TOLERANCE:g} on a photo")


if __name__ == "__main__":
    main()
