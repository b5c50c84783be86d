"""A procedurally generated shapes dataset for classification, localization and detection.

Stands in for ImageNet in tests and lessons: no download, any size, exact boxes. Image `i`
depends only on `(seed, i)` and is drawn on access in about half a millisecond of CPU at 72x72,
40% of it drawing the normal pixel noise. The drawing is kept bit-identical to a naive
reference renderer (tests/test_synthetic_reference.py): every test threshold and picture that
uses these images stays valid.

Each class has its own shape *and* colour; colours are jittered and, with probability
`color_swap`, borrowed from another class, so a model must look at shape as well. Backgrounds
are cluttered with smooth shading, faint low-saturation blobs and lines (never a class colour)
and pixel noise.
"""

from __future__ import annotations

import functools

import numpy as np

from .layout import write_imagenet_layout
from .sample import make_sample

# (name, RGB colour, max rotation in degrees). Rotations are limited where a full turn would
# make one class look like another (a square at 45 degrees is a diamond).
_CLASSES = (
    ("disc", (220, 40, 40), 0),
    ("square", (40, 180, 60), 12),
    ("triangle", (40, 70, 225), 25),
    ("cross", (235, 205, 30), 15),
    ("ring", (205, 45, 200), 0),
    ("striped bar", (30, 200, 215), 180),
    ("diamond", (245, 130, 25), 12),
    ("star", (120, 45, 185), 180),
    ("crescent", (245, 245, 245), 180),
    ("frame", (160, 235, 40), 12),
)
CLASS_NAMES = tuple(c[0] for c in _CLASSES)
MODES = ("classification", "localization", "detection")
# Object size as a fraction of the shorter image side, per mode.
_DEFAULT_SCALES = {"classification": (0.45, 0.85), "localization": (0.2, 0.8),
                   "detection": (0.15, 0.45)}


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of class `cls` in its own frame, the shape filling [-1, 1]^2; u, v (h, w)."""
    name = CLASS_NAMES[cls]
    # Each test computes only the terms it needs (abs, radius) on the object's window.
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if name == "triangle":  # apex up, base at v = 0.85
        return (v <= 0.85) & (v >= -0.95) & (np.abs(u) <= (v + 0.95) * (0.95 / 1.8))
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if name == "striped bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.4)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "star":
        theta = np.arctan2(v, u)
        return np.sqrt(u * u + v * v) <= 0.55 + 0.42 * np.cos(5 * theta)
    if name == "crescent":
        return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.75 ** 2)
    if name == "frame":
        m = np.maximum(np.abs(u), np.abs(v))
        return (m <= 0.9) & (m >= 0.55)
    raise ValueError(f"unknown class {cls}")


@functools.lru_cache(maxsize=16)
def _lerp_weights(n_in: int, n_out: int):
    """Corner-aligned linear interpolation from n_in to n_out points: for each output point the
    lower input index i0 (n_out,) and the weights (1 - f, f) of inputs i0 and i0 + 1 (n_out,)."""
    pos = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(pos.astype(int), n_in - 2)
    f = pos - i0
    for a in (i0, f):
        a.flags.writeable = False  # shared between calls through the cache
    return i0, 1 - f, f


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of grid (gh, gw, c) to planes (c, h, w), corners aligned."""
    gh, gw = grid.shape[:2]
    y0, wy0, wy1 = _lerp_weights(gh, h)
    x0, wx0, wx1 = _lerp_weights(gw, w)
    planes = grid.transpose(2, 0, 1)
    # Interpolate each grid row along x once, (c, gh, w), then blend pairs of rows: per pixel
    # the same operations as interpolating it from its four grid corners.
    rows = np.take(planes, x0, axis=2)
    rows *= wx0
    right = np.take(planes, x0 + 1, axis=2)
    right *= wx1
    rows += right
    out = np.take(rows, y0, axis=1)
    out *= wy0[:, None]
    bot = np.take(rows, y0 + 1, axis=1)
    bot *= wy1[:, None]
    out += bot
    return out


def _blend(window: np.ndarray, mask: np.ndarray, alpha: float, colour: np.ndarray) -> None:
    """Where mask (h, w): window (3, h, w) = (1 - alpha) * window + colour (3,), in place (colour
    already multiplied by alpha)."""
    mixed = window * (1 - alpha)
    mixed += colour[:, None, None]
    np.copyto(window, mixed, where=mask)


