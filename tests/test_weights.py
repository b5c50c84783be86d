"""Reading the original OverFeat release's weight files (overfeat_np.weights).

The real files (583 MB / 579 MB) cannot be written in CI, so the reader is tested on
width-scaled configs in the same format, every value encoding its layer and position; the
official sizes are checked against the full configs by formula, and the size check itself on
sparse files (which cost no disk).
"""

import itertools
import warnings

import numpy as np
import pytest

from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.layers import Conv2D, Linear
from overfeat_np.models import accurate_config, fast_config
from overfeat_np.weights import (
    CLASS_NAMES_SOURCE,
    OFFICIAL_SIZES,
    check_official_size,
    class_names,
    layer_offsets,
    load_official,
    official_file_size,
    read_class_names,
    read_official,
)


def _pattern(layer_index, shape, bias=False):
    """Exact float32 values that tell layer and C-order position apart."""
    n = int(np.prod(shape))
    v = (layer_index * 1000 + np.arange(n) % 1000).astype(np.float32)
    return (-v - 0.5 if bias else v).reshape(shape)


def _write_official(path, arrays):
    """The release's format, written independently of the reader: W then b per layer, raw float32."""
    with open(path, "wb") as f:
        for w, b in arrays:
            f.write(np.ascontiguousarray(w, dtype="=f4").tobytes())
            f.write(np.ascontiguousarray(b, dtype="=f4").tobytes())


def _expected_arrays(config):
    """Per layer (W, b) with the official shapes, derived from the config by hand."""
    shapes, c = [], config.in_channels
    for spec in config.convs:
        shapes.append((spec.out_channels, c, spec.kernel, spec.kernel))
        c = spec.out_channels
    s = config.input_size
    for spec in config.convs:  # spatial size after each conv and pool at the training size
        s = (s + 2 * spec.padding - spec.kernel) // spec.stride + 1
        s = s // spec.pool if spec.pool else s
    widths = (*config.hidden, config.num_classes)
    shapes.append((widths[0], c, s, s))
    shapes += [(o, i, 1, 1) for i, o in itertools.pairwise(widths)]
    return [(_pattern(i, sh), _pattern(i, (sh[0],), bias=True)) for i, sh in enumerate(shapes)]


@pytest.mark.parametrize("make", [lambda: fast_config(10, 1 / 16), lambda: accurate_config(7, 1 / 16)])
def test_read_official_puts_every_layer_where_it_belongs(tmp_path, make, backend):
    config = make()
    arrays = _expected_arrays(config)
    path = tmp_path / "net_weight"
    _write_official(path, arrays)
    assert path.stat().st_size == official_file_size(config)
    model = read_official(path, config, backend=backend)
    assert type(model.params["features.0.W"]) is type(get_backend(backend).zeros(1))
    layers = [layer for part in (model.features, model.classifier) for layer in part.layers
              if isinstance(layer, (Conv2D, Linear))]
    assert len(layers) == len(arrays)
    for layer, (w, b) in zip(layers, arrays):
        got_w = to_numpy(layer.params["W"])
        # full layers: our Linear (out, C*h*w) is the stored (out, C, h, w) reshaped, C-order
        np.testing.assert_array_equal(got_w, w.reshape(got_w.shape))
        np.testing.assert_array_equal(to_numpy(layer.params["b"]), b)
        assert got_w.dtype == np.float32


def test_layer_offsets_are_contiguous_and_in_order():
    config = fast_config(10, 1 / 8)
    layout = layer_offsets(config)
    assert [entry.name for entry in layout] == ["conv1", "conv2", "conv3", "conv4", "conv5", "full6", "full7",
                                                "full8"]
    offset = 0
    for entry in layout:
        assert entry.w_offset == offset
        assert entry.b_offset == offset + 4 * int(np.prod(entry.w_shape))
        assert entry.b_shape == (entry.w_shape[0],)
        offset = entry.b_offset + 4 * entry.b_shape[0]
    assert offset == official_file_size(config)


def test_full_layouts_match_the_release():
    fast, acc = layer_offsets(fast_config()), layer_offsets(accurate_config())
    assert fast[0].w_shape == (96, 3, 11, 11) and acc[0].w_shape == (96, 3, 7, 7)
    assert fast[5].name == "full6" and fast[5].w_shape == (3072, 1024, 6, 6)
    assert acc[6].name == "full7" and acc[6].w_shape == (4096, 1024, 5, 5)
    assert fast[6].w_shape == (4096, 3072, 1, 1) and fast[7].w_shape == (1000, 4096, 1, 1)
    # Table 4's weight counts (PAPER_NOTES: 145,909,792 and 144,643,872), then biases, 4 bytes each
    for layout, name, weights in [(fast, "fast", 145_909_792), (acc, "accurate", 144_643_872)]:
        assert sum(int(np.prod(e.w_shape)) for e in layout) == weights
        n = weights + sum(e.b_shape[0] for e in layout)
        assert official_file_size(fast_config() if name == "fast" else accurate_config()) == 4 * n
        assert 4 * n == OFFICIAL_SIZES[name]
    assert OFFICIAL_SIZES == {"fast": 583_683_488, "accurate": 578_625_952}


