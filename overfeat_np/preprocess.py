"""Images into network inputs for dense inference: checks, resizing to a scale, flips, tensors.

Every task that runs the network over whole images (Section 3.3 classification, Section 4
localization, Section 5 detection and its training) prepares them here, so the rule that maps an
image onto a scale, and the boxes along with it, exists once.

Scale rule (`scaled_size`): the whole image is resized to exactly the scale's size, its longer side
along the scale's longer side (a portrait image gets the scale transposed), so every scale is
covered completely, nothing is cropped, and the maps have the sizes `accounting.map_shapes`
predicts. The price is a mild change of aspect ratio (Table 5's scales have ratios 1.0 to 1.24).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize


def check_image(image, who: str = "expected"):
    """Raise ValueError unless `image` is an RGB uint8 array (H, W, 3)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"{who}: expected an RGB uint8 image (H, W, 3), got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}; load it with overfeat_np.data.load_rgb")


def resize(image, hw):
    """Resize a uint8 (H, W, 3) image to exactly hw = (H', W') (PIL bilinear, antialiased when
    shrinking; samples only inside the image, so edges never pull in padding)."""
    h, w = int(hw[0]), int(hw[1])
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def scaled_size(image_hw, scale) -> tuple:
    """The size (H_s, W_s) an (H, W) image takes at `scale`: the scale's sides, the longer one
    along the image's longer side (the module docstring's rule)."""
    lo, hi = sorted(int(v) for v in scale)
    return (hi, lo) if image_hw[0] > image_hw[1] else (lo, hi)


def scale_image(image, scale):
    """uint8 (H, W, 3) -> uint8 (H_s, W_s, 3) at `scaled_size(image.shape[:2], scale)`."""
    return resize(image, scaled_size(image.shape[:2], scale))


def scale_images(image, scales) -> list:
    """The image at every scale: uint8 (H, W, 3) -> list of uint8 (H_s, W_s, 3) (`scale_image`)."""
    check_image(image, "scale_images")
    return [scale_image(image, hw) for hw in scales]


def resize_boxes(boxes, from_hw, to_hw):
    """Boxes (m, 4) of an image of size from_hw moved onto the same image resized to to_hw."""
    fy, fx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    return np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([fx, fy, fx, fy], np.float32)


def to_input(images, mean=None, std=None, xp=np):
    """uint8 images (N, H, W, 3) or list of equal-sized (H, W, 3) -> float32 (N, 3, H, W) on `xp`,
    normalised per channel with mean/std in 0..255 units (default: ImageNet's, as in training)."""
    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    x = np.stack([normalize(im, mean, std) for im in images])
    return x if xp is np else xp.asarray(x)
