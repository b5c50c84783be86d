"""Dense inference equals the network run on every window (Section 3.3), and Table 5 by shapes."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from overfeat_np.accounting import map_shapes
from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.dense import (
    dense_forward,
    dense_head,
    fc_to_conv,
    fully_convolutional,
    offset_pool,
)
from overfeat_np.grid import output_stride, output_windows
from overfeat_np.layers import Conv2D, Linear, ReLU, Sequential
from overfeat_np.models import (
    ConvSpec,
    OverFeat,
    OverFeatConfig,
    accurate_config,
    fast_config,
    small_config,
)


# --- helpers -----------------------------------------------------------------------------------
def _with_size(config, size):
    return OverFeatConfig(config.name, size, config.convs, config.hidden, config.num_classes)


def _fits(config, size):
    try:
        return map_shapes(_with_size(config, size), (size, size))["final"] == (1, 1)
    except ValueError:
        return False


@st.composite
def tiny_configs(draw):
    """A 2-3 conv OverFeat without zero padding (so windows are exact), with a valid input size."""
    n = draw(st.integers(2, 3))
    convs = []
    for i in range(n):
        last = i == n - 1
        convs.append(ConvSpec(out_channels=draw(st.integers(2, 4)), kernel=draw(st.integers(1, 3)),
                              stride=draw(st.integers(1, 2)), padding=0,
                              pool=draw(st.integers(2, 3)) if last else draw(st.sampled_from([0, 2]))))
    cfg = OverFeatConfig("tiny", input_size=1, convs=tuple(convs),
                         hidden=tuple(draw(st.lists(st.integers(3, 6), min_size=1, max_size=2))),
                         num_classes=draw(st.integers(2, 4)))
    smallest = next(s for s in range(1, 200) if _fits(cfg, s))
    size = smallest + draw(st.integers(0, cfg.total_stride))  # sometimes pixels the layers never use
    cfg = _with_size(cfg, size)
    assume(map_shapes(cfg, (size, size))["pre_reshape"][(0, 0)] == (1, 1))
    return cfg


def _model(config, seed=0, backend="numpy"):
    """Model with O(1) activations (He-scaled weights, non-zero biases) so comparisons mean something."""
    m = OverFeat(config, seed=seed)
    rng = np.random.default_rng(seed)
    params = {}
    for k, v in m.params.items():
        fan_in = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
        std = np.sqrt(2.0 / fan_in) if v.ndim > 1 else 0.1
        params[k] = rng.normal(0, std, v.shape).astype(np.float32)
    m.load_params(params)
    return m.to(backend)


def _windows(model, x, stride):
    """Reference: crop every training-size window at `stride` and run the plain model on the batch."""
    s, (n, _, h, w) = model.config.input_size, x.shape
    qh, qw = (h - s) // stride + 1, (w - s) // stride + 1
    crops = [x[:, :, i * stride:i * stride + s, j * stride:j * stride + s] for i in range(qh) for j in range(qw)]
    xp = get_backend("cupy") if type(x).__module__.startswith("cupy") else np
    y, _ = model.forward(xp.concatenate(crops, axis=0))  # (qh*qw*n, C), window-major
    return to_numpy(y).reshape(qh, qw, n, -1).transpose(2, 3, 0, 1)


def _close(a, b):
    a, b = to_numpy(a), to_numpy(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


# --- fc_to_conv --------------------------------------------------------------------------------
def test_fc_to_conv_shares_memory_and_matches_at_training_size(rng):
    model = _model(small_config(num_classes=5, width=0.5))
    head = fc_to_conv(model.classifier, model.pooled_shape)
    linears = [layer for layer in model.classifier.layers if isinstance(layer, Linear)]
    convs = [layer for layer in head.layers if isinstance(layer, Conv2D)]
    assert len(convs) == len(linears) == 3
    assert convs[0].kernel_size == model.pooled_shape[1:]  # 3x3 for small, like fast's 6x6
    assert all(c.kernel_size == (1, 1) for c in convs[1:])
    for conv, lin in zip(convs, linears):
        assert np.shares_memory(conv.params["W"], lin.params["W"])
        assert np.shares_memory(conv.params["b"], lin.params["b"])
    x = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    y, _ = model.forward(x)
    d = dense_forward(model, x)
    assert d.shape == (3, 5, 1, 1) and d.dtype == np.float32
    _close(d[:, :, 0, 0], y)
    # A view, not a copy: an in-place update of the Linear weights shows through.
    linears[-1].params["b"] += 1.0
    np.testing.assert_allclose(head.layers[-1].params["b"], linears[-1].params["b"])


def test_fc_to_conv_rejects_bad_heads():
    lin = Linear(8, 3, seed=0)
    with pytest.raises(ValueError, match="in_shape"):
        fc_to_conv(Sequential([lin]), (2, 3, 3))  # 18 inputs != 8
    with pytest.raises(TypeError, match="cannot convert"):
        fc_to_conv(Sequential([Linear(8, 3, seed=0), Conv2D(3, 3, 1, seed=0)]), (2, 2, 2))
    with pytest.raises(ValueError, match="start with a Linear"):
        fc_to_conv(Sequential([ReLU()]), (2, 2, 2))


# --- offset pooling ----------------------------------------------------------------------------
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(3, 12), w=st.integers(3, 12),
       k=st.integers(1, 3), data=st.data())
def test_offset_pool_matches_naive_loops(n, c, h, w, k, data):
    dx, dy = data.draw(st.integers(0, k - 1)), data.draw(st.integers(0, k - 1))
    assume(h - dy >= k and w - dx >= k)
    x = np.random.default_rng(h * 100 + w).normal(size=(n, c, h, w)).astype(np.float32)
    out = offset_pool(x, k, dx, dy)
    oh, ow = (h - dy) // k, (w - dx) // k
    ref = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            ref[:, :, i, j] = x[:, :, dy + i * k:dy + (i + 1) * k, dx + j * k:dx + (j + 1) * k].max(axis=(2, 3))
    np.testing.assert_array_equal(out, ref)


def test_offset_pool_errors():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="0..k-1"):
        offset_pool(x, 2, 2, 0)
    with pytest.raises(ValueError, match="larger image"):
        offset_pool(x, 3, 0, 2)


# --- equivalence with windows (the heart of Section 3.3) ---------------------------------------
@given(config=tiny_configs(), extra=st.tuples(st.integers(0, 100), st.integers(0, 100)), seed=st.integers(0, 9))
def test_dense_equals_windows_coarse_and_fine(config, extra, seed):
    model = _model(config, seed)
    s = config.input_size
    h, w = s + extra[0], s + extra[1]
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(np.float32)
    for fine in (False, True):
        stride = output_stride(config, fine)
        d = dense_forward(model, x, fine_stride=fine)
        _close(d, _windows(model, x, stride))
        assert d.shape[2:] == map_shapes(config, (h, w), fine)["final"]
        boxes = output_windows(config, d.shape[2:], fine)
        assert boxes[..., 2].max() <= w and boxes[..., 3].max() <= h and boxes.min() >= 0


def test_ragged_offsets_keep_every_window():
    """Offsets that pool to different sizes: nothing is cropped, every fine window is there."""
    cfg = OverFeatConfig("ragged", input_size=12, convs=(ConvSpec(3, 3, 1, 0, 2), ConvSpec(4, 3, 1, 0, 3)),
                         hidden=(5,), num_classes=3)
    model = _model(cfg)
    x = np.random.default_rng(1).normal(size=(1, 3, 12 + 2 * 7, 12 + 2 * 5)).astype(np.float32)
    shapes = map_shapes(cfg, x.shape[2:])
    assert len(set(shapes["pooled"].values())) > 1  # the offsets really disagree here
    d = dense_forward(model, x)
    k = cfg.convs[-1].pool
    common = min(v[0] for v in shapes["pre_reshape"].values()), min(v[1] for v in shapes["pre_reshape"].values())
    assert d.shape[2] > k * common[0] or d.shape[3] > k * common[1]
    _close(d, _windows(model, x, output_stride(cfg)))


def test_dense_on_backend(backend):
    cfg = OverFeatConfig("b", input_size=14, convs=(ConvSpec(3, 3, 2, 0, 2), ConvSpec(4, 2, 1, 0, 2)),
                         hidden=(6,), num_classes=3)
    model = _model(cfg, backend=backend)
    xp = get_backend(backend)
    x = xp.asarray(np.random.default_rng(2).normal(size=(2, 3, 14 + 13, 14 + 9)).astype(np.float32))
    d = dense_forward(model, x)
    assert type(d) is type(x)
    _close(d, _windows(model, x, output_stride(cfg)))


def test_dense_head_coarse_is_offset_zero_of_fine(rng):
    model = _model(small_config(num_classes=4, width=0.25))
    net = fully_convolutional(model)
    x = rng.normal(size=(1, 3, 64 + 40, 64 + 24)).astype(np.float32)
    u = net.features.forward(x)[0]
    fine, coarse = dense_head(net.head, u, net.k, True), dense_head(net.head, u, net.k, False)
    _close(fine[:, :, ::net.k, ::net.k], coarse)  # batching offsets changes only the GEMM sum order


def test_dense_forward_errors(rng):
    model = _model(small_config(num_classes=3, width=0.25))
    with pytest.raises(ValueError, match="smaller than the 64x64"):
        dense_forward(model, np.zeros((1, 3, 63, 80), np.float32))
    with pytest.raises(ValueError, match="float32"):
        dense_forward(model, np.zeros((1, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        dense_forward(model, np.zeros((3, 64, 64), np.float32))


# --- geometry ----------------------------------------------------------------------------------
TABLE5 = [  # input, layer-6 unpooled, pooled (per offset), pre-reshape (per offset), final; 3x3 offsets
    ((245, 245), (17, 17), (5, 5), (1, 1), (3, 3)),
    ((281, 317), (20, 23), (6, 7), (2, 3), (6, 9)),
    ((317, 389), (23, 29), (7, 9), (3, 5), (9, 15)),
    ((389, 461), (29, 35), (9, 11), (5, 7), (15, 21)),
    ((425, 497), (32, 38), (10, 12), (6, 8), (18, 24)),
    ((461, 569), (35, 44), (11, 14), (7, 10), (21, 30)),
]


@pytest.mark.parametrize("row", TABLE5, ids=lambda r: f"{r[0][0]}x{r[0][1]}")
def test_table5_every_cell(row):
    inp, unpooled, pooled, pre, final = row
    shapes = map_shapes(accurate_config(), inp)
    assert shapes["unpooled"] == unpooled
    assert shapes["offsets"] == (3, 3)
    assert sorted(shapes["pooled"]) == [(dx, dy) for dx in range(3) for dy in range(3)]
    assert set(shapes["pooled"].values()) == {pooled}
    assert set(shapes["pre_reshape"].values()) == {pre}
    assert shapes["final"] == final == (3 * pre[0], 3 * pre[1])
    assert shapes["stride"] == 12


@pytest.mark.parametrize("make", [fast_config, accurate_config, small_config])
@given(extra=st.tuples(st.integers(0, 300), st.integers(0, 300)), fine=st.booleans())
def test_windows_stay_inside_image_and_tile_at_stride(make, extra, fine):
    cfg = make()
    hw = (cfg.input_size + extra[0], cfg.input_size + extra[1])
    final = map_shapes(cfg, hw, fine)["final"]
    boxes = output_windows(cfg, final, fine)
    assert boxes.shape == (*final, 4) and boxes.dtype == np.float32
    assert boxes[..., :2].min() == 0 and boxes[..., 2].max() <= hw[1] and boxes[..., 3].max() <= hw[0]
    np.testing.assert_array_equal(boxes[..., 2] - boxes[..., 0], cfg.input_size)
    s = cfg.total_stride // (cfg.convs[-1].pool if fine else 1)
    # One more window at this stride would leave the image: the map covers all that fit.
    assert boxes[-1, -1, 3] + s > hw[0] and boxes[-1, -1, 2] + s > hw[1]


def test_map_shapes_coarse_fast_model():
    # Fast model (Table 1): 231 -> unpooled 12 -> pooled 6 -> one output; +32 pixels per position.
    cfg = fast_config()
    assert map_shapes(cfg, (231, 231), False)["final"] == (1, 1)
    assert map_shapes(cfg, (231 + 32 * 3, 231 + 32 * 7), False)["final"] == (4, 8)
    assert map_shapes(cfg, (231 + 32 * 3, 231 + 32 * 7), True)["final"] == (7, 15)
