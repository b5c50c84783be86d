"""Where the outputs of a dense pass look: the grid of one image at one scale (Section 3.3).

Run densely on an (H, W) image, an OverFeat gives one output per `stride` pixels: the coarse
`total_stride` (fast 32, accurate 36), or with fine stride (the last k x k pooling taken at every
offset) total_stride / k (16, 12). Output (i, j) is the network applied to the training-size
window whose top-left corner is (j, i) * stride. Every task that slides the network (Section 3.3
classification, Section 4 localization, Section 5 detection and its training) reads its windows,
its pooling offsets and the crop of its maps from one `DenseGrid`, built by `dense_grid`.

Offsets: at fine stride the k*k offsets (dx, dy) of the last pooling each own the output
positions (i, j) with i % k == dy and j % k == dx (`DenseGrid.owned`); at coarse stride the one
offset (0, 0) owns them all. This is geometry only: host arrays, no weights, no compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def output_stride(config, fine_stride: bool = True) -> int:
    """Input pixels between neighbouring outputs: total_stride / k (fine) or total_stride (coarse)."""
    k = config.convs[-1].pool
    return config.total_stride // k if fine_stride else config.total_stride


def num_windows(config, input_hw, fine_stride: bool = True) -> tuple:
    """Training-size windows that fit in an (H, W) image at the output stride, per axis."""
    s, i = output_stride(config, fine_stride), config.input_size
    return tuple((int(n) - i) // s + 1 for n in input_hw)


def output_windows(config, map_hw, fine_stride: bool = True):
    """Input window seen by each output location: (H', W', 4) float32 (left, top, right, bottom).

    Location (i, j) sees the training-size square whose top-left corner is (j, i) * stride; right
    and bottom are exclusive (the `overfeat_np.data` box convention).
    """
    return _windows(map_hw, output_stride(config, fine_stride), config.input_size)


def _windows(map_hw, stride: int, size: int):
    top = np.arange(int(map_hw[0]), dtype=np.float32)[:, None] * stride
    left = np.arange(int(map_hw[1]), dtype=np.float32)[None, :] * stride
    top, left = np.broadcast_arrays(top, left)
    return np.stack([left, top, left + size, top + size], axis=-1).astype(np.float32)


def pool_offsets(k: int, fine_stride: bool = True) -> list:
    """The offsets (dx, dy) of a k x k last pooling that a pass evaluates: all k*k at fine stride
    (rows of dy, dx fastest), else only (0, 0)."""
    return [(dx, dy) for dy in range(k) for dx in range(k)] if fine_stride else [(0, 0)]


@dataclass(frozen=True)
class DenseGrid:
    """One dense pass over one image at one scale: output positions, offsets, stride, windows.

    input_hw is the (resized) image the network sees; image_hw the original image its boxes are
    reported in (equal when nothing was resized).
    """

    input_hw: tuple  # (H, W) of the network's input
    image_hw: tuple  # (h, w) of the original image
    shape: tuple  # (H', W') output positions whose window lies inside the input
    stride: int  # input pixels between neighbouring outputs
    k: int  # size of the last pooling; the offsets are 0..k-1 per axis at fine stride
    window: int  # side of the training-size window every output sees
    fine_stride: bool

    @property
    def offsets(self) -> list:
        """The pooling offsets (dx, dy) this pass evaluates (`pool_offsets`)."""
        return pool_offsets(self.k, self.fine_stride)

    @property
    def step(self) -> int:
        """Output positions between two positions of one offset: k at fine stride, else 1."""
        return self.k if self.fine_stride else 1

    def owned(self, dx: int, dy: int) -> tuple:
        """Slices (rows, columns) of the output map that offset (dx, dy) computes."""
        return slice(dy, None, self.step), slice(dx, None, self.step)

    def windows(self):
        """(H', W', 4) float32 window of every output, in input pixels (`output_windows`)."""
        return _windows(self.shape, self.stride, self.window)

    def image_windows(self):
        """(H', W', 4) float32 window of every output, in the original image's pixels."""
        return self.windows() * self.to_image

    @property
    def to_image(self):
        """(4,) float32 factors taking (left, top, right, bottom) from input to original pixels."""
        (h, w), (hs, ws) = self.image_hw, self.input_hw
        return np.array([w / ws, h / hs, w / ws, h / hs], np.float32)

    def crop(self, maps):
        """maps (..., >= H', >= W') -> (..., H', W'): drop positions whose window leaves the input."""
        qh, qw = self.shape
        if maps.shape[-2] == qh and maps.shape[-1] == qw:
            return maps
        return maps[..., :qh, :qw]


def dense_grid(config, input_hw, fine_stride: bool = True, image_hw=None) -> DenseGrid:
    """The grid of a dense pass of a `config` network over an input_hw = (H, W) image.

    image_hw: the original image's (h, w) when input_hw is a resized copy (default: the same).
    """
    hw = tuple(int(v) for v in input_hw)
    s = config.input_size
    if hw[0] < s or hw[1] < s:
        raise ValueError(f"input {hw[0]}x{hw[1]} is smaller than the {s}x{s} training size of "
                         f"{config.name}; resize it so both sides are >= {s}")
    return DenseGrid(hw, tuple(int(v) for v in (image_hw or hw)), num_windows(config, hw, fine_stride),
                     output_stride(config, fine_stride), config.convs[-1].pool, s, bool(fine_stride))
