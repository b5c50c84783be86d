"""Model accounting (Tables 1, 3, 4, 5) and the registry (overfeat_np.models).

The full models are described from their configs (shape inference only), so these tests never
allocate the 580 MB of the full networks; that describing a config and describing the model it
builds agree is itself tested on smaller models.
"""

import numpy as np
import pytest

from overfeat_np.accounting import count_connections, count_parameters, describe, format_description
from overfeat_np.layers import Conv2D, Linear, MaxPool2D
from overfeat_np.models import (
    MODEL_NAMES,
    OverFeat,
    accurate_config,
    build_config,
    build_model,
    fast_config,
    overfeat_small,
    small_config,
)

# Tables 1 and 3: (maps, input size) of each numbered layer. Fast layer 2 enters at 28x28, which
# is what 231 -> conv 11/4 -> 56 -> pool 2 gives; the paper's table prints 24x24 there, the size
# conv2 produces (and pool2 receives).
TABLE1 = [(96, 231), (256, 28), (512, 12), (1024, 12), (1024, 12), (3072, 6), (4096, 1), (1000, 1)]
TABLE3 = [(96, 221), (256, 36), (512, 15), (512, 15), (1024, 15), (1024, 15), (4096, 5), (4096, 1),
          (1000, 1)]


@pytest.mark.parametrize("config, table", [(fast_config(), TABLE1), (accurate_config(), TABLE3)])
def test_tables_1_and_3_maps_and_input_sizes(config, table):
    rows = [r for r in describe(config) if r.kind != "pool"]
    assert [r.name for r in rows] == [f"conv{i + 1}" for i in range(len(config.convs))] + [
        f"full{i + 1}" for i in range(len(config.convs), len(table))]
    assert [(r.out_shape[0], r.in_shape[1]) for r in rows] == table
    assert all(r.in_shape[1] == r.in_shape[2] for r in rows)
    assert rows[-1].out_shape == (1000, 1, 1)  # training is non-spatial: 1x1 output


def test_fast_conv2_output_is_the_papers_24():
    conv2 = next(r for r in describe(fast_config()) if r.name == "conv2")
    assert conv2.out_shape == (256, 24, 24)


def test_pools_follow_the_tables():
    fast = [(r.name, r.in_shape[1], r.out_shape[1]) for r in describe(fast_config()) if r.kind == "pool"]
    assert fast == [("pool1", 56, 28), ("pool2", 24, 12), ("pool5", 12, 6)]
    acc = [(r.name, r.in_shape[1], r.out_shape[1]) for r in describe(accurate_config()) if r.kind == "pool"]
    assert acc == [("pool1", 108, 36), ("pool2", 30, 15), ("pool6", 15, 5)]


def test_table_4_parameters_and_connections():
    assert count_parameters(fast_config()) == 145_909_792
    assert count_parameters(accurate_config()) == 144_643_872
    assert round(count_parameters(fast_config()) / 1e6) == 146  # Table 4 prints 145 M (truncated)
    fast_macs, acc_macs = count_connections(fast_config()), count_connections(accurate_config())
    assert fast_macs == 2_801_403_904 and round(fast_macs / 1e9, 2) == 2.80
    assert acc_macs == 5_355_446_784 and round(acc_macs / 1e9, 2) == 5.36
    # Table 4's 2810 M / 5369 M are within 0.5% of our count (the paper does not say what it adds)
    assert abs(fast_macs / 2810e6 - 1) < 5e-3 and abs(acc_macs / 5369e6 - 1) < 5e-3
    biases = sum(c.out_channels for c in fast_config().convs) + 3072 + 4096 + 1000
    assert count_parameters(fast_config(), biases=True) == 145_909_792 + biases


# Table 5: accurate model, input -> layer 6 unpooled -> pooled (one offset) -> classifier map.
TABLE5 = [((245, 245), (17, 17), (5, 5), (1, 1)), ((281, 317), (20, 23), (6, 7), (2, 3)),
          ((317, 389), (23, 29), (7, 9), (3, 5)), ((389, 461), (29, 35), (9, 11), (5, 7)),
          ((425, 497), (32, 38), (10, 12), (6, 8)), ((461, 569), (35, 44), (11, 14), (7, 10))]


