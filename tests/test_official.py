"""The original `overfeat` command's preprocessing (overfeat_np.data.official): geometry first.

Images whose pixels encode their own coordinates make every crop offset visible exactly; the
resize is checked for ImageMagick's rounding of the longer side and for no half-pixel shift.
"""

import types

import numpy as np
import pytest

from overfeat_np.data.official import (
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    official_crop,
    official_normalize,
    official_preprocess,
    official_resize,
)
from overfeat_np.models import OverFeat, accurate_config, fast_config


def coords_image(h, w):
    """uint8 (h, w, 3): channel 0 = column % 256, channel 1 = row % 256, channel 2 = 7."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w) % 256
    img[..., 1] = (np.arange(h) % 256)[:, None]
    img[..., 2] = 7
    return img


@pytest.mark.parametrize("hw,expected", [
    ((300, 500), (231, 385)),    # 500 * 231 / 300 = 385
    ((640, 480), (308, 231)),    # portrait: 640 * 231 / 480 = 308
    ((462, 693), (231, 347)),    # 346.5 rounds up (ImageMagick's floor(x + 0.5); round() gives 346)
    ((120, 462), (231, 889)),    # enlarging: 462 * 1.925 = 889.35
    ((231, 231), (231, 231)),
])
def test_resize_makes_the_shorter_side_231_with_imagemagick_rounding(hw, expected):
    out = official_resize(np.full((*hw, 3), 90, np.uint8))
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    assert np.all(out == 90)  # a flat image stays flat under any filter


def test_resize_leaves_a_231_image_alone_and_does_not_shift():
    img = coords_image(231, 300)
    assert official_resize(img) is img
    # a ramp of one grey level per column, shrunk 693 -> 347: output column x is centred on input
    # column (x + 0.5) * 693 / 347 - 0.5, which the ramp gives as its value (minus 100) up to the
    # uint8 rounding; a half-pixel shift would be off by a whole grey level
    ramp = np.clip(np.arange(693) - 100, 0, 255).astype(np.uint8)
    out = official_resize(np.broadcast_to(ramp[None, :, None], (462, 693, 3)).copy())
    assert out.shape == (231, 347, 3)
    x = np.arange(60, 170)  # away from the kinks at columns 100 and 355
    np.testing.assert_allclose(out[100, x, 0], (x + 0.5) * 693 / 347 - 0.5 - 100, atol=0.51)


@pytest.mark.parametrize("hw,top,left", [
    ((231, 300), 0, 34),    # (300 - 231) // 2
    ((231, 302), 0, 35),    # 71 / 2 = 35.5, floored
    ((300, 231), 34, 0),
    ((231, 231), 0, 0),
])
@pytest.mark.parametrize("size", [231, 221])
def test_crop_is_the_floor_centre_square_then_its_top_left(hw, top, left, size):
    out = official_crop(coords_image(*hw), size)
    assert out.shape == (size, size, 3)
    np.testing.assert_array_equal(out[0, :, 0], np.arange(left, left + size) % 256)
    np.testing.assert_array_equal(out[:, 0, 1], np.arange(top, top + size) % 256)


def test_preprocess_end_to_end_shapes_and_values():
    img = coords_image(231, 260)  # no resampling, centre offset 14
    fast = official_preprocess(img, fast_config())
    acc = official_preprocess(img, accurate_config())
    assert fast.shape == (1, 3, 231, 231) and acc.shape == (1, 3, 221, 221)
    assert fast.dtype == acc.dtype == np.float32
    np.testing.assert_array_equal(acc, fast[:, :, :221, :221])  # accurate: top-left of the crop
    col = fast[0, 0, 0] * OFFICIAL_STD + OFFICIAL_MEAN
    np.testing.assert_allclose(col, np.arange(14, 245), atol=1e-4)
    np.testing.assert_allclose(fast[0, 2], (7 - 118.380948) / 61.896913, rtol=1e-6)
    # the size may come from a model, a config or an int
    model = types.SimpleNamespace(config=accurate_config())
    np.testing.assert_array_equal(official_preprocess(img, model), acc)
    np.testing.assert_array_equal(official_preprocess(img, 221), acc)
    feats = official_preprocess(img, fast_config(), task="features")  # `overfeat -f`: no resize
    assert feats.shape == (1, 3, 231, 260)
    np.testing.assert_array_equal(feats, official_normalize(img))


def test_accurate_model_reads_only_the_top_left_221_of_a_231_crop():
    """The claim behind cropping 221: at 231 its pooling floors away the last 10 rows/columns."""
    model = OverFeat(accurate_config(5, 1 / 16), seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 231, 231)).astype(np.float32)
    y = x.copy()
    y[:, :, 221:, :] = rng.normal(size=y[:, :, 221:, :].shape)
    y[:, :, :, 221:] = 5.0

    def pooled(inp):
        return model.pool.forward(model.features.forward(inp)[0])[0]

    full, changed, cropped = pooled(x), pooled(y), pooled(np.ascontiguousarray(x[:, :, :221, :221]))
    assert full.shape == cropped.shape == (1, model.pooled_shape[0], 5, 5)
    np.testing.assert_array_equal(full, changed)
    np.testing.assert_allclose(full, cropped, rtol=1e-5, atol=1e-6)
    y[:, :, 220, 220] += 10.0  # the last pixel it does read
    assert not np.array_equal(pooled(y), full)


def test_preprocess_errors():
    with pytest.raises(ValueError, match=r"expected an RGB image \(H, W, 3\), got shape \(4, 5\)"):
        official_preprocess(np.zeros((4, 5), np.uint8), 231)
    with pytest.raises(ValueError, match="task must be 'classify' or 'features'"):
        official_preprocess(coords_image(231, 231), 231, task="detect")
    with pytest.raises(ValueError, match="crops 231x231; a model reading 245x245"):
        official_preprocess(coords_image(231, 231), 245)
    with pytest.raises(ValueError, match="does not fit in the 100x120 image"):
        official_crop(coords_image(100, 120), 221)