def _runs(inside: np.ndarray) -> list:
    """For each row of inside bool (k, n): the slice from its first to its last True, or None."""
    first = inside.argmax(axis=1)
    last = inside.shape[1] - inside[:, ::-1].argmax(axis=1)
    return [slice(a, b) if any_ else None
            for a, b, any_ in zip(first.tolist(), last.tolist(), inside.any(axis=1).tolist())]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and clip float (3, H, W) planes, in place, into a uint8 (H, W, 3) image."""
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.transpose(1, 2, 0).astype(np.uint8, order="C")


def _dull_colour(rng) -> np.ndarray:
    # Low saturation (grey plus a small tint) keeps clutter away from the saturated class colours.
    return rng.uniform(60, 190) + rng.uniform(-18, 18, 3)


class SyntheticShapes:
    """Deterministic synthetic shapes dataset in the package's sample format.

    num_images: dataset length. image_size: int or (H, W). mode: "classification" (one large
    object), "localization" (one object, wider range of scales and positions) or "detection"
    (0..max_objects objects, possibly of different classes). num_classes: 1..10, the first
    classes of CLASS_NAMES. min_scale / max_scale: object size as a fraction of the shorter
    image side (defaults depend on the mode). max_overlap: the largest fraction of the smaller
    of two boxes that may be covered by the other (detection). color_swap: probability that an
    object takes another class's colour. cache: keep generated samples in memory.

    Boxes are the tight bounds of the painted pixels of each object (amodal when objects overlap:
    a later object may hide part of an earlier one). Boxes are sorted by area, largest first, and
    `label` is the class of that largest object (-1 when there is none).
    """

    def __init__(self, num_images: int, image_size=64, mode: str = "classification",
                 num_classes: int = 6, seed: int = 0, max_objects: int = 3,
                 min_scale: float | None = None, max_scale: float | None = None,
                 max_overlap: float = 0.2, color_swap: float = 0.1, cache: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 1 <= num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in 1..{len(CLASS_NAMES)}, got {num_classes}")
        h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if min(h, w) < 8:
            raise ValueError(f"image_size must be at least 8x8, got {h}x{w}")
        lo, hi = _DEFAULT_SCALES[mode]
        self.min_scale = lo if min_scale is None else float(min_scale)
        self.max_scale = hi if max_scale is None else float(max_scale)
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got "
                             f"{self.min_scale}, {self.max_scale}")
        self.num_images = int(num_images)
        self.image_size = (int(h), int(w))
        self.mode = mode
        self.num_classes = int(num_classes)
        self.classes = list(CLASS_NAMES[:num_classes])
        self.seed = int(seed)
        self.max_objects = int(max_objects) if mode == "detection" else 1
        self.max_overlap = float(max_overlap)
        self.color_swap = float(color_swap)
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"SyntheticShapes({self.num_images}, image_size=({h}, {w}), mode={self.mode!r}, "
                f"num_classes={self.num_classes}, seed={self.seed})")

    def __getitem__(self, i: int) -> dict:
        i = self._check_index(i)
        if self._cache is not None and i in self._cache:
            return dict(self._cache[i])
        image, _, labels, boxes = self._render(i)
        sample = make_sample(image, labels[0] if len(labels) else -1, boxes, labels)
        if self._cache is not None:
            self._cache[i] = sample
            sample = dict(sample)
        return sample

    def _check_index(self, i) -> int:
        i = int(i)
        if i < 0:
            i += self.num_images
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {i} out of range for {self.num_images} images")
        return i

    def _rngs(self, i: int):
        # Two independent streams, so the background is the same with or without objects.
        # The streams SeedSequence([seed, i]).spawn(2) gives, without spawn()'s overhead.
        return tuple(np.random.Generator(np.random.PCG64(
            np.random.SeedSequence([self.seed, i], spawn_key=(k,)))) for k in (0, 1))

    def background(self, i: int) -> np.ndarray:
        """The cluttered background of image i before objects are painted: uint8 (H, W, 3)."""
        i = self._check_index(i)
        return _to_uint8(self._background(self._rngs(i)[0]))

    def render(self, i: int):
        """Draw image i. Returns image uint8 (H, W, 3), masks bool (k, H, W), labels int64 (k,).

        masks[j] are the pixels painted for object j (before later objects cover any of them);
        objects are sorted by mask area, largest first.
        """
        image, objects, labels, _ = self._render(self._check_index(i))
        h, w = self.image_size
        masks = np.zeros((len(objects), h, w), bool)
        for m, (inside, y0, x0) in zip(masks, objects):
            m[y0:y0 + inside.shape[0], x0:x0 + inside.shape[1]] = inside
        return image, masks, labels

    def _render(self, i: int):
        """Image i: (image uint8 (H, W, 3), [(inside bool (h, w), y0, x0)] per object, labels
        int64 (k,), boxes float32 (k, 4)), objects sorted by area, largest first."""
        bg_rng, rng = self._rngs(i)
        img = self._background(bg_rng)  # (3, H, W)
        if self.mode == "detection":
            count = int(rng.integers(0, self.max_objects + 1))
        else:
            count = 1
        objects, labels, boxes = [], [], []
        for _ in range(count):
            cls = int(rng.integers(self.num_classes))
            for _attempt in range(20):
                obj = self._draw_object(rng, cls)
                if obj is None:
                    continue
                inside, patch, y0, x0 = obj
                box = _mask_boxes(inside[None], x0, y0)[0]
                if all(_cover(box, b) <= self.max_overlap for b in boxes):
                    break
            else:
                continue  # no free room for this object; the image just has fewer
            oh, ow = inside.shape
            np.copyto(img[:, y0:y0 + oh, x0:x0 + ow], patch, where=inside)
            objects.append((inside, y0, x0))
            labels.append(cls)
            boxes.append(box)
        areas = [int(np.count_nonzero(m)) for m, _, _ in objects]
        order = sorted(range(len(objects)), key=lambda j: -areas[j])  # stable: ties keep order
        return (_to_uint8(img), [objects[j] for j in order],
                np.array([labels[j] for j in order], np.int64),
                np.array([boxes[j] for j in order], np.float32).reshape(-1, 4))

    def _background(self, rng) -> np.ndarray:
        """The background before rounding: float64 (3, H, W), channel planes (so that painting
        through a mask is a plain 2-D masked copy per plane)."""
        h, w = self.image_size
        base = _dull_colour(rng)
        shade = rng.uniform(-30, 30, (4, 4, 3))  # smooth illumination changes
        img = _upsample(shade, h, w)
        img += base[:, None, None]
        # Pixel centres as a column and a row: every blob and line test below is computed only
        # on the sub-window that can hold its pixels, by broadcasting slices of these two.
        yy = np.arange(h) + 0.5
        xx = np.arange(w) + 0.5
        side = min(h, w)
        # Each blob draws cy, cx, ry, rx, alpha and a dull colour (grey + 3 tints); one call for
        # all blobs yields the same numbers in the same order as one call per draw.
        blobs = rng.uniform((0, 0, 0.05, 0.05, 0.15, 60, -18, -18, -18),
                            (h, w, 0.3, 0.3, 0.4, 190, 18, 18, 18),
                            (int(rng.integers(2, 7)), 9))
        cy, cx, alpha = blobs[:, 0:1], blobs[:, 1:2], blobs[:, 4]
        fy = ((yy - cy) / (blobs[:, 2:3] * side)) ** 2  # (blobs, H)
        fx = ((xx - cx) / (blobs[:, 3:4] * side)) ** 2  # (blobs, W)
        colours = blobs[:, 4:5] * (blobs[:, 5:6] + blobs[:, 6:9])
        # Both terms are >= 0, so a pixel inside has each term <= 1: that bounds the window.
        for j, (ys, xs) in enumerate(zip(_runs(fy <= 1.0), _runs(fx <= 1.0))):  # faint blobs
            if ys is not None and xs is not None:
                _blend(img[:, ys, xs], fy[j, ys, None] + fx[j, None, xs] <= 1.0, alpha[j],
                       colours[j])
        # Each line draws its two end points (y, x), radius, alpha and a dull colour.
        lines = rng.uniform((0, 0, 0, 0, 0.5, 0.15, 60, -18, -18, -18),
                            (1, 1, 1, 1, 0.03 * side + 1.0, 0.4, 190, 18, 18, 18),
                            (int(rng.integers(1, 5)), 10))
        ends = lines[:, 0:4] * (h, w, h, w)  # p = ends[:, :2], q = ends[:, 2:]
        radii = lines[:, 4].tolist()
        colours = lines[:, 5:6] * (lines[:, 6:7] + lines[:, 7:10])
        # Pixels within `radius` of the segment lie in its bounding box grown by radius; two
        # more pixels of margin make rounding irrelevant.
        lo = np.floor(np.minimum(ends[:, 0:2], ends[:, 2:4]) - lines[:, 4:5]).astype(int) - 2
        hi = np.ceil(np.maximum(ends[:, 0:2], ends[:, 2:4]) + lines[:, 4:5]).astype(int) + 2
        lo, hi = np.maximum(lo, 0).tolist(), np.minimum(hi, (h, w)).tolist()
        for j, line in enumerate(lines):  # faint lines
            (y0, x0), (y1, x1) = lo[j], hi[j]
            p, q = ends[j, 0:2], ends[j, 2:4]
            d = q - p
            py = yy[y0:y1, None] - p[0]  # (h, 1)
            px = xx[None, x0:x1] - p[1]  # (1, w)
            t = np.clip((py * d[0] + px * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist2 = (py - t * d[0]) ** 2 + (px - t * d[1]) ** 2
            _blend(img[:, y0:y1, x0:x1], dist2 <= radii[j] ** 2, line[5], colours[j])
        # rng.normal(0, 6, (H, W, 3)) is these draws times 6, in (H, W, 3) order.
        noise = rng.standard_normal((h, w, 3))
        noise *= 6.0
        img += noise.transpose(2, 0, 1)
        return img

    def _draw_object(self, rng, cls: int):
        """Place one object. Returns None or (inside bool (h, w), colours float (3, h, w), y0, x0):
        the object's pixels and colours on the window of the image whose top-left is (y0, x0)."""
        h, w = self.image_size
        side = min(h, w)
        size = rng.uniform(self.min_scale, self.max_scale) * side
        aspect = rng.uniform(0.8, 1.25)
        hx, hy = 0.5 * size * np.sqrt(aspect), 0.5 * size / np.sqrt(aspect)
        theta = np.deg2rad(rng.uniform(-1, 1) * _CLASSES[cls][2])
        c, s = np.cos(theta), np.sin(theta)
        # Half extents of the rotated [-1, 1]^2 frame; shrink until it fits in the image.
        ex, ey = hx * abs(c) + hy * abs(s), hx * abs(s) + hy * abs(c)
        fit = min(1.0, (w / 2 - 0.5) / ex, (h / 2 - 0.5) / ey)
        hx, hy, ex, ey = hx * fit, hy * fit, ex * fit, ey * fit
        cx, cy = rng.uniform(ex, w - ex), rng.uniform(ey, h - ey)
        x0, x1 = max(int(cx - ex) - 1, 0), min(int(cx + ex) + 2, w)
        y0, y1 = max(int(cy - ey) - 1, 0), min(int(cy + ey) + 2, h)
        dx = np.arange(x0, x1) + 0.5
        dx -= cx
        dy = np.arange(y0, y1)[:, None] + 0.5
        dy -= cy
        u = (dx * c + dy * s) / hx  # (h, w) by broadcasting the row dx and the column dy
        v = (-dx * s + dy * c) / hy
        local = _shape_mask(cls, u, v)
        if not local.any():
            return None
        colour_cls = cls
        if self.num_classes > 1 and rng.random() < self.color_swap:
            colour_cls = int((cls + rng.integers(1, self.num_classes)) % self.num_classes)
        colour = np.asarray(_CLASSES[colour_cls][1], float) * rng.uniform(0.8, 1.08)
        colour = colour + rng.uniform(-25, 25, 3)
        shading = 1.0 + rng.uniform(-0.15, 0.15) * u + rng.uniform(-0.15, 0.15) * v
        if CLASS_NAMES[cls] == "striped bar":  # the texture is part of the class identity
            shading = shading * np.where(np.floor((u + 1.0) * 3.5) % 2 == 0, 1.0, 0.55)
        noise = rng.standard_normal((y1 - y0, x1 - x0, 3))  # rng.normal(0, 5) / 5, (h, w, 3)
        noise *= 5.0
        patch = colour[:, None, None] * shading
        patch += noise.transpose(2, 0, 1)
        return local, patch, y0, x0

    def write_imagenet_tree(self, root, split: str = "train", **kwargs):
        """Write this dataset as an ImageNet-layout tree; see layout.write_imagenet_layout."""
        return write_imagenet_layout(root, self, split=split, **kwargs)



