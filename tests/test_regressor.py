"""The box regressor of Section 4: targets, the <50% mask, SCR/PCR loss, gradients, dense == per window."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.boxes import decode_relative, iou
from overfeat_np.dense import infer
from overfeat_np.gradcheck import check_layer_gradients
from overfeat_np.grid import dense_grid, output_windows
from overfeat_np.localize import window_samples
from overfeat_np.models import ConvSpec, OverFeat, OverFeatConfig, overfeat_small
from overfeat_np.regressor import (
    MIN_OVERLAP,
    build_regressor,
    class_outputs,
    dense_regress,
    load_regressor,
    regression_loss,
    regression_targets,
    regressor_hidden,
    save_regressor,
    window_overlap,
)

# A net without zero padding, so a window's crop gives exactly the dense output (Section 3.3):
# 14x14 input -> conv 3 -> 12 -> pool 2 -> 6 -> conv 3 -> 4 -> pool 2 -> 2x2 pooled map.
TINY = OverFeatConfig("tiny", input_size=14, convs=(ConvSpec(4, 3, 1, 0, 2), ConvSpec(6, 3, 1, 0, 2)),
                      hidden=(8, 8), num_classes=3)


def _box(draw, lo=0, hi=60, min_size=1):
    x0, y0 = draw(st.integers(lo, hi - min_size)), draw(st.integers(lo, hi - min_size))
    return [x0, y0, draw(st.integers(x0 + min_size, hi)), draw(st.integers(y0 + min_size, hi))]


@st.composite
def box_and_windows(draw):
    box = _box(draw)
    wins = [_box(draw, min_size=2) for _ in range(draw(st.integers(1, 6)))]
    return np.array(box, np.float32), np.array(wins, np.float32)


# --- architecture ---------------------------------------------------------------------------------
def test_head_sizes_follow_section4_and_the_model_width():
    assert regressor_hidden(TINY) == (8, 2)
    from overfeat_np.models import accurate_config, fast_config, small_config
    assert regressor_hidden(fast_config()) == (4096, 1024)
    assert regressor_hidden(accurate_config()) == (4096, 1024)
    assert regressor_hidden(small_config()) == (128, 32)
    assert regressor_hidden(fast_config(width=0.5)) == (2048, 512)
    model = overfeat_small(num_classes=4, width=0.25)
    for per_class, out in ((False, 4), (True, 16)):
        reg = build_regressor(model, per_class=per_class)
        c, f, _ = model.pooled_shape
        assert reg.head.layers[0].kernel_size == (f, f) == (3, 3)
        assert reg.head.output_shape((c, f, f)) == (out, 1, 1)


# --- targets and the mask --------------------------------------------------------------------------
@given(box_and_windows())
def test_targets_decode_back_to_the_box(bw):
    box, wins = bw
    targets, labels, mask = regression_targets(wins, box[None], np.array([2]), min_overlap=0.0)
    np.testing.assert_allclose(decode_relative(targets, wins), np.broadcast_to(box, wins.shape), atol=1e-3)
    assert mask.all() and (labels == 2).all()


@given(box_and_windows())
def test_overlap_is_the_fraction_of_box_pixels_inside_the_window(bw):
    box, wins = bw
    grid = np.zeros((60, 60), bool)
    x0, y0, x1, y1 = box.astype(int)
    grid[y0:y1, x0:x1] = True
    want = []
    for wl, wt, wr, wb in wins.astype(int):  # reference: count pixels on a grid
        want.append(grid[wt:wb, wl:wr].sum() / grid.sum())
    np.testing.assert_allclose(window_overlap(wins, box[None])[:, 0], want, atol=1e-6)
    _, labels, mask = regression_targets(wins, box[None], np.array([1]))
    np.testing.assert_array_equal(mask, np.array(want) >= MIN_OVERLAP)
    np.testing.assert_array_equal(labels, np.where(mask, 1, -1))


def test_mask_keeps_a_small_box_inside_a_window_that_iou_would_reject():
    window = np.array([[0, 0, 64, 64]], np.float32)
    small = np.array([[20, 20, 36, 36]], np.float32)  # wholly inside, 1/16 of the window
    assert iou(window, small)[0, 0] < MIN_OVERLAP
    assert regression_targets(window, small)[2][0]
    half_out = np.array([[50, 20, 80, 36]], np.float32)  # 14 of 30 columns inside: < 50%
    assert not regression_targets(window, half_out)[2][0]


def test_each_window_takes_the_box_it_sees_most_of():
    wins = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    boxes = np.array([[0, 0, 8, 8], [22, 2, 28, 8]], np.float32)
    targets, labels, mask = regression_targets(wins, boxes, np.array([4, 7]))
    assert mask.all()
    np.testing.assert_array_equal(labels, [4, 7])
    np.testing.assert_allclose(decode_relative(targets, wins), boxes, atol=1e-5)


# --- loss: SCR and PCR ------------------------------------------------------------------------------
def test_pcr_trains_only_the_ground_truth_class_outputs(rng):
    n, c = 7, 5
    pred = rng.standard_normal((n, 4 * c)).astype(np.float32)
    targets = rng.standard_normal((n, 4)).astype(np.float32)
    labels = rng.integers(0, c, n)
    loss, d = regression_loss(pred, targets, labels)
    d = d.reshape(n, c, 4)
    other = np.ones((n, c), bool)
    other[np.arange(n), labels] = False
    assert np.all(d[other] == 0)
    # the selected outputs get exactly the SCR gradient of those 4 numbers
    scr_loss, scr_d = regression_loss(class_outputs(pred, labels), targets)
    assert loss == pytest.approx(scr_loss)
    np.testing.assert_array_equal(d[np.arange(n), labels], scr_d)
    # and through the whole head: the output layer's weight rows of other classes stay untouched
    model = overfeat_small(num_classes=c, width=0.25)
    reg = build_regressor(model, per_class=True)
    x = rng.standard_normal((n, *model.pooled_shape)).astype(np.float32)
    y, cache = reg.head.forward(x, train=True)
    _, dpred = regression_loss(y.reshape(n, -1), targets, labels)
    _, grads = reg.head.backward(dpred.reshape(y.shape), cache)
    gw = grads["4.W"].reshape(c, 4, -1)
    trained = np.unique(labels)
    untrained = np.setdiff1d(np.arange(c), trained)
    assert np.all(gw[untrained] == 0) and np.all(np.abs(gw[trained]).sum(axis=(1, 2)) > 0)


def test_masked_windows_do_not_count(rng):
    pred = rng.standard_normal((6, 4)).astype(np.float32)
    targets = rng.standard_normal((6, 4)).astype(np.float32)
    mask = np.array([1, 0, 1, 0, 0, 1], np.float32)
    loss, d = regression_loss(pred, targets, mask=mask)
    keep = mask > 0
    assert np.all(d[~keep] == 0)
    assert loss == pytest.approx(0.5 * ((pred - targets)[keep] ** 2).sum() / keep.sum(), rel=1e-5)


def test_pcr_without_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="needs labels"):
        regression_loss(np.zeros((2, 8), np.float32), np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("per_class", [False, True])
def test_regressor_head_gradients(per_class):
    model = OverFeat(TINY, seed=0)
    reg = build_regressor(model, per_class=per_class, seed=1, init="he")
    x = np.random.default_rng(0).standard_normal((3, *model.pooled_shape))
    check_layer_gradients(reg.head, x, check_input=False)


# --- dense form ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fine_stride", [True, False])
def test_dense_regressor_equals_the_regressor_on_each_window_crop(fine_stride, rng):
    model = OverFeat(TINY, seed=0)
    reg = build_regressor(model, per_class=True, seed=2, init="he")
    image = rng.standard_normal((1, 3, 24, 22)).astype(np.float32)
    dense = dense_regress(reg, infer(model.features, image), dense_grid(model.config, (24, 22), fine_stride))
    wins = output_windows(model.config, dense.shape[2:], fine_stride).astype(int)
    for i in range(dense.shape[2]):
        for j in range(dense.shape[3]):
            left, top, right, bottom = wins[i, j]
            pooled, _ = model.forward_features(image[:, :, top:bottom, left:right])
            y, _ = reg.head.forward(pooled)
            np.testing.assert_allclose(dense[0, :, i, j], y[0, :, 0, 0], rtol=1e-4, atol=1e-5)
    assert dense.shape[2:] == ((24 - 14) // (2 if fine_stride else 4) + 1, (22 - 14) // (2 if fine_stride else 4) + 1)


def test_cached_training_windows_are_the_dense_outputs(rng):
    """window_samples' patches through the head give the dense regressor's output at their position."""

    class Boxes:
        def __init__(self):
            self.items = [{"image": rng.integers(0, 255, (22, 26, 3), dtype=np.uint8),
                           "boxes": np.array([[3, 4, 15, 16], [12, 6, 24, 20]], np.float32),
                           "box_labels": np.array([0, 2])} for _ in range(3)]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    data = Boxes()
    model = OverFeat(TINY, seed=0)
    reg = build_regressor(model, seed=3, init="he")
    ws = window_samples(model, data, [(22, 26), (18, 18)], batch_size=2)
    assert len(ws) > 0 and set(ws.scale_ids) == {0, 1}
    y = to_numpy(reg.head.forward(ws.patches)[0])[:, :, 0, 0]
    from overfeat_np.preprocess import scale_images, to_input
    for si, hw in enumerate(ws.scales):
        for n in range(len(data)):
            img = scale_images(data[n]["image"], [hw])[0]
            dense = dense_regress(reg, infer(model.features, to_input([img])), dense_grid(model.config, img.shape[:2]))[0]
            sel = (ws.scale_ids == si) & (ws.image_ids == n)
            r, c = ws.positions[sel].T
            np.testing.assert_allclose(y[sel], dense[:, r, c].T, rtol=1e-4, atol=1e-5)


# --- files --------------------------------------------------------------------------------------------
def test_save_load_round_trip_and_wrong_model(tmp_path):
    model = overfeat_small(num_classes=4, width=0.25)
    reg = build_regressor(model, per_class=True, seed=4)
    path = tmp_path / "reg.npz"
    save_regressor(reg, path)
    back = load_regressor(path, model)
    assert back.per_class and back.outputs == 16 and back.hidden == reg.hidden
    for k, v in reg.params.items():
        np.testing.assert_array_equal(to_numpy(back.params[k]), to_numpy(v))
    x = np.random.default_rng(0).standard_normal((2, *model.pooled_shape)).astype(np.float32)
    np.testing.assert_array_equal(back.head.forward(x)[0], reg.head.forward(x)[0])
    with pytest.raises(ValueError, match="regressor for small-w0.25"):
        load_regressor(path, overfeat_small(num_classes=4, width=0.5))
    with pytest.raises(FileNotFoundError):
        load_regressor(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a regressor"):
        load_regressor(tmp_path / "other.npz")


def test_regressor_on_backend_matches_numpy(backend):
    xp = get_backend(backend)
    model = overfeat_small(num_classes=3, width=0.25, backend=backend)
    reg = build_regressor(model, per_class=True)
    assert reg.xp is xp
    x = np.random.default_rng(1).standard_normal((2, 3, 80, 88)).astype(np.float32)
    dev = to_numpy(dense_regress(reg, infer(model.features, xp.asarray(x)), dense_grid(model.config, (80, 88))))
    model.to("numpy")
    reg.head.to("numpy")
    host = dense_regress(reg, infer(model.features, x), dense_grid(model.config, (80, 88)))
    np.testing.assert_allclose(dev, host, rtol=1e-4, atol=1e-5)
