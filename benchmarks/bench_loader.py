"""Image loading speed on real photos: per core, with JPEG draft decoding, and through DataLoader.

Photos: the seven natural images scikit-image ships (astronaut, chelsea, coffee, rocket,
hubble_deep_field, immunohistochemistry, retina; no download), cut to 4:3 and resized with
Lanczos to 500x375 (ImageNet's typical size) and, as 2x2 mosaics of 800x600 tiles (so no source is
enlarged more than 1.8x), to 1600x1200; saved as JPEG quality 90, alternate ones mirrored.

(a) per core: decode + TrainTransform(231, resize=256).as_uint8() (smallest side 256, random
    231 crop, flip; uint8, as training's loader ships it: batches are normalised on the model's
    device) in this process, one image at a time; decoded in full or with decode_min_side=256
    (draft: DCT scaling at 1/4 for 1600x1200; 500x375 is less than twice 256 and decodes in full);
    the crop resampled from the window only (`resized_crop`, what the transforms do), from the
    decoded PIL image itself ("window, PIL": `ImageFolderDataset(pil_images=True)`, what the
    CLI's loaders use) or from an array copy of it ("window"), or, for comparison, the whole
    image resized and then cropped ("resize, crop": the code before). Images per second
    of this process's CPU time (what one core delivers, even on a shared machine) and of wall
    time, best of --repeats passes, with decode and transform also timed on their own.
(b) draft accuracy: mean absolute difference (0..255) between the draft and the full decode,
    both resized to the same smallest-side-256 size, per photo, at 700x520 (1/2), 1024x768 (1/2)
    and 1600x1200 (1/4); bound: image_io.DRAFT_TOLERANCE.
(c) DataLoader over an ImageFolderDataset of the photos, with draft decoding, batch 32, with
    0, 1, 2, ... worker processes; and SyntheticShapes 64x64 (drawn, not decoded) for reference.

Usage: pip install -e ".[bench]"; python benchmarks/bench_loader.py [--images 112] [--sizes 500x375]
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
from overfeat_np.data.transforms import crop, random_offset, resize_smallest

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")


def pil_build() -> str:
    """Which PIL decodes and resamples: Pillow, or the SIMD build pillow-simd (same API)."""
    from importlib import metadata

    import PIL

    try:
        metadata.version("pillow-simd")
        return f"pillow-simd {PIL.__version__}"
    except metadata.PackageNotFoundError:
        return f"Pillow {PIL.__version__}"


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


class ResizeThenCrop:
    """The transforms' pipeline before `resized_crop`: the whole image resized to smallest side
    256, then the random crop cut from it, then the flip; uint8 (3, h, w). Same rng draws."""

    def __init__(self, size=231, resize=256):
        self.size, self.resize = size, resize

    def __call__(self, sample, rng):
        image, boxes = resize_smallest(sample["image"], sample["boxes"], self.resize)
        top, left = random_offset(*image.shape[:2], self.size, rng)
        image, boxes = crop(image, boxes, top, left, self.size, self.size)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        return np.ascontiguousarray(image.transpose(2, 0, 1)), boxes, sample["box_labels"]


def best_rate(fn, n, repeats) -> tuple:
    """Best (calls per CPU second, calls per wall second) of `fn` run over range(n)."""
    best_cpu = best_wall = 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            fn(i)
        best_cpu = max(best_cpu, n / (time.process_time() - c0))
        best_wall = max(best_wall, n / (time.perf_counter() - t0))
    return best_cpu, best_wall


def per_core(dataset, transform, repeats) -> tuple:
    """(images per CPU second, per wall second) of decode + transform over the whole dataset in
    this process, then images per CPU second of the decode alone and of the transform alone (on
    images decoded beforehand). CPU time is what one core delivers even when other processes
    share the machine (they slow the wall clock, not this process's CPU time)."""
    rng = np.random.default_rng(0)
    n = len(dataset)
    both = best_rate(lambda i: transform(dataset[i], rng), n, repeats)
    decode = best_rate(lambda i: dataset[i], n, repeats)[0]
    samples = [dataset[i] for i in range(n)]
    alone = best_rate(lambda i: transform(samples[i], rng), n, repeats)[0]
    return (*both, decode, alone)


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
    p.add_argument("--sizes", nargs="+", default=["500x375", "1600x1200"],
                   help="photo sizes WxH to write and time")
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
    transform = TrainTransform(231, resize=256).as_uint8()  # what training's loader runs
    core_rows, loader_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in (map(int, size.split("x")) for size in args.sizes):
            root = os.path.join(tmp, f"{w}x{h}")
            bpp = write_tree(root, photos, args.images, h, w)
            print(f"wrote {args.images} JPEGs of {w}x{h}, q90, {bpp:.2f} bytes/pixel")
            for min_side in (None, 256):
                for name, t, pil in (("resize, crop", ResizeThenCrop(), False),
                                     ("window", transform, False), ("window, PIL", transform, True)):
                    ds = ImageFolderDataset(root, "train", with_boxes=False,
                                            decode_min_side=min_side, pil_images=pil)
                    core_rows.append((f"{w}x{h}", "draft" if min_side else "full", name,
                                      *per_core(ds, t, args.repeats)))
            ds = ImageFolderDataset(root, "train", with_boxes=False, decode_min_side=256,
                                    pil_images=True)  # as the CLI's loaders
            for nw in args.workers:
                loader_rows.append((f"JPEG {w}x{h} -> 256 -> 231, draft", nw,
                                    *measure(ds, transform, args.batch_size, nw, args.epochs,
                                             args.step_ms / 1e3)))
    synth = SyntheticShapes(args.synthetic_images, image_size=64, num_classes=10)
    for nw in args.workers:
        loader_rows.append(("synthetic 64x64 -> crop 56", nw,
                            *measure(synth, TrainTransform(56, resize=None).as_uint8(), args.batch_size, nw,
                                     args.epochs, args.step_ms / 1e3)))
    diffs = draft_differences(photos)

    print(f"\n{os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (1 min); {pil_build()}\n")
    print("(a) per core: decode + resize 256 + random crop 231 + flip, uint8, one process "
          "(500x375 is less than twice 256: 'draft' decodes it in full too); 'window': only the "
          "crop is resampled (resized_crop; 'PIL': from the decoded PIL image, no array copy), "
          "'resize, crop': the whole image, then the crop (before)")
    print("| photos    | decode | resample     | images per CPU s | per wall s | decode alone "
          "| transform alone |")
    print("|-----------|--------|--------------|------------------|------------|--------------"
          "|-----------------|")
    for size, mode, how, cpu, wall, dec, tr in core_rows:
        print(f"| {size:<9} | {mode:<6} | {how:<12} | {cpu:>16.0f} | {wall:>10.0f} | {dec:>12.0f} "
              f"| {tr:>15.0f} |")
    print("(decode alone / transform alone: images per CPU s of each step by itself)")
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