# --- the synthetic sets the demo, the CLI and the tests share ------------------------------------
EVAL_SEED_OFFSET = 1000  # held-out sets use seed + 1000: `overfeat-np evaluate --synthetic N --seed S`


def classification_sets(n: int, seed: int = 0, input_size: int = 64, num_classes: int = 6) -> tuple:
    """(train, val) of `overfeat-np train --synthetic n`: n images and max(n // 8, 100) held-out ones
    (seed + 1000), drawn 1/8 larger than the crop so training crops can move (Section 3)."""
    size = input_size + input_size // 8
    val = SyntheticShapes(max(n // 8, 100), image_size=size, seed=seed + EVAL_SEED_OFFSET, cache=True,
                          num_classes=num_classes)
    return SyntheticShapes(n, image_size=size, seed=seed, cache=True, num_classes=num_classes), val


def localization_set(n: int, seed: int, input_size: int = 64, num_classes: int = 6,
                     cache: bool = True) -> SyntheticShapes:
    """n single-object images of the model's input size, objects 20-80% of it, with boxes."""
    return SyntheticShapes(n, image_size=input_size, mode="localization", num_classes=num_classes, seed=seed,
                           cache=cache)


def detection_set(n: int, seed: int, input_size: int = 64, num_classes: int = 6,
                  cache: bool = True) -> SyntheticShapes:
    """n images twice the input size with 0..3 objects of 0.2-0.45 of the side (0.4-0.9 of a window)."""
    return SyntheticShapes(n, image_size=2 * input_size, mode="detection", num_classes=num_classes, seed=seed,
                           min_scale=0.2, cache=cache)


SMALL_OBJECTS = {"localization": (0.08, 0.3), "detection": (0.06, 0.2)}
"""Object sides (fractions of the image side) of the small-object half of `regressor_set`: at the
scales that look for them (0.1-0.7 of a window at the localization scales 72-136, 0.1-0.4 at the
detector's 104-168) the regressor learns to frame objects much smaller than its window, which the
sets above, built for the classifier, never show it. Without them it never predicts a box much
below half of its window (README, "Where the default lost, and why")."""


class Joined:
    """The samples of several data sets one after the other, read lazily (no copy)."""

    def __init__(self, *parts):
        if not parts:
            raise ValueError("Joined: pass at least one data set")
        self.parts = parts
        self.num_classes = getattr(parts[0], "num_classes", None)
        self.classes = getattr(parts[0], "classes", None)
        self._ends = np.cumsum([len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        i %= n
        k = int(np.searchsorted(self._ends, i, side="right"))
        return self.parts[k][i - (int(self._ends[k - 1]) if k else 0)]


def regressor_set(n: int, seed: int, input_size: int = 64, num_classes: int = 6, mode: str = "localization",
                  cache: bool = True) -> Joined:
    """n box-regressor training images: n - n // 2 of `localization_set` (mode "localization") or
    `detection_set` ("detection"), then n // 2 whose objects have the `SMALL_OBJECTS` sizes (seed + 1)."""
    if mode not in SMALL_OBJECTS:
        raise ValueError(f"regressor_set: mode must be one of {list(SMALL_OBJECTS)}, got {mode!r}")
    lo, hi = SMALL_OBJECTS[mode]
    main = (localization_set if mode == "localization" else detection_set)(n - n // 2, seed, input_size, num_classes,
                                                                          cache)
    small = SyntheticShapes(n // 2, image_size=main.image_size, mode=mode, num_classes=num_classes, seed=seed + 1,
                            min_scale=lo, max_scale=hi, cache=cache)
    return Joined(main, small)


def _mask_boxes(masks: np.ndarray, x0: int = 0, y0: int = 0) -> np.ndarray:
    """Tight (left, top, right, bottom) boxes, right/bottom exclusive, of masks (k, H, W) whose
    top-left pixel is (y0, x0) of the image."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for j, m in enumerate(masks):  # k is at most a handful; the scans below are vectorised
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        boxes[j] = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
    return boxes


def _cover(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of boxes a, b (4,) over the area of the smaller one."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / smaller)
