"""SyntheticShapes against a naive reference renderer, bit for bit.

The reference below is the dataset's first implementation: every blob and line tested on the
whole image, bilinear interpolation from each pixel's four grid corners, one random draw per
call, colours painted through boolean masks in (H, W, 3). The package renders the same images
faster (windows, channel planes, grouped draws); test thresholds, the demo's figures and the
lessons' pictures rely on the images staying exactly these.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.data import SyntheticShapes
from overfeat_np.data.synthetic import _CLASSES, CLASS_NAMES


def ref_shape_mask(cls, u, v):
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    name = CLASS_NAMES[cls]
    if name == "disc":
        return r2 <= 1.0
    if name == "square":
        return np.maximum(au, av) <= 0.85
    if name == "triangle":
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
        return np.sqrt(r2) <= 0.55 + 0.42 * np.cos(5 * np.arctan2(v, u))
    if name == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.75 ** 2)
    m = np.maximum(au, av)  # frame
    return (m <= 0.9) & (m >= 0.55)


def ref_upsample(grid, h, w):
    gh, gw = grid.shape[:2]
    y, x = np.linspace(0, gh - 1, h), np.linspace(0, gw - 1, w)
    y0, x0 = np.minimum(y.astype(int), gh - 2), np.minimum(x.astype(int), gw - 2)
    wy, wx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bot = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bot * wy


def dull_colour(rng):
    return rng.uniform(60, 190) + rng.uniform(-18, 18, 3)


def ref_background(rng, h, w):
    img = dull_colour(rng) + ref_upsample(rng.uniform(-30, 30, (4, 4, 3)), h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    side = min(h, w)
    for _ in range(int(rng.integers(2, 7))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.05, 0.3, 2) * side
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        alpha = rng.uniform(0.15, 0.4)
        img[m] = (1 - alpha) * img[m] + alpha * dull_colour(rng)
    for _ in range(int(rng.integers(1, 5))):
        p, q = rng.uniform(0, 1, 2) * (h, w), rng.uniform(0, 1, 2) * (h, w)
        d = q - p
        t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
        dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
        m = dist2 <= (rng.uniform(0.5, 0.03 * side + 1.0)) ** 2
        alpha = rng.uniform(0.15, 0.4)
        img[m] = (1 - alpha) * img[m] + alpha * dull_colour(rng)
    return img + rng.normal(0.0, 6.0, img.shape)


def ref_object(ds, rng, cls):
    h, w = ds.image_size
    size = rng.uniform(ds.min_scale, ds.max_scale) * min(h, w)
    aspect = rng.uniform(0.8, 1.25)
    hx, hy = 0.5 * size * np.sqrt(aspect), 0.5 * size / np.sqrt(aspect)
    theta = np.deg2rad(rng.uniform(-1, 1) * _CLASSES[cls][2])
    c, s = np.cos(theta), np.sin(theta)
    ex, ey = hx * abs(c) + hy * abs(s), hx * abs(s) + hy * abs(c)
    fit = min(1.0, (w / 2 - 0.5) / ex, (h / 2 - 0.5) / ey)
    hx, hy, ex, ey = hx * fit, hy * fit, ex * fit, ey * fit
    cx, cy = rng.uniform(ex, w - ex), rng.uniform(ey, h - ey)
    x0, x1 = max(int(cx - ex) - 1, 0), min(int(cx + ex) + 2, w)
    y0, y1 = max(int(cy - ey) - 1, 0), min(int(cy + ey) + 2, h)
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dx -= cx
    dy -= cy
    u, v = (dx * c + dy * s) / hx, (-dx * s + dy * c) / hy
    local = ref_shape_mask(cls, u, v)
    if not local.any():
        return None
    colour_cls = cls
    if ds.num_classes > 1 and rng.random() < ds.color_swap:
        colour_cls = int((cls + rng.integers(1, ds.num_classes)) % ds.num_classes)
    colour = np.asarray(_CLASSES[colour_cls][1], float) * rng.uniform(0.8, 1.08)
    colour = colour + rng.uniform(-25, 25, 3)
    shading = 1.0 + rng.uniform(-0.15, 0.15) * u + rng.uniform(-0.15, 0.15) * v
    if CLASS_NAMES[cls] == "striped bar":
        shading = shading * np.where(np.floor((u + 1.0) * 3.5) % 2 == 0, 1.0, 0.55)
    patch = colour * shading[..., None] + rng.normal(0.0, 5.0, (y1 - y0, x1 - x0, 3))
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = local
    return mask, patch, (slice(y0, y1), slice(x0, x1))


def box_of(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def cover(a, b):
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def ref_render(ds, i):
    h, w = ds.image_size
    bg, obj = (np.random.default_rng(s) for s in np.random.SeedSequence([ds.seed, i]).spawn(2))
    img = ref_background(bg, h, w)
    count = int(obj.integers(0, ds.max_objects + 1)) if ds.mode == "detection" else 1
    masks, labels, boxes = [], [], []
    for _ in range(count):
        cls = int(obj.integers(ds.num_classes))
        for _attempt in range(20):
            drawn = ref_object(ds, obj, cls)
            if drawn is None:
                continue
            mask, patch, window = drawn
            box = box_of(mask)
            if all(cover(box, b) <= ds.max_overlap for b in boxes):
                break
        else:
            continue
        img[window][mask[window]] = patch[mask[window]]
        masks.append(mask)
        labels.append(cls)
        boxes.append(box)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    masks = np.array(masks, dtype=bool).reshape(-1, h, w)
    order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
    return image, masks[order], np.array(labels, np.int64)[order]


def assert_identical(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@given(st.sampled_from(["classification", "localization", "detection"]),
       st.integers(8, 100), st.integers(8, 100), st.integers(0, 2**32 - 1),
       st.integers(0, 10**6), st.integers(1, 10))
def test_renders_are_bit_identical_to_the_reference(mode, h, w, seed, index, num_classes):
    ds = SyntheticShapes(index + 1, image_size=(h, w), mode=mode, num_classes=num_classes,
                         seed=seed, max_objects=4)
    for i in (index, index // 2, 0):
        image, masks, labels = ds.render(i)
        ref = ref_render(ds, i)
        for got, want in zip((image, masks, labels), ref):
            assert_identical(got, want)
        sample = ds[i]
        assert_identical(sample["image"], ref[0])
        assert_identical(sample["boxes"], np.array([box_of(m) for m in ref[1]],
                                                   np.float32).reshape(-1, 4))
        assert_identical(sample["box_labels"], ref[2])
        assert sample["label"] == (int(ref[2][0]) if len(ref[2]) else -1)
        bg = np.random.default_rng(np.random.SeedSequence([seed, i]).spawn(2)[0])
        assert_identical(ds.background(i),
                         np.clip(np.rint(ref_background(bg, h, w)), 0, 255).astype(np.uint8))


def test_training_images_are_bit_identical_to_the_reference():
    """The images the lessons and the demo train on: 72x72, six classes, seed 0."""
    ds = SyntheticShapes(200, image_size=72, seed=0)
    for i in range(0, 200, 5):
        assert_identical(ds[i]["image"], ref_render(ds, i)[0])
