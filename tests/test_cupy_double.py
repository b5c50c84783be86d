"""The CuPy path without a GPU: the CPU double's strictness, per-step host/device budgets, and the
whole pipeline on it (same results as NumPy: bit-identical where the same operations run).

Where a real GPU is visible, CuPy itself runs the pipeline tests (to float tolerance) and the
tests of the double and of its counters are skipped: they need the double.
"""

import copy
import pathlib
import pickle
import re
import sys

import numpy as np
import pytest
from conftest import DOUBLE

from overfeat_np import cupy_double
from overfeat_np.backend import cupy_available, get_array_module, get_backend, to_numpy
from overfeat_np.data import SyntheticShapes
from overfeat_np.detect import detect
from overfeat_np.detect_train import (
    DetectorTrainConfig,
    make_detector,
    select_negatives,
    train_detector,
)
from overfeat_np.layers import Dropout
from overfeat_np.localize import WindowSet, localize, train_regressor, window_samples
from overfeat_np.losses import l2_loss, softmax_cross_entropy
from overfeat_np.models import build_model, overfeat_small
from overfeat_np.multiscale import classify_multiscale
from overfeat_np.regressor import build_regressor, regression_loss
from overfeat_np.scales import detection_scales
from overfeat_np.train import TrainConfig, default_transforms, train

pytestmark = pytest.mark.gpu  # `pytest -m gpu` (benchmarks/gpu_check.py) runs these with the other GPU tests
double_only = pytest.mark.skipif(not DOUBLE, reason="tests the CPU double itself (a real GPU is visible)")
LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"


def _same(a, b, exact=None):
    """Device result a equals host result b: bit for bit on the double, to float32 noise on a GPU."""
    a = to_numpy(a)
    if DOUBLE if exact is None else exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- the double is as strict as CuPy -------------------------------------------------------------------
@double_only
def test_device_arrays_refuse_implicit_conversion_and_mixing():
    import cupy

    assert cupy is cupy_double.module() and cupy_available() and get_backend("cupy") is cupy
    a = cupy.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert get_array_module(a) is cupy and isinstance(a, cupy.ndarray) and not isinstance(a, np.ndarray)
    for implicit in (lambda: np.asarray(a), lambda: np.array([a]), lambda: np.sum(a), lambda: np.concatenate([a]),
                     lambda: np.testing.assert_array_equal(a, np.zeros((2, 3)))):
        with pytest.raises(TypeError):
            implicit()
    host = np.ones(3, np.float32)
    for mixed in (lambda: a + host, lambda: host * a, lambda: cupy.maximum(a, host), lambda: a[np.array([0, 1])],
                  lambda: a.__setitem__(0, host)):
        with pytest.raises(TypeError):
            mixed()
    # Python and NumPy scalars (and 0-d arrays) mix freely, as in CuPy; reductions stay on the device
    b = a * 2 + np.float32(1) - 0.5 + np.asarray(0.0, np.float32)
    s = b.sum()
    assert type(s) is cupy.ndarray and s.shape == () and type(a.argmax()) is cupy.ndarray
    assert type(b.T) is cupy.ndarray and b.shape == (2, 3) and b.dtype == np.float32 and b.flags.c_contiguous


@double_only
def test_counters_count_transfers_syncs_and_driver_queries(counts):
    import cupy

    host = np.arange(12, dtype=np.float32)
    a = cupy.asarray(host)
    assert (counts.to_device, counts.to_device_bytes) == (1, 48)
    assert cupy.asarray(a) is a and counts.to_device == 1  # already there: no copy
    b = (a * 3).reshape(3, 4)
    assert counts.snapshot() == {"to_device": 1, "to_device_bytes": 48, "to_host": 0, "to_host_bytes": 0,
                                 "syncs": 0, "driver_queries": 0}  # device work costs the host nothing
    np.testing.assert_array_equal(b.get(), 3 * host.reshape(3, 4))
    assert (counts.to_host, counts.to_host_bytes, counts.syncs) == (1, 48, 1)
    float(b.sum()), int(b[0, 1]), bool(b[1, 1] > 0), b[2, 2].item(), b[0].tolist()
    assert counts.syncs == 6
    np.testing.assert_array_equal(cupy.asnumpy(b), to_numpy(b))
    assert counts.to_host == 3
    cupy.cuda.runtime.getDeviceCount()
    get_backend("cupy")
    assert counts.driver_queries == 2
    counts.reset()
    mask = b > 10
    b[1:], b[:, 2], cupy.where(mask, b, 0), mask.sum()  # sizes known without the data: no wait
    assert counts.syncs == 0
    b[mask], b[:, mask[0]], cupy.nonzero(mask), mask.nonzero(), cupy.flatnonzero(mask), cupy.where(mask)
    assert counts.syncs == 6  # output sizes that depend on the data: read back, as CuPy does
    counts.reset()
    assert counts.syncs == counts.to_device == 0