@pytest.mark.parametrize("hw, unpooled, pooled, out", TABLE5)
def test_table_5_dense_shapes(hw, unpooled, pooled, out):
    rows = {r.name: r for r in describe(accurate_config(), hw)}
    assert rows["conv6"].out_shape == (1024, *unpooled)
    assert rows["pool6"].out_shape == (1024, *pooled)
    assert rows["full9"].out_shape == (1000, *out)
    # dense application costs at least as many multiply-adds as one training-size window
    assert count_connections(accurate_config(), hw) >= count_connections(accurate_config())


def test_input_smaller_than_training_size_is_an_error():
    with pytest.raises(ValueError, match="smaller than the training size 221x221"):
        describe(accurate_config(), 200)


@pytest.mark.parametrize("config", [small_config(5, 0.25), small_config(3, 1.0, input_size=80),
                                    fast_config(7, 1 / 16), accurate_config(4, 1 / 16)])
def test_counts_agree_with_the_built_model(config):
    model = OverFeat(config)
    assert describe(model) == describe(config)
    weights = [v.size for k, v in model.params.items() if k.endswith("W")]
    assert count_parameters(model) == sum(weights)
    assert count_parameters(model, biases=True) == sum(v.size for v in model.params.values())


@pytest.mark.parametrize("hw", [None, (96, 80)])
def test_describe_agrees_with_a_real_forward_pass(hw):
    model = overfeat_small(num_classes=5, width=0.5)
    h, w = (64, 64) if hw is None else hw
    x = np.random.default_rng(0).normal(size=(2, 3, h, w)).astype(np.float32)
    seen = []
    for layer in [*model.features.layers, model.pool]:
        x, _ = layer.forward(x)
        if isinstance(layer, (Conv2D, MaxPool2D)):
            seen.append(x.shape[1:])
    rows = describe(model, hw)
    assert [r.out_shape for r in rows if r.kind != "full"] == seen
    if hw is None:
        logits, _ = model.forward(np.zeros((2, 3, 64, 64), np.float32))
        assert rows[-1].out_shape == (logits.shape[1], 1, 1)
        linears = [layer for layer in model.classifier.layers if isinstance(layer, Linear)]
        assert [r.macs for r in rows if r.kind == "full"] == [lin.params["W"].size for lin in linears]


def test_width_scales_maps_not_geometry():
    full, half = describe(fast_config()), describe(fast_config(width=0.5))
    assert [(r.name, r.in_shape[1:], r.out_shape[1:]) for r in full] == [
        (r.name, r.in_shape[1:], r.out_shape[1:]) for r in half]
    assert [2 * r.out_shape[0] for r in half[:-1]] == [r.out_shape[0] for r in full[:-1]]
    assert half[-1].out_shape[0] == 1000  # classes are not scaled
    ratio = {r.name: f.weights / r.weights for r, f in zip(half, full) if r.weights}
    # weights scale with in*out maps: x2 where one side is fixed (RGB input, class outputs), else x4
    assert ratio == {"conv1": 2, "conv2": 4, "conv3": 4, "conv4": 4, "conv5": 4, "full6": 4, "full7": 4,
                     "full8": 2}


def test_format_description_lists_every_row_and_totals():
    rows = describe(fast_config())
    text = format_description(rows)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 3
    assert lines[1].split()[:4] == ["conv1", "conv", "3x231x231", "96x56x56"]
    assert "145,909,792" in lines[-2] and "2,801,403,904" in lines[-2]
    assert "2.80 G multiply-adds" in lines[-1]


def test_registry():
    assert MODEL_NAMES == ("fast", "accurate", "small")
    model = build_model("small", 3, width=0.25, seed=1)
    assert model.config == small_config(3, 0.25)
    np.testing.assert_array_equal(model.params["features.0.W"],
                                  overfeat_small(3, 0.25, seed=1).params["features.0.W"])
    assert build_config("fast") == fast_config() and build_config("accurate", 10) == accurate_config(10)
    with pytest.raises(ValueError, match=r"unknown model 'vgg': choose one of \('fast', 'accurate', 'small'\)"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        build_config("small", 0)
    with pytest.raises(TypeError, match="expected an OverFeat model or an OverFeatConfig"):
        describe("fast")
