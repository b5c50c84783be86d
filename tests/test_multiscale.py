"""Multi-scale + flip classification, the 10-view baseline and the scale rule (Section 3.3)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.accounting import map_shapes
from overfeat_np.data.transforms import hflip, resize_smallest
from overfeat_np.losses import softmax
from overfeat_np.models import OverFeat, accurate_config, fast_config, small_config
from overfeat_np.multiscale import classify_multiscale, ten_view, ten_views, top_k
from overfeat_np.preprocess import scale_images, to_input
from overfeat_np.scales import (
    SCALES_ACCURATE,
    SCALES_FAST,
    TABLE5_POSITIONS,
    scales_for,
    select_scales,
)
from overfeat_np.viz_dense import save_class_maps


def _model(num_classes=4, seed=0):
    m = OverFeat(small_config(num_classes, width=0.25), seed=seed)
    rng = np.random.default_rng(seed)
    m.load_params({k: rng.normal(0, np.sqrt(2.0 / np.prod(v.shape[1:])) if v.ndim > 1 else 0.1, v.shape)
                   .astype(np.float32) for k, v in m.params.items()})
    return m


def _image(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


# --- scales ------------------------------------------------------------------------------------
def test_scales_accurate_are_table5():
    assert SCALES_ACCURATE == ((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))


@pytest.mark.parametrize("make", [accurate_config, fast_config, small_config])
def test_scale_rule_gives_equal_offsets_and_k_times_positions(make):
    cfg = make()
    k = cfg.convs[-1].pool
    for hw, n in zip(scales_for(cfg), TABLE5_POSITIONS):
        shapes = map_shapes(cfg, hw)
        assert set(shapes["pre_reshape"].values()) == {n}
        assert shapes["final"] == (k * n[0], k * n[1])
    assert scales_for(fast_config()) == SCALES_FAST


def test_select_scales():
    assert select_scales(SCALES_ACCURATE, "1,2,4,6") == tuple(SCALES_ACCURATE[i] for i in (0, 1, 3, 5))
    assert select_scales(SCALES_ACCURATE, [3]) == (SCALES_ACCURATE[2],)
    with pytest.raises(ValueError, match="out of range"):
        select_scales(SCALES_ACCURATE, [0, 7])


@given(h=st.integers(20, 90), w=st.integers(20, 90), color=st.tuples(*[st.integers(0, 255)] * 3))
def test_scaling_never_reads_outside_the_image(h, w, color):
    """A constant image stays exactly constant at every scale: no padding or wrap-around leaks in."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color
    scales = scales_for(small_config())
    for out, hw in zip(scale_images(img, scales), scales):
        want = tuple(sorted(hw, reverse=h > w))  # longer side along the image's longer side
        assert out.shape == (*want, 3) and out.dtype == np.uint8
        assert (out == np.asarray(color, np.uint8)).all()
    for view in ten_views(img, 64):
        assert (view == np.asarray(color, np.uint8)).all()


def test_scale_images_keeps_the_whole_image():
    # Left half red, right half blue: after resizing, both halves are still there, in place.
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :40, 0] = 255
    img[:, 40:, 2] = 255
    for out in scale_images(img, [(88, 104)]):
        assert out[:, :2, 0].min() == 255 and out[:, -2:, 2].min() == 255


def test_hflip_is_a_mirror():
    img = _image(5, 7)
    np.testing.assert_array_equal(hflip(img), img[:, ::-1])
    np.testing.assert_array_equal(hflip(hflip(img)), img)


def test_ten_views_are_corners_centre_and_mirrors():
    img = _image(80, 100)
    views = ten_views(img, 64)
    big, _ = resize_smallest(img, np.zeros((0, 4)), round(64 * 256 / 221))
    h, w = big.shape[:2]
    assert views.shape == (10, 64, 64, 3) and min(h, w) == 74
    np.testing.assert_array_equal(views[0], big[:64, :64])
    np.testing.assert_array_equal(views[3], big[h - 64:, w - 64:])
    np.testing.assert_array_equal(views[4], big[(h - 64) // 2:(h - 64) // 2 + 64, (w - 64) // 2:(w - 64) // 2 + 64])
    np.testing.assert_array_equal(views[5:], views[:5, :, ::-1])
    with pytest.raises(ValueError, match="smaller than"):
        ten_views(img, 64, short_side=60)


# --- classification ----------------------------------------------------------------------------
def test_single_training_scale_equals_plain_forward():
    model, img = _model(), _image(50, 70)
    scores, maps = classify_multiscale(model, img, scales=[(64, 64)], flip=False)
    x = to_input([scale_images(img, [(64, 64)])[0]])
    y, _ = model.forward(x)
    np.testing.assert_allclose(scores, softmax(y)[0], rtol=1e-5, atol=1e-6)
    assert len(maps) == 1 and maps[0].probs.shape == (4, 1, 1)


def test_multiscale_flip_is_mirror_invariant_and_maps_match_shapes():
    model, img = _model(), _image(70, 90, seed=3)
    scales = select_scales(scales_for(model.config), "1,2,4")
    s1, maps = classify_multiscale(model, img, scales=scales)
    s2, _ = classify_multiscale(model, hflip(img), scales=scales)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-6)
    assert [(m.size, m.flipped) for m in maps] == [(hw, f) for hw in scales for f in (False, True)]
    for m in maps:
        assert m.probs.shape[1:] == map_shapes(model.config, m.size)["final"]
        np.testing.assert_allclose(m.probs.sum(axis=0), 1.0, rtol=1e-5)
    # The flipped view's map, mirrored back, is the mirror of the mirrored image's map.
    _, maps2 = classify_multiscale(model, hflip(img), scales=scales)
    np.testing.assert_allclose(maps[1].probs, maps2[0].probs[:, :, ::-1], rtol=1e-4, atol=1e-6)
    assert s1.shape == (4,) and np.all((s1 >= 0) & (s1 <= 1))


def test_ten_view_is_mirror_invariant():
    model, img = _model(), _image(90, 90, seed=5)  # square: 74x74, centre crop symmetric
    p = ten_view(model, img)
    np.testing.assert_allclose(p, ten_view(model, hflip(img)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=20, unique=True), st.integers(1, 6))
def test_top_k(values, k):
    scores = np.asarray(values, np.float32)
    got = top_k(scores, k)
    assert list(got) == list(np.argsort(-scores, kind="stable")[:k])


def test_save_class_maps(tmp_path):
    model, img = _model(), _image(60, 60)
    scores, maps = classify_multiscale(model, img, scales=select_scales(scales_for(model.config), "1,2"))
    cls = save_class_maps(maps, tmp_path / "maps.png", class_names=["a", "b", "c", "d"])
    assert cls == top_k(scores, 1)[0]
    assert (tmp_path / "maps.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no maps"):
        save_class_maps([], tmp_path / "x.png")


def test_bad_image_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        classify_multiscale(_model(), np.zeros((80, 80, 3), np.float32))
