"""The accumulation study on images this project did not draw: scikit-learn's handwritten digits
(`load_digits`, 1797 scans of 8x8 pixels, 10 classes) painted onto crops of scikit-image's bundled
photos. Digits are never flipped in training (a mirrored 3 is no digit). Training objects come
from the scans with index % 5 != 0, evaluation objects from the others (unseen handwriting).

Run through `python benchmarks/bench_accumulation.py --digits` (needs the `bench` extra:
scikit-learn, scikit-image). It trains, on one BLAS thread, a small classifier (~2 min; 12
epochs: 76% top-1 on unseen scans, 34% with the 4 it had before), a box regressor on its frozen
features, a detector with a background class and its regressor, then prints the same table as
the synthetic study.
"""

from __future__ import annotations

import os
import time
import typing

import numpy as np
from PIL import Image

from overfeat_np.data import SMALL_OBJECTS, Joined, make_sample
from overfeat_np.data.transforms import EvalTransform, TrainTransform
from overfeat_np.demo import fit_regressor
from overfeat_np.detect_train import DetectorTrainConfig, make_detector, train_detector
from overfeat_np.localize import train_regressor
from overfeat_np.regressor import build_regressor, load_regressor, save_regressor
from overfeat_np.scales import detection_scales, detector_train_scales, scales_for, select_scales
from overfeat_np.serialization import load_weights, save_weights
from overfeat_np.train import TrainConfig, train

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "grass", "gravel", "moon",
          "immunohistochemistry", "clock")


def _photos():
    import skimage.data

    out = []
    for name in PHOTOS:
        im = getattr(skimage.data, name)()
        out.append(np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im[..., :3])
    return out