@double_only
def test_the_double_computes_what_numpy_computes_and_keeps_identity():
    import cupy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    d = cupy.asarray(x)
    np.testing.assert_array_equal(to_numpy(cupy.exp(d) @ d.T), np.exp(x) @ x.T)
    np.testing.assert_array_equal(to_numpy(cupy.take_along_axis(d, cupy.argsort(d, axis=1), 1)), np.sort(x, 1))
    same = d
    d += 1  # in place: the same device array
    d[0, :] = 0
    assert d is same and to_numpy(d)[0].sum() == 0
    assert type(copy.deepcopy(d)) is cupy.ndarray and type(pickle.loads(pickle.dumps(d))) is cupy.ndarray
    r1, r2 = (cupy.random.RandomState(7).random_sample((3, 4), dtype=np.float32) for _ in range(2))
    assert type(r1) is cupy.ndarray and r1.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(r1), to_numpy(r2))  # seeded
    with cupy.cuda.Device(0):
        cupy.cuda.Stream.null.synchronize()


def test_install_and_uninstall_restore_sys_modules():
    before = sys.modules.get("cupy")
    with cupy_double.installed() as mod:
        assert sys.modules["cupy"] is mod and cupy_double.is_installed()
    assert sys.modules.get("cupy") is before


# --- no silent copies ----------------------------------------------------------------------------------
def test_losses_refuse_host_labels_next_to_device_predictions():
    xp = get_backend("cupy")
    logits = xp.asarray(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="labels"):
        softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="mask"):
        l2_loss(logits, logits, np.ones(3))
    with pytest.raises(TypeError, match="labels"):
        regression_loss(xp.asarray(np.zeros((3, 8), np.float32)), xp.asarray(np.zeros((3, 4), np.float32)),
                        np.array([0, 1, 0]))


def test_device_loss_is_a_device_scalar_and_bad_labels_make_it_nan():
    xp = get_backend("cupy")
    logits = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    labels = np.array([0, 3, -1, 2, 1])
    loss, d = softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    ref, dref = softmax_cross_entropy(logits, labels)
    assert get_array_module(loss) is xp and loss.shape == () and isinstance(ref, float)
    _same(loss, ref)
    _same(d, dref)
    bad, _ = softmax_cross_entropy(xp.asarray(logits), xp.asarray(np.array([0, 4, -1, 2, 1])))
    assert np.isnan(float(bad))  # no check on the device (it would synchronise): NaN, caught by the caller
    with pytest.raises(ValueError, match="must lie in"):
        softmax_cross_entropy(logits, np.array([0, 4, -1, 2, 1]))


def test_window_subset_takes_a_device_mask():
    xp = get_backend("cupy")
    ws = WindowSet(xp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4, 1, 1)), xp.zeros((3, 4), np.float32),
                   xp.zeros(3, np.int64), np.arange(3), np.array([0, 1, 0]), np.zeros((3, 2), int))
    sub = ws.subset(xp.asarray(np.array([True, False, True])))
    assert len(sub) == 2 and sub.image_ids.tolist() == [0, 2]


