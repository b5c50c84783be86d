"""Decoding image files into RGB uint8 arrays, with one error type for every bad file."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


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


def load_rgb(path) -> np.ndarray:
    """Decode an image file to a uint8 array (H, W, 3) RGB; raise CorruptImageError if unreadable.

    EXIF orientation is deliberately ignored: ImageNet and VOC boxes are given in the stored
    pixel frame.
    """
    try:
        with Image.open(path) as img:
            img.load()  # forces the full decode, so truncated files fail here and not later
            rgb = to_rgb(img)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(path, str(err)) from err
