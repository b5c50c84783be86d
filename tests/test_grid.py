"""One sliding-window engine: the grid of a dense pass, the shared per-scale pass, scale names."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.accounting import map_shapes
from overfeat_np.data.transforms import hflip
from overfeat_np.dense import dense_forward, dense_outputs, dense_passes, fully_convolutional, infer
from overfeat_np.grid import dense_grid, output_windows, pool_offsets
from overfeat_np.models import (
    OverFeatConfig,
    accurate_config,
    fast_config,
    he_init,
    overfeat_small,
    small_config,
)
from overfeat_np.preprocess import scale_image, to_input
from overfeat_np.scales import (
    PAPER_SCALES,
    detection_scales,
    detector_train_scales,
    parse_scales,
    scales_for,
    select_scales,
)

CONFIGS = [small_config(), small_config(input_size=72), fast_config(), accurate_config()]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.name}-{c.input_size}")
@pytest.mark.parametrize("fine", [True, False])
@given(dh=st.integers(0, 90), dw=st.integers(0, 90))
def test_offsets_own_every_position_exactly_once(config, fine, dh, dw):
    grid = dense_grid(config, (config.input_size + dh, config.input_size + dw), fine)
    owners = np.zeros(grid.shape, int)
    for dx, dy in grid.offsets:
        rows, cols = grid.owned(dx, dy)
        owners[rows, cols] += 1
    assert (owners == 1).all()
    assert len(grid.offsets) == (config.convs[-1].pool ** 2 if fine else 1)
    assert grid.offsets == pool_offsets(grid.k, fine)
    assert grid.shape == map_shapes(config, grid.input_hw, fine)["final"]
    np.testing.assert_array_equal(grid.windows(), output_windows(config, grid.shape, fine))
    assert (grid.windows()[..., 2:] <= np.array(grid.input_hw[::-1], np.float32)).all()


def test_grid_maps_windows_back_to_the_original_image():
    grid = dense_grid(small_config(), (104, 136), image_hw=(52, 34))
    back = grid.windows() * grid.to_image
    np.testing.assert_allclose(back[-1, -1, 2:], [34 * (grid.windows()[-1, -1, 2] / 136),
                                                  52 * (grid.windows()[-1, -1, 3] / 104)], rtol=1e-6)
    assert back[0, 0, 0] == 0 and back[0, 0, 1] == 0


def test_grid_rejects_an_input_smaller_than_the_training_size():
    with pytest.raises(ValueError, match="smaller than the 64x64 training size of small"):
        dense_grid(small_config(), (63, 100))


@pytest.mark.parametrize("fine", [True, False])
def test_dense_passes_feed_every_head_the_maps_dense_forward_sees(fine):
    model = he_init(overfeat_small(4, width=0.5, seed=2))
    net = fully_convolutional(model)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    scales = ((72, 72), (88, 104))
    passes = list(dense_passes(net, image, scales, fine, flip=True))
    assert [p.scale_id for p in passes] == [0, 1]
    for p, hw in zip(passes, scales):
        img = scale_image(image, hw)
        assert p.grid.input_hw == img.shape[:2] and p.grid.image_hw == image.shape[:2]
        expected = dense_forward(model, to_input([img, hflip(img)]), fine)
        np.testing.assert_array_equal(net.outputs(p.unpooled, p.grid), expected)
        np.testing.assert_array_equal(dense_outputs(net.head, p.unpooled, p.grid), expected)


def test_dense_outputs_of_the_whole_net_equal_the_plain_forward_at_the_training_size():
    model = he_init(overfeat_small(3, seed=1))
    x = to_input(np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    net = fully_convolutional(model)
    y = dense_outputs(net.head, infer(net.features, x), dense_grid(model.config, (64, 64)))
    np.testing.assert_allclose(y[:, :, 0, 0], model.forward(x)[0], rtol=1e-5, atol=1e-6)


# --- naming scales ---------------------------------------------------------------------------------
def test_parse_scales_takes_numbers_and_sizes_everywhere():
    cfg = accurate_config()
    table = scales_for(cfg)
    assert parse_scales("1,2,4,6", cfg) == select_scales(table, PAPER_SCALES)
    assert parse_scales("245, 281x317", cfg) == ((245, 245), (281, 317))
    assert parse_scales("6,300x221", cfg) == (table[5], (300, 221))
    small = small_config()
    assert parse_scales("104,136", small) == ((104, 104), (136, 136))
    assert parse_scales("1", small) == (scales_for(small)[0],)


@pytest.mark.parametrize("text, match", [("abc", "cannot read 'abc'"), ("", "empty"), ("7", "neither a scale number"),
                                         ("100x50", "neither a scale number"), ("1x2x3", "neither")])
def test_parse_scales_errors_name_the_accepted_forms(text, match):
    with pytest.raises(ValueError, match=match):
        parse_scales(text, accurate_config())


# --- policy as configuration ------------------------------------------------------------------------
def test_detection_defaults_come_from_the_config():
    small = small_config()
    # the small model's detection sizes are Table 5's rule at 3, 5 and 7 coarse positions
    assert detection_scales(small) == scales_for(small, ((3, 3), (5, 5), (7, 7))) == ((104, 104), (136, 136),
                                                                                       (168, 168))
    assert detector_train_scales(small) == ((96, 96), (128, 128), (160, 160))
    assert detection_scales(fast_config()) == scales_for(fast_config())
    assert detector_train_scales(accurate_config()) == scales_for(accurate_config())
    assert small.weight_init == "he" and fast_config().weight_init == "paper"


def test_config_round_trips_through_json_and_reads_older_files():
    cfg = small_config(5, input_size=72)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert OverFeatConfig.from_dict(d) == cfg
    legacy = {k: v for k, v in d.items() if k not in ("weight_init", "detection_scales", "detector_train_scales")}
    old = OverFeatConfig.from_dict(legacy)
    assert old.weight_init == "he" and old.detection_scales == ()
    with pytest.raises(ValueError, match="weight_init must be 'paper' or 'he'"):
        OverFeatConfig.from_dict({**d, "weight_init": "xavier"})