# --- budgets per step ----------------------------------------------------------------------------------
def test_fast_model_training_step_budget(counts):
    """After the first step: one host->device copy per step (the uint8 batch with its labels),
    nothing back and no synchronisation except at log steps (one each), no driver query."""
    steps, log_every, batch = 6, 3, 2
    data = SyntheticShapes(steps * batch, image_size=240, seed=0, cache=True)
    cfg = TrainConfig(model="fast", width=1 / 32, batch_size=batch, epochs=1, max_steps=steps, milestones=(),
                      backend="cupy", out_dir=None, progress=False, log_every=log_every, eval_every=0)
    marks = []
    h = train(cfg, data, transforms=default_transforms(231, resize=None),
              on_step=lambda r: marks.append(counts.snapshot()))
    batch_bytes = batch * 3 * 231 * 231 + 8 * batch + 2  # uint8 images, padding to 8 bytes, int64 labels
    for step in range(2, steps + 1):
        d = {k: marks[step - 1][k] - marks[step - 2][k] for k in marks[0]}
        logged = step % log_every == 0
        assert d["to_device"] == 1 and d["to_device_bytes"] == batch_bytes, (step, d)
        assert d["to_host"] == d["syncs"] == int(logged), (step, d)
        assert d["driver_queries"] == 0, (step, d)
    assert [r["global_step"] for r in h.steps] == [3, 6] and all(np.isfinite(r["loss"]) for r in h.steps)


def test_detector_step_budget(counts):
    """A detector step: one copy (images, targets, random keys), mining on the device, no sync."""
    data = SyntheticShapes(16, image_size=128, mode="detection", seed=0, cache=True, min_scale=0.2)

    def run(steps):
        det = make_detector(build_model("small", 6, 0.25, backend="cupy"))
        counts.reset()
        train_detector(det, data, DetectorTrainConfig(steps=steps, batch_size=2, log_every=1000))
        return counts.snapshot()

    one, five = run(1), run(5)
    per_step = {k: (five[k] - one[k]) / 4 for k in one}
    assert per_step["to_device"] == 1 and per_step["to_host"] == 0 and per_step["syncs"] == 0, per_step
    assert per_step["driver_queries"] == 0


