"""The preprocessing of the original `overfeat` command, for comparing outputs with the release.

What the release does (its `src/overfeat` script and `overfeatcmd.cpp`):

- classify (`overfeat IMAGE`): ImageMagick `convert IMAGE -resize 231x231^` makes the shorter
  side 231 and the other floor(side * 231 / shorter + 0.5); overfeatcmd then copies the centre
  square (offset floor((longer - shorter) / 2)), i.e. the centre 231x231; RGB in 0..255 becomes
  (x - 118.380948) / 61.896913, one scalar for all channels; the net runs once on that crop
  (coarse stride, one output). The fast model reads all 231x231. The accurate model's layers
  (conv 7/2, pool 3, conv 7, pool 2, three padded 3x3 convs, pool 3) floor away the last 10 rows
  and columns, so it reads only the top-left 221x221, which is what `official_preprocess` feeds.
- features (`overfeat -f IMAGE`): no resize and no crop; the whole image, normalised.

What still differs from the binary, so outputs agree closely but not bit for bit:

- resampling: PIL's Lanczos (shrinking) and bicubic (enlarging) stand in for ImageMagick's
  defaults (Lanczos when shrinking, Mitchell when enlarging); the two Lanczos implementations
  and the JPEG decoders (libjpeg / libjpeg-turbo IDCTs) differ by a grey level or two at edges;
  transparent pixels: load_rgb composites them on white, `convert ... ppm:-` drops alpha.
- ReLU: the original's threshold is 1e-6 (smaller activations become 0), ours is 0: it matters
  only for activations in (0, 1e-6].
- softmax: the original's is an approximation, so its printed probabilities differ in the last
  digits; the ranking only changes between near-ties.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

OFFICIAL_MEAN, OFFICIAL_STD = 118.380948, 61.896913  # one scalar for R, G and B
OFFICIAL_SIZE = 231  # the release resizes the shorter side to this and crops the centre square


def official_resize(image: np.ndarray, size: int = OFFICIAL_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H', W', 3) with min(H', W') = size, as `convert -resize
    {size}x{size}^`: the other side floor(side * size / shorter + 0.5); unchanged when the
    shorter side already is `size`."""
    h, w = image.shape[:2]
    scale = max(size / w, size / h)  # '^': fill the box, so the shorter side decides
    nh, nw = (max(1, math.floor(scale * v + 0.5)) for v in (h, w))  # ImageMagick's rounding
    if (nh, nw) == (h, w):
        return image
    shrink = nh < h or nw < w
    return np.asarray(Image.fromarray(image).resize(
        (nw, nh), Image.LANCZOS if shrink else Image.BICUBIC))


def official_crop(image: np.ndarray, input_size: int = OFFICIAL_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (S, S, 3), S = input_size: the centre square of side min(H, W)
    at floor offsets (overfeatcmd), then its top-left S x S (what the accurate model reads)."""
    h, w = image.shape[:2]
    side = min(h, w)
    if input_size > side:
        raise ValueError(f"official_crop: a {input_size}x{input_size} input does not fit in the "
                         f"{h}x{w} image; resize it first (official_resize)")
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + input_size, left:left + input_size]


def official_normalize(image) -> np.ndarray:
    """uint8/float RGB 0..255 (H, W, 3) -> float32 (1, 3, H, W): (x - 118.380948) / 61.896913."""
    x = np.asarray(image, np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray((x - np.float32(OFFICIAL_MEAN)) / np.float32(OFFICIAL_STD))


def official_preprocess(image: np.ndarray, model, task: str = "classify") -> np.ndarray:
    """An RGB uint8 image (H, W, 3) as the original `overfeat` command feeds it to `model`.

    model: an OverFeat, its config, or the input size S (231 fast, 221 accurate). task:
    "classify" -> float32 (1, 3, S, S): resize the shorter side to 231, centre 231x231 crop,
    its top-left S x S, normalised; "features" (`overfeat -f`) -> float32 (1, 3, H, W): the
    whole image, normalised (run it densely). See the module docstring for what still differs.
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"official_preprocess: expected an RGB image (H, W, 3), got shape "
                         f"{getattr(image, 'shape', None)}; load it with overfeat_np.data.load_rgb")
    if task == "features":
        return official_normalize(image)
    if task != "classify":
        raise ValueError(f"official_preprocess: task must be 'classify' or 'features', got {task!r}")
    config = getattr(model, "config", model)
    size = int(getattr(config, "input_size", config))
    if not 0 < size <= OFFICIAL_SIZE:
        raise ValueError(f"official_preprocess: the release crops {OFFICIAL_SIZE}x{OFFICIAL_SIZE}; "
                         f"a model reading {size}x{size} cannot take it (use the fast or accurate "
                         f"model)")
    return official_normalize(official_crop(official_resize(image), size))
