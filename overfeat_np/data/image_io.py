"""Decoding image files into RGB uint8 arrays, with one error type for every bad file.

A JPEG much larger than the caller needs can be decoded at 1/2, 1/4 or 1/8 of its size by
libjpeg's DCT scaling (PIL's `Image.draft`), which skips most of the decoding work: pass
`min_side`, the shorter side the next step (resize_smallest) needs. Measured by
benchmarks/bench_loader.py on the seven photos scikit-image ships, JPEG q90, both decodes then
resized to the same smallest-side-256 size: the mean absolute difference is at most 1.35 grey
levels (700x520, drafted 1/2 to 260x350), 0.65 (1024x768, 1/2), 1.00 (1600x1200, 1/4), single
edge pixels up to ~40. DRAFT_TOLERANCE is the bound the tests and the benchmark hold it to.
Decode + resize + crop of a 1600x1200 photo is then about 3x faster (bench_loader.py).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
# Mean absolute difference (0..255 units) allowed between draft-decoded and fully decoded images,
# both resized to the same size; see the module docstring.
DRAFT_TOLERANCE = 2.0


class CorruptImageError(OSError, ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image).

    Subclasses both OSError (what PIL raises) and ValueError (bad data), so either `except`
    catches it. `path` names the file.
    """

    def __init__(self, path, reason: str = ""):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path}" + (f": {reason}" if reason else ""))

    def __reduce__(self):
        # Exceptions raised in loader worker processes are pickled back to the parent.
        return (type(self), (self.path, self.reason))


def is_image_file(name: str) -> bool:
    """True when `name` ends in .jpeg/.jpg/.png, any case."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_hw(image) -> tuple[int, int]:
    """(H, W) of an (H, W, 3) array or a PIL image."""
    return (image.size[1], image.size[0]) if isinstance(image, Image.Image) else image.shape[:2]


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, P, CMYK, RGBA, LA, I;16, ...) to RGB.

    Transparent pixels are composited onto white, which is how browsers show them.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Wide-range grayscale: rescale to 8 bits rather than letting PIL clip at 255.
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.size and a.max() > 0 else 1.0
        img = Image.fromarray(np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def open_rgb(path, min_side: int | None = None) -> tuple[Image.Image, float]:
    """Decode an image file to a loaded RGB PIL image, a large JPEG possibly at a reduced size.

    min_side: the shorter side the caller will resize to, or None for a full decode. A JPEG whose
    shorter side is at least 2 * min_side is decoded by DCT scaling at the smallest of 1/2, 1/4,
    1/8 that keeps its shorter side >= min_side; anything else is decoded in full. Returns
    (image, scale): scale (1, 1/2, 1/4 or 1/8) maps the stored image's pixel coordinates (boxes)
    to the returned image's. Raises CorruptImageError if the file cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            scale = 1.0
            if min_side and img.format == "JPEG" and min(img.size) >= 2 * min_side:
                width = img.size[0]
                # PIL takes s = min(W // min_side, H // min_side) rounded down to 1, 2, 4 or 8,
                # and libjpeg returns ceil(W / s) x ceil(H / s): never below min_side.
                drafted = img.draft("RGB", (min_side, min_side))
                if drafted is not None:
                    scale = drafted[1][2] / width  # box (0, 0, W / s, H / s) in stored pixels
            img.load()  # forces the full decode, so truncated files fail here and not later
            return to_rgb(img), scale  # loaded: usable after the file closes
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(path, str(err)) from err


def decode_rgb(path, min_side: int | None = None) -> tuple[np.ndarray, float]:
    """Decode an image file to uint8 (H, W, 3) RGB, a large JPEG possibly at a reduced size.

    Returns (image, scale); min_side, scale and errors: see open_rgb.
    """
    rgb, scale = open_rgb(path, min_side)
    return np.asarray(rgb, dtype=np.uint8).copy(), scale


def load_rgb(path, min_side: int | None = None) -> np.ndarray:
    """Decode an image file to a uint8 array (H, W, 3) RGB; raise CorruptImageError if unreadable.

    min_side: see decode_rgb (a large JPEG may come back smaller, shorter side >= min_side).
    EXIF orientation is deliberately ignored: ImageNet and VOC boxes are given in the stored
    pixel frame.
    """
    return decode_rgb(path, min_side)[0]