def test_official_size_check_on_sparse_files(tmp_path):
    for name, size in OFFICIAL_SIZES.items():
        path = tmp_path / name
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: no disk used
        assert check_official_size(path, name).num_classes == 1000
    with pytest.raises(ValueError, match=r"expected 583,683,488 bytes for the fast model \(net_weight_0\), got "
                                         r"578,625,952; this size matches the accurate model's file "
                                         r"\(net_weight_1\): pass model='accurate'"):
        load_official(tmp_path / "accurate", "fast")
    with open(tmp_path / "cut", "wb") as f:
        f.truncate(OFFICIAL_SIZES["fast"] - 4)
    with pytest.raises(ValueError, match="got 583,683,484; it matches neither official file"):
        load_official(tmp_path / "cut", "fast")
    with pytest.raises(ValueError, match="unknown official model 'big'"):
        load_official(tmp_path / "cut", "big")
    with pytest.raises(FileNotFoundError, match="net_weight_1"):
        load_official(tmp_path / "absent", "accurate")


def test_longer_file_is_read_with_a_warning_shorter_is_an_error(tmp_path, backend):
    config = accurate_config(7, 1 / 16)
    arrays = _expected_arrays(config)
    want = official_file_size(config)
    _write_official(tmp_path / "exact", arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact file warns about nothing
        exact = read_official(tmp_path / "exact", config, backend=backend)
    long = tmp_path / "long"
    long.write_bytes((tmp_path / "exact").read_bytes() + b"\x7f" * 7)  # not a whole float
    with pytest.warns(UserWarning, match=f"7 extra bytes after the {want:,} bytes .* are ignored"):
        model = read_official(long, config, backend=backend)
    for key, value in exact.params.items():
        np.testing.assert_array_equal(to_numpy(model.params[key]), to_numpy(value))
    short = tmp_path / "short"
    short.write_bytes((tmp_path / "exact").read_bytes()[:-4])
    with pytest.raises(ValueError, match=f"expected {want:,} bytes .* got {want - 4:,}: 4 bytes short"):
        read_official(short, config)


def test_official_size_check_accepts_longer_files(tmp_path):
    path = tmp_path / "net_weight_0"
    with open(path, "wb") as f:
        f.truncate(OFFICIAL_SIZES["fast"] + 100)  # sparse
    assert check_official_size(path, "fast").name == "fast"
    # the fast file is longer than the accurate one, but is a wrong model, not extra bytes
    with open(tmp_path / "fast", "wb") as f:
        f.truncate(OFFICIAL_SIZES["fast"])
    with pytest.raises(ValueError, match="matches the fast model's file .*pass model='fast'"):
        check_official_size(tmp_path / "fast", "accurate")


def test_class_names_are_the_ilsvrc2012_ids_in_order():
    names, wnids = class_names(), class_names(wnids=True)
    assert len(names) == len(wnids) == len(set(wnids)) == 1000
    assert (wnids[0], names[0]) == ("n02119789", "kit fox, Vulpes macrotis")  # ILSVRC2012_ID 1
    assert (wnids[1], names[1]) == ("n02100735", "English setter")
    assert (wnids[-1], names[-1]) == ("n03255030", "dumbbell")  # ID 1000
    sw = sorted(wnids)
    assert (sw[0], sw[-1]) == ("n01440764", "n15075141")  # tench ... toilet tissue
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    cranes = [(i + 1, w) for i, (w, n) in enumerate(zip(wnids, names)) if n == "crane"]
    assert cranes == [(429, "n02012849"), (545, "n03126707")]  # the bird, the machine
    assert "ilsvrc2012_classes.txt" in CLASS_NAMES_SOURCE and "meta.mat" in CLASS_NAMES_SOURCE


def test_load_official_names_default_to_the_shipped_list(tmp_path):
    with open(tmp_path / "net_weight_1", "wb") as f:
        f.truncate(OFFICIAL_SIZES["accurate"])  # zeros: a valid (if useless) accurate model
    net = load_official(tmp_path / "net_weight_1", "accurate")
    assert net.class_names == class_names()
    (tmp_path / "mine.txt").write_text("".join(f"c{i}\n" for i in range(1000)))
    assert load_official(tmp_path / "net_weight_1", "accurate", class_names=tmp_path / "mine.txt"
                         ).class_names[999] == "c999"


def test_read_official_size_and_byte_order_errors(tmp_path):
    config = fast_config(10, 1 / 16)
    arrays = _expected_arrays(config)
    _write_official(tmp_path / "short", arrays[:-1])
    with pytest.raises(ValueError, match=f"expected {official_file_size(config):,} bytes"):
        read_official(tmp_path / "short", config)
    rng = np.random.default_rng(0)
    swapped = [(rng.normal(0, 1e-2, w.shape).astype(np.float32).byteswap(), b) for w, b in arrays]
    _write_official(tmp_path / "swapped", swapped)
    with pytest.raises(ValueError, match="wrong byte order"):
        read_official(tmp_path / "swapped", config)


def test_read_class_names(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(f"class {i}" for i in range(1000)) + "\n\n")
    names = read_class_names(tmp_path / "classes.txt")
    assert names[0] == "class 0" and names[-1] == "class 999" and len(names) == 1000
    (tmp_path / "few.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="expected 1000 class names"):
        read_class_names(tmp_path / "few.txt")
