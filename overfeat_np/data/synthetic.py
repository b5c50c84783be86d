"""A procedurally generated shapes dataset for classification, localization and detection.

Stands in for ImageNet in tests and lessons: no download, any size, exact boxes. Image `i`
depends only on `(seed, i)` and is drawn on access in about a millisecond at 64x64.

Each class has its own shape *and* colour; colours are jittered and, with probability
`color_swap`, borrowed from another class, so a model must look at shape as well. Backgrounds
are cluttered with smooth shading, faint low-saturation blobs and lines (never a class colour)
and pixel noise.
"""

from __future__ import annotations

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
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    name = CLASS_NAMES[cls]
    if name == "disc":
        return r2 <= 1.0
    if name == "square":
        return np.maximum(au, av) <= 0.85
    if name == "triangle":  # apex up, base at v = 0.85
        return (v <= 0.85) & (v >= -0.95) & (au <= (v + 0.95) * (0.95 / 1.8))
    if name == "cross":
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if name == "striped bar":
        return (au <= 1.0) & (av <= 0.4)
    if name == "diamond":
        return au + av <= 1.0
    if name == "star":
        theta = np.arctan2(v, u)
        return np.sqrt(r2) <= 0.55 + 0.42 * np.cos(5 * theta)
    if name == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.75 ** 2)
    if name == "frame":
        m = np.maximum(au, av)
        return (m <= 0.9) & (m >= 0.55)
    raise ValueError(f"unknown class {cls}")


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of grid (gh, gw, c) to (h, w, c), corners aligned."""
    gh, gw = grid.shape[:2]
    y = np.linspace(0, gh - 1, h)
    x = np.linspace(0, gw - 1, w)
    y0 = np.minimum(y.astype(int), gh - 2)
    x0 = np.minimum(x.astype(int), gw - 2)
    wy = (y - y0)[:, None, None]
    wx = (x - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bot = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bot * wy


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
        image, masks, labels = self.render(i)
        sample = make_sample(image, labels[0] if len(labels) else -1,
                             _mask_boxes(masks), labels)
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
        bg, obj = np.random.SeedSequence([self.seed, i]).spawn(2)
        return np.random.default_rng(bg), np.random.default_rng(obj)

    def background(self, i: int) -> np.ndarray:
        """The cluttered background of image i before objects are painted: uint8 (H, W, 3)."""
        i = self._check_index(i)
        return np.clip(np.rint(self._background(self._rngs(i)[0])), 0, 255).astype(np.uint8)

    def render(self, i: int):
        """Draw image i. Returns image uint8 (H, W, 3), masks bool (k, H, W), labels int64 (k,).

        masks[j] are the pixels painted for object j (before later objects cover any of them);
        objects are sorted by mask area, largest first.
        """
        i = self._check_index(i)
        bg_rng, rng = self._rngs(i)
        img = self._background(bg_rng)
        h, w = self.image_size
        if self.mode == "detection":
            count = int(rng.integers(0, self.max_objects + 1))
        else:
            count = 1
        masks, labels, boxes = [], [], []
        for _ in range(count):
            cls = int(rng.integers(self.num_classes))
            for _attempt in range(20):
                obj = self._draw_object(rng, cls)
                if obj is None:
                    continue
                mask, patch, window = obj
                box = _mask_boxes(mask[None])[0]
                if all(_cover(box, b) <= self.max_overlap for b in boxes):
                    break
            else:
                continue  # no free room for this object; the image just has fewer
            img[window][mask[window]] = patch[mask[window]]
            masks.append(mask)
            labels.append(cls)
            boxes.append(box)
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks = np.array(masks, dtype=bool).reshape(-1, h, w)
        labels = np.array(labels, dtype=np.int64)
        order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
        return image, masks[order], labels[order]

    def _background(self, rng) -> np.ndarray:
        h, w = self.image_size
        base = _dull_colour(rng)
        shade = rng.uniform(-30, 30, (4, 4, 3))  # smooth illumination changes
        img = base + _upsample(shade, h, w)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        side = min(h, w)
        for _ in range(int(rng.integers(2, 7))):  # faint blobs
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.05, 0.3, 2) * side
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            alpha = rng.uniform(0.15, 0.4)
            img[m] = (1 - alpha) * img[m] + alpha * _dull_colour(rng)
        for _ in range(int(rng.integers(1, 5))):  # faint lines
            p = rng.uniform(0, 1, 2) * (h, w)
            q = rng.uniform(0, 1, 2) * (h, w)
            d = q - p
            t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
            m = dist2 <= (rng.uniform(0.5, 0.03 * side + 1.0)) ** 2
            alpha = rng.uniform(0.15, 0.4)
            img[m] = (1 - alpha) * img[m] + alpha * _dull_colour(rng)
        img += rng.normal(0.0, 6.0, img.shape)
        return img

    def _draw_object(self, rng, cls: int):
        """Place one object. Returns None or (mask bool (H, W), colours float (h, w, 3) of the
        object's window, the window as a pair of slices)."""
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
        dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
        dx -= cx
        dy -= cy
        u = (dx * c + dy * s) / hx
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
        patch = colour * shading[..., None] + rng.normal(0.0, 5.0, (y1 - y0, x1 - x0, 3))
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = local
        return mask, patch, (slice(y0, y1), slice(x0, x1))

    def write_imagenet_tree(self, root, split: str = "train", **kwargs):
        """Write this dataset as an ImageNet-layout tree; see layout.write_imagenet_layout."""
        return write_imagenet_layout(root, self, split=split, **kwargs)


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight (left, top, right, bottom) boxes, right/bottom exclusive, of masks (k, H, W)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for j, m in enumerate(masks):  # k is at most a handful; the scans below are vectorised
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        boxes[j] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _cover(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of boxes a, b (4,) over the area of the smaller one."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / smaller)