class DigitScenes:
    """Digits on photo crops in the package's sample format (image, label, boxes, box_labels).

    mode: "classification" / "localization" (one digit) or "detection" (0..3 digits);
    min_scale, max_scale: digit side as a fraction of the image side; split: "train" or "test"
    (disjoint scans).
    """

    _cache: typing.ClassVar[dict] = {}

    def __init__(self, n, image_size, mode, seed, min_scale, max_scale, split="train"):
        from sklearn.datasets import load_digits

        if "digits" not in DigitScenes._cache:
            d = load_digits()
            DigitScenes._cache["digits"] = (d.images.astype(np.float32) / 16, d.target.astype(np.int64))
            DigitScenes._cache["photos"] = _photos()
        images, target = DigitScenes._cache["digits"]
        idx = np.arange(len(images))
        idx = idx[idx % 5 != 0] if split == "train" else idx[idx % 5 == 0]
        self.digits, self.targets = images[idx], target[idx]
        self.photos = DigitScenes._cache["photos"]
        self.n, self.size, self.mode, self.seed = n, image_size, mode, seed
        self.lo, self.hi = min_scale, max_scale
        self.num_classes, self.classes = 10, [str(i) for i in range(10)]
        self._items = {}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i not in self._items:
            self._items[i] = self._render(i)
        return dict(self._items[i])

    def _render(self, i):
        rng = np.random.default_rng([self.seed, i])
        s = self.size
        photo = self.photos[rng.integers(len(self.photos))]
        side = int(rng.integers(min(photo.shape[:2]) // 4, min(photo.shape[:2])))
        y, x = rng.integers(photo.shape[0] - side + 1), rng.integers(photo.shape[1] - side + 1)
        img = np.asarray(Image.fromarray(photo[y:y + side, x:x + side]).resize((s, s), Image.BILINEAR), np.float32)
        count = int(rng.integers(0, 4)) if self.mode == "detection" else 1
        boxes, labels = [], []
        for _ in range(count):
            for _attempt in range(20):
                k = int(rng.integers(len(self.digits)))
                d = round(rng.uniform(self.lo, self.hi) * s)
                d = max(4, min(d, s))
                oy, ox = int(rng.integers(0, s - d + 1)), int(rng.integers(0, s - d + 1))
                alpha = np.asarray(Image.fromarray(self.digits[k]).resize((d, d), Image.BILINEAR), np.float32)
                rows, cols = np.flatnonzero(alpha.max(1) > 0.25), np.flatnonzero(alpha.max(0) > 0.25)
                box = np.array([ox + cols[0], oy + rows[0], ox + cols[-1] + 1, oy + rows[-1] + 1], np.float32)
                if all(_cover(box, b) <= 0.2 for b in boxes):
                    break
            else:
                continue
            under = img[oy:oy + d, ox:ox + d]
            dark = under.mean() > 128  # ink that contrasts with the photo under it
            colour = rng.uniform(0, 60, 3) if dark else rng.uniform(195, 255, 3)
            a = np.clip(alpha * 1.3, 0, 1)[..., None]
            img[oy:oy + d, ox:ox + d] = under * (1 - a) + colour * a
            boxes.append(box)
            labels.append(int(self.targets[k]))
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        b = np.array(boxes, np.float32).reshape(-1, 4)
        lab = np.array(labels, np.int64)
        return make_sample(img, int(lab[0]) if len(lab) else -1, b, lab)


def _cover(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def digits(args, loc_sizes, det_sizes, seeds, localization_rows, detection_rows, print_table):
    """The digits rows of the table. loc_sizes / det_sizes: {name: (lo, hi)} object sizes to run;
    seeds: the (localization, detection) evaluation seeds; the row and table functions are
    bench_accumulation's (passed in, so this module does not import it back)."""
    model, reg, det, dreg = _models(args.cache)

    loc_seed, det_seed = seeds
    evaluation = (loc_seed, det_seed)  # unseen scans; training images and guided scales use the training scans

    def loc_set(n, seed, lo, hi):
        return DigitScenes(n, 64, "localization", seed, lo, hi, "test" if seed in evaluation else "train")

    def det_set(n, seed, lo, hi):
        return DigitScenes(n, 128, "detection", seed, lo, hi, "test" if seed in evaluation else "train")

    fixed = select_scales(scales_for(model.config), (1, 2, 4, 6))
    loc = localization_rows(model, reg, loc_set, loc_sizes, args.images, "1,2,4,6", fixed, loc_seed, args.area_powers,
                            args.fixed_only, args.small_objects)
    det_rows = [] if args.localization_only else detection_rows(
        det, dreg, det_set, det_sizes, args.images, "default", detection_scales(det.config), list(range(10)), det_seed,
        args.area_powers, args.fixed_only)
    print_table("handwritten digits (scikit-learn) on photos (scikit-image)", loc, det_rows)


def _models(cache):
    """(classifier, regressor, detector, detector regressor), trained here or read from `cache`."""
    names = [os.path.join(cache or "", f) for f in ("clf.npz", "reg.npz", "det.npz", "dreg.npz")]
    if cache and all(os.path.isfile(n) for n in names):
        model, det = load_weights(names[0]), load_weights(names[2])
        return model, load_regressor(names[1], model), det, load_regressor(names[3], det)
    t0 = time.perf_counter()
    cfg = TrainConfig(model="small", epochs=12, batch_size=32, lr=0.05, milestones=(8, 11), out_dir=None,
                      progress=False, eval_every=0, blas_threads=1)
    clf_set = DigitScenes(6000, 72, "classification", 0, 0.5, 0.9)
    tf = (TrainTransform(crop=64, resize=None, flip=False), EvalTransform(crop=64, resize=None))
    model = train(cfg, clf_set, transforms=tf).model
    print(f"classifier trained in {time.perf_counter() - t0:.0f} s", flush=True)
    # the regressors as the demo's (`demo.fit_regressor` for localization): their training images
    # plus as many with small objects (`data.SMALL_OBJECTS`, as `data.regressor_set`)
    small = DigitScenes(300, 64, "localization", 4, *SMALL_OBJECTS["localization"])
    reg = fit_regressor(model, Joined(DigitScenes(300, 64, "localization", 3, 0.2, 0.8), small))[0]
    det_train = DigitScenes(400, 128, "detection", 10, 0.2, 0.45)
    det = make_detector(model)
    train_detector(det, det_train, DetectorTrainConfig(steps=400, batch_size=8, lr=0.03, flip=False))
    dreg = build_regressor(det)
    det_small = DigitScenes(400, 128, "detection", 11, *SMALL_OBJECTS["detection"])
    train_regressor(det, dreg, Joined(det_train, det_small), detector_train_scales(det.config), epochs=10,
                    fine_stride=False)
    print(f"models trained in {time.perf_counter() - t0:.0f} s", flush=True)
    if cache:
        os.makedirs(cache, exist_ok=True)
        save_weights(model, names[0])
        save_regressor(reg, names[1])
        save_weights(det, names[2])
        save_regressor(dreg, names[3])
    return model, reg, det, dreg