def test_dropout_masks_and_regressor_steps_stay_on_the_device(counts):
    xp = get_backend("cupy")
    x = xp.asarray(np.ones((4, 16), np.float32))
    layer = Dropout(0.5, seed=1)
    counts.reset()
    _, mask = layer.forward(x, train=True)
    assert counts.to_device == 0 and counts.syncs == 0 and get_array_module(mask) is xp
    model = overfeat_small(3, width=0.25, backend="cupy")
    ws = window_samples(model, SyntheticShapes(6, image_size=72, mode="localization", seed=0), [(72, 72)])
    reg = build_regressor(model)
    counts.reset()
    hist = train_regressor(model, reg, windows=ws, steps=3, batch_size=max(1, len(ws) // 3) + 1)
    assert hist.steps == 3
    # one epoch: its shuffled order crosses once, its mean loss is read once; the steps themselves none
    assert counts.to_device == 1 and counts.syncs == 1 and counts.to_host == 0, counts


# --- the pipeline on the double equals NumPy's -------------------------------------------------------
def _no_dropout(model):
    for layer in model.dropout_layers:
        layer.p = 0.0
    return model


@pytest.mark.parametrize("name,size", [("fast", 231), ("accurate", 221)])
def test_a_training_step_of_each_model_matches_numpy(name, size):
    data = SyntheticShapes(2, image_size=size + 8, seed=0, cache=True)
    weights = {}
    for b in ("numpy", "cupy"):
        cfg = TrainConfig(model=name, width=1 / 32, batch_size=2, epochs=1, max_steps=1, milestones=(), backend=b,
                          out_dir=None, progress=False, log_every=1, eval_every=0)
        model = _no_dropout(build_model(name, 6, 1 / 32, backend=b))
        h = train(cfg, data, transforms=default_transforms(size, resize=None), model=model)
        weights[b] = {k: to_numpy(v) for k, v in h.model.params.items()}
    for k, v in weights["numpy"].items():
        _same(weights["cupy"][k], v)


@pytest.fixture(scope="module")
def models():
    """A small classifier on both backends, the same weights."""
    return {b: overfeat_small(4, width=0.25, seed=3, backend=b) for b in ("numpy", "cupy")}


def test_dense_classification_at_fine_stride_matches_numpy(models):
    image = SyntheticShapes(1, image_size=(96, 112), seed=2)[0]["image"]
    scales = [(64, 64), (80, 96)]
    (got, got_maps), (ref, ref_maps) = (classify_multiscale(models[b], image, scales, fine_stride=True, flip=True)
                                        for b in ("cupy", "numpy"))
    _same(got, ref)
    assert len(got_maps) == len(ref_maps) == 4
    for g, r in zip(got_maps, ref_maps):
        _same(g.probs, r.probs)


def test_localization_matches_numpy(models):
    data = SyntheticShapes(6, image_size=80, mode="localization", seed=4)
    scales = [(64, 64), (80, 80)]
    out = {}
    for b in ("numpy", "cupy"):
        reg = build_regressor(models[b])
        ws = window_samples(models[b], data, scales)
        hist = train_regressor(models[b], reg, windows=ws, epochs=2, batch_size=16)
        out[b] = (ws, hist, reg, localize(models[b], reg, data[0]["image"], scales))
    (ws_d, hist_d, reg_d, loc_d), (ws_h, hist_h, reg_h, loc_h) = out["cupy"], out["numpy"]
    _same(ws_d.patches, ws_h.patches)
    _same(ws_d.targets, ws_h.targets)
    assert hist_d.losses == pytest.approx(hist_h.losses, rel=0 if DOUBLE else 1e-4)
    for k in reg_h.params:
        _same(reg_d.params[k], reg_h.params[k])
    assert list(loc_d.classes) == list(loc_h.classes)
    _same(np.asarray(loc_d.boxes), np.asarray(loc_h.boxes))


def test_detector_training_and_detection_match_numpy(models):
    data = SyntheticShapes(8, image_size=128, mode="detection", seed=0, cache=True, min_scale=0.2, num_classes=4)
    out = {}
    for b in ("numpy", "cupy"):
        det = _no_dropout(make_detector(models[b]))
        hist = train_detector(det, data, DetectorTrainConfig(steps=3, batch_size=2, log_every=1))
        reg = build_regressor(det)
        out[b] = (det, hist, detect(det, reg, data[0]["image"], detection_scales(det.config), score_threshold=0.01))
    (det_d, hist_d, dets_d), (det_h, hist_h, dets_h) = out["cupy"], out["numpy"]
    assert [(r["positives"], r["negatives"]) for r in hist_d.steps] == [(r["positives"], r["negatives"])
                                                                        for r in hist_h.steps]
    assert [r["loss"] for r in hist_d.steps] == pytest.approx([r["loss"] for r in hist_h.steps],
                                                              rel=0 if DOUBLE else 1e-4)
    for k in det_h.params:
        _same(det_d.params[k], det_h.params[k])
    assert dets_h and ([(d.cls, d.box) for d in dets_d] == [(d.cls, d.box) for d in dets_h] or not DOUBLE)


def test_select_negatives_on_the_device_matches_the_host(rng):
    xp = get_backend("cupy")
    targets = rng.integers(-1, 4, size=(3, 5, 6))
    offending = rng.random((3, 5, 6))
    keys = rng.random((3, 30))
    host = select_negatives(targets, offending, 3, 4, 2, random_keys=keys)
    dev = select_negatives(xp.asarray(targets), xp.asarray(offending), 3, 4, 2, random_keys=xp.asarray(keys))
    assert get_array_module(dev) is xp
    np.testing.assert_array_equal(to_numpy(dev), host)


def test_cli_trains_on_the_gpu_backend(tmp_path, capsys):
    from overfeat_np.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--synthetic", "32", "--backend", "cupy", "--model", "small", "--width", "0.25",
               "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "weights.npz").stat().st_size > 0 and (out / "latest.npz").stat().st_size > 0


def _cells(path):
    """The code cells of a jupytext percent-format lesson."""
    parts = re.split(r"^# %%.*$", path.read_text(), flags=re.MULTILINE)
    return [p for p in parts[1:] if not p.lstrip().startswith("# ")]


def test_a_lesson_cell_runs_on_the_gpu_backend():
    """Lesson 03's model cell, with the model built on CuPy: its own assertions hold, and the
    network classifies a batch there as it does on NumPy."""
    cells = _cells(LESSONS / "03_training_a_small_overfeat.py")
    cell = next(c for c in cells if "small = build_model(" in c)
    assert 'TrainConfig(model="small")' in cell
    ns = {}
    # the lesson's own source, run as the notebook runs it (exec is the point here)
    exec(cells[0], ns)  # noqa: S102  (the imports cell)
    exec(cell.replace('TrainConfig(model="small")', 'TrainConfig(model="small", backend="cupy")'), ns)  # noqa: S102
    small = ns["small"]
    assert small.xp is get_backend("cupy")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref = ns["build_model"](TrainConfig(model="small"), num_classes=6)
    _same(small.forward(small.xp.asarray(x))[0], ref.forward(x)[0])


def test_gpu_check_script_runs_end_to_end_on_the_double():
    """benchmarks/gpu_check.py, tiny and on the double: every row of its table comes out."""
    import subprocess

    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    res = subprocess.run([sys.executable, str(script), "--double", "--small", "--no-tests"], check=False,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "CPU double" in out and out.count("rel. error") == 19  # every layer but dropout
    assert re.search(r"features.0 Conv2D\s+forward 0.0e\+00  backward 0.0e\+00", out)  # same NumPy operations
    for row in ("train fast, batch 4", "train accurate, batch 4", "fine stride", "scales + flips", "memory pool"):
        assert row in out, row


# --- uint8 batches: the same crops, normalised where they land -------------------------------------
def test_uint8_batches_normalised_on_the_device_equal_the_float_batches():
    from overfeat_np.data import DataLoader
    from overfeat_np.data.batch import pack_arrays, unpack_arrays, unpack_batch
    from overfeat_np.data.transforms import normalize_batch

    xp = get_backend("cupy")
    data = SyntheticShapes(10, image_size=72, seed=5)
    tf, _ = default_transforms(64, resize=None)
    floats = DataLoader(data, 4, tf, seed=1)
    bytes_ = DataLoader(data, 4, tf.as_uint8(), seed=1)
    for f, b in zip(floats.batches(2), bytes_.batches(2)):
        assert b["x"].dtype == np.uint8 and b["packed"].dtype == np.uint8
        np.testing.assert_array_equal(b["labels"], f["labels"])
        images, labels = unpack_batch(xp.asarray(b["packed"]), b["x_shape"])  # one copy: images and labels
        np.testing.assert_array_equal(to_numpy(labels), f["labels"])
        np.testing.assert_array_equal(to_numpy(normalize_batch(images, tf.mean, tf.std)), f["x"])  # bit for bit
        np.testing.assert_array_equal(normalize_batch(b["x"], tf.mean, tf.std), f["x"])
    parts = [np.arange(7, dtype=np.uint8), np.array([[-1, 2]]), np.zeros((2, 0)), np.linspace(0, 1, 3)]
    buf, layout = pack_arrays(parts)
    for got, want in zip(unpack_arrays(xp.asarray(buf), layout), parts):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(to_numpy(got), want)


@double_only  # counts the double's array assignments
def test_im2col_on_the_device_copies_once_per_kernel_offset(monkeypatch):
    """On a GPU every copy is a kernel launch: im2col fills its columns with kh*kw copies, not the
    CPU's channel blocks (here 13 blocks of 5 channels would make 117), and gives NumPy's columns."""
    from overfeat_np.im2col import im2col

    xp = get_backend("cupy")
    x = np.random.default_rng(0).standard_normal((8, 64, 40, 40)).astype(np.float32)
    d = xp.asarray(x)
    copies = []
    real = type(d).__setitem__
    monkeypatch.setattr(type(d), "__setitem__", lambda self, k, v: (copies.append(k), real(self, k, v)))
    cols, _ = im2col(d, 3, 3)
    assert len(copies) == 9
    monkeypatch.undo()
    _same(cols, im2col(x, 3, 3)[0], exact=True)
