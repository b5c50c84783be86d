"""Weights I/O and atomic writes (overfeat_np.serialization)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from overfeat_np.backend import to_numpy
from overfeat_np.models import OverFeat, overfeat_small, small_config
from overfeat_np.optim import SGD
from overfeat_np.serialization import atomic_savez, atomic_write, load_weights, save_weights


def _small(seed=0, **kw):
    return overfeat_small(num_classes=kw.pop("num_classes", 4), width=kw.pop("width", 0.25), seed=seed, **kw)


def test_round_trip_is_exact_and_rebuilds_the_architecture(tmp_path, backend):
    src = _small(seed=1, backend=backend)
    path = tmp_path / "w.npz"
    save_weights(src, path)
    loaded = load_weights(path, backend=backend)
    assert loaded.config == src.config
    assert loaded.params.keys() == src.params.keys()
    for k, v in src.params.items():
        assert loaded.params[k].dtype == np.float32
        np.testing.assert_array_equal(to_numpy(loaded.params[k]), to_numpy(v))
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    xp = src.xp
    np.testing.assert_array_equal(to_numpy(loaded.forward(xp.asarray(x))[0]), to_numpy(src.forward(xp.asarray(x))[0]))


def test_file_holds_host_float32_config_and_version(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(_small(), path)
    with np.load(path, allow_pickle=False) as z:  # no pickle needed to read it
        assert int(z["__format__"]) == 1
        assert "small" in str(z["__config__"])
        assert all(z[k].dtype == np.float32 for k in z.files if not k.startswith("__"))


def test_loading_into_a_model_writes_into_its_arrays(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(_small(seed=1), path)
    target = _small(seed=2)
    opt = SGD(target.params)
    arrays = target.params
    load_weights(path, target)
    for k, v in target.params.items():
        assert v is arrays[k]  # same arrays: the optimizer built before loading still updates the model
        assert opt.params[k] is v
    np.testing.assert_array_equal(target.params["features.0.W"], _small(seed=1).params["features.0.W"])


@pytest.mark.parametrize("other, expect", [
    (lambda: _small(num_classes=5), r"'classifier.\d+.W' has shape \(5, 32\) in the file, \(4, 32\) in the model"),
    (lambda: _small(width=0.5), r"'features.0.W' has shape \(8, 3, 5, 5\) in the file, \(4, 3, 5, 5\)"),
    (lambda: OverFeat(dataclasses.replace(small_config(4, 0.25), dropout=0.3)),
     r"config field 'dropout' is 0.3 in the file, 0.5 in the model"),
])
def test_wrong_architecture_is_a_clear_error(tmp_path, other, expect):
    path = tmp_path / "other.npz"
    save_weights(other(), path)
    with pytest.raises(ValueError, match=r"another architecture: file small-w0\.\d+ \(input 64.*model small-w0\.25 \(input 64") as e:
        load_weights(path, _small())
    assert e.match(expect)


def test_missing_and_extra_keys_are_named(tmp_path):
    model = _small()
    arrays = {k: to_numpy(v) for k, v in model.params.items()}
    meta = {"__config__": np.array(json.dumps(model.config.to_dict())), "__format__": np.array(1)}
    dropped = dict(arrays)
    dropped.pop("classifier.1.b")
    atomic_savez(tmp_path / "a.npz", **dropped, **meta)
    with pytest.raises(ValueError, match="'classifier.1.b' is missing from the file"):
        load_weights(tmp_path / "a.npz", model)
    atomic_savez(tmp_path / "b.npz", **arrays, **meta, extra=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="has parameter 'extra' that the model lacks"):
        load_weights(tmp_path / "b.npz", model)


def test_bad_files_are_clear_errors(tmp_path):
    save_weights(_small(), tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz weights file"):
        load_weights(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz weights file"):
        load_weights(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load_weights(tmp_path / "one.npy")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an overfeat-np weights file"):
        load_weights(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(tmp_path / "absent.npz")


def test_newer_format_is_refused(tmp_path):
    model = _small()
    save_weights(model, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__format__"] = np.array(99)
    atomic_savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ValueError, match="format 99, newer"):
        load_weights(tmp_path / "w.npz")


def test_killed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.npz"
    atomic_savez(path, a=np.arange(3))
    before = path.read_bytes()

    def dies_midway(f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill arriving during the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_midway)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))


def test_atomic_write_replaces_and_uses_the_path_as_given(tmp_path):
    path = tmp_path / "state.ckpt"
    atomic_savez(path, a=np.ones(2))
    atomic_savez(path, a=np.zeros(2))
    assert sorted(os.listdir(tmp_path)) == ["state.ckpt"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.zeros(2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_savez(tmp_path / "no" / "such.npz", a=np.ones(1))
