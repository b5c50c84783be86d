"""Localization (Section 4): predict_boxes, the accumulations vs NMS, bounded-memory regressor
training, scale guidance, the CLI, and an end-to-end run."""

import argparse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_np.cli import main
from overfeat_np.data import SyntheticShapes
from overfeat_np.grid import output_windows
from overfeat_np.localize import (
    METHODS,
    BoxPredictions,
    centre_box_error,
    ground_truth,
    localize,
    merge_predictions,
    predict_boxes,
    train_regressor,
    window_buffers,
    window_samples,
)
from overfeat_np.merge import DEFAULT_AREA_POWER, DEFAULT_SMALL_OBJECT, relative_size
from overfeat_np.metrics import localization_error
from overfeat_np.models import overfeat_small
from overfeat_np.multiscale import classify_multiscale
from overfeat_np.regressor import build_regressor, save_regressor
from overfeat_np.scales import (
    object_scale_warnings,
    object_size_range,
    object_sizes_for,
    relative_object_sizes,
    scales_for,
    scales_for_objects,
)
from overfeat_np.serialization import save_weights
from overfeat_np.train import TrainConfig, default_transforms, train

SCALES = ((72, 72), (88, 104))


def _window_regressor(model):
    """A regressor that always answers "the box is my window": (0, 0, 1, 1) in the window's frame."""
    reg = build_regressor(model, per_class=True)
    last = reg.head.layers[-1]
    last.params["W"][...] = 0
    last.params["b"][...] = np.tile(np.array([0, 0, 1, 1], np.float32), model.config.num_classes)
    return reg


def test_predict_boxes_are_windows_scored_by_the_class_map():
    model = overfeat_small(num_classes=4, width=0.25, seed=1)
    reg = _window_regressor(model)
    image = SyntheticShapes(1, image_size=(70, 90), mode="localization", num_classes=4)[0]["image"]
    pred = predict_boxes(model, reg, image, SCALES, top_k=2, clip=False)
    _, maps = classify_multiscale(model, image, SCALES, flip=False)  # an independent path to the scores
    for si, m in enumerate(maps):
        sel = pred.scale_ids == si
        top = np.argsort(-m.probs.max(axis=(1, 2)))[:2]
        assert set(pred.classes[sel]) == set(top)
        hs, ws = m.size
        win = output_windows(model.config, m.probs.shape[1:]).reshape(-1, 4)
        win = win * np.array([90 / ws, 70 / hs, 90 / ws, 70 / hs], np.float32)
        for c in top:
            rows = sel & (pred.classes == c)
            np.testing.assert_allclose(pred.boxes[rows], win, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(pred.windows[rows], win, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(pred.scores[rows], m.probs[c].ravel(), rtol=1e-4, atol=1e-6)
    clipped = predict_boxes(model, reg, image, SCALES, top_k=2).boxes
    assert clipped.min() >= 0 and clipped[:, [0, 2]].max() <= 90 and clipped[:, [1, 3]].max() <= 70


def _cloud(rng):
    """Ten agreeing boxes of class 1 with low scores and one isolated confident box of class 2."""
    agree = np.array([30, 30, 60, 60], np.float32) + rng.normal(0, 1.0, (10, 4)).astype(np.float32)
    lone = np.array([[0, 0, 20, 20]], np.float32)
    boxes = np.concatenate([agree, lone])
    scores = np.concatenate([np.full(10, 0.2, np.float32), [0.9]]).astype(np.float32)
    classes = np.array([1] * 10 + [2])
    z = np.zeros(11, np.int64)
    return BoxPredictions(boxes, scores, classes, z, boxes)


def test_paper_merge_accumulates_coherent_boxes_that_nms_ranks_below_a_lone_box(rng):
    pred = _cloud(rng)
    merged = merge_predictions(pred, k=5, method="paper")  # Section 4.3 exactly
    assert merged.classes[0] == 1 and merged.confidences[0] == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(merged.boxes[0], pred.boxes[:10].mean(axis=0), atol=1e-4)
    nms = merge_predictions(pred, k=5, method="nms")
    assert nms.classes[0] == 2 and nms.confidences[0] == pytest.approx(0.9)
    assert len(merged.classes) == 2  # the cloud became one box, the lone box stayed alone
    with pytest.raises(ValueError, match="method must be one of"):
        merge_predictions(pred, method="mean")


def _two_scales(obj):
    """Every window boxes obj; scale 0 has one 64-px window sure of class A (0.8, B 0.05), scale 1
    nine 32-px windows leaning to class B (0.35, A 0.2)."""
    classes = np.array([0, 1] + [0, 1] * 9)  # A = 0, B = 1
    scale_ids = np.array([0, 0] + [1] * 18)
    scores = np.where(scale_ids == 0, np.where(classes == 0, 0.8, 0.05), np.where(classes == 0, 0.2, 0.35))
    windows = np.where(scale_ids[:, None] == 0, [0, 0, 64, 64], [8, 8, 40, 40]).astype(np.float32)
    return BoxPredictions(np.tile(obj, (len(classes), 1)), scores.astype(np.float32), classes, scale_ids, windows)


def test_default_merge_weights_votes_by_the_image_area_of_their_windows():
    """Scale 1 has 9 locations whose windows are half as wide in the image as scale 0's one. Its
    windows lean to a wrong class (B, 0.35 each), scale 0 is sure of the right one (A, 0.8): the
    paper's sum picks B (0.05 + 9 x 0.35 = 3.2 against 0.8 + 9 x 0.2 = 2.6); weighting each vote by
    its window's image area (1/4 at scale 1) picks A (0.8 + 9 x 0.2 / 4 = 1.25 against 0.84), as
    the default does (area ** DEFAULT_AREA_POWER, 1), and so does a power of 0.75 (weight 0.354:
    1.44 against 1.16); power 0 is the paper's sum again."""
    obj = np.array([20, 20, 50, 50], np.float32)
    pred = _two_scales(obj)
    paper = merge_predictions(pred, k=5, method="paper")
    assert paper.classes[0] == 1 and paper.confidences[0] == pytest.approx(3.2, rel=1e-5)
    merged = merge_predictions(pred, k=5, method="merge", area_power=1.0)
    assert list(merged.classes) == [0, 1]
    np.testing.assert_allclose(merged.confidences, [1.25, 0.05 + 9 * 0.35 / 4], rtol=1e-5)
    np.testing.assert_allclose(merged.boxes[0], obj, atol=1e-4)
    w = 0.25 ** DEFAULT_AREA_POWER
    default = merge_predictions(pred, k=5, method="merge")
    assert list(default.classes) == [0, 1]
    np.testing.assert_allclose(default.confidences, [0.8 + 9 * 0.2 * w, 0.05 + 9 * 0.35 * w], rtol=1e-5)
    three_quarters = merge_predictions(pred, k=5, method="merge", area_power=0.75)
    np.testing.assert_allclose(three_quarters.confidences, [0.8 + 9 * 0.2 * 0.25 ** 0.75, 0.05 + 9 * 0.35 * 0.25 ** 0.75],
                               rtol=1e-5)
    flat = merge_predictions(pred, k=5, method="merge", area_power=0.0)  # one vote per window, as the paper
    assert flat.classes[0] == 1


def test_default_merge_falls_back_to_the_paper_sum_for_objects_far_smaller_than_every_window():
    """The scene of the test above with an object of side s: the area weight picks A; when A's box
    is below DEFAULT_SMALL_OBJECT x the largest window's side (64), the default returns the
    paper's guesses (B first), and small_object=0 keeps the area-weighted ones."""
    for side in (8.0, 0.95 * 64 * DEFAULT_SMALL_OBJECT, 1.05 * 64 * DEFAULT_SMALL_OBJECT, 30.0):
        pred = _two_scales(np.array([20, 20, 20 + side, 20 + side], np.float32))
        default, paper = merge_predictions(pred), merge_predictions(pred, method="paper")
        area = merge_predictions(pred, small_object=0)
        assert list(area.classes) == [0, 1] and paper.classes[0] == 1
        assert relative_size(area.boxes[0], pred.windows) == pytest.approx(side / 64, rel=1e-5)
        small = side < 64 * DEFAULT_SMALL_OBJECT
        assert default.classes[0] == (1 if small else 0)
        for got, ref in zip(default, paper if small else area):
            np.testing.assert_array_equal(got, ref)
    assert 0 < DEFAULT_SMALL_OBJECT < 1


@pytest.fixture(scope="module")
def trained_classifier():
    """The small model trained briefly on synthetic shapes (Section 3 loop, 120 steps, ~10 s)."""
    data = SyntheticShapes(120 * 32, image_size=72, mode="classification", seed=0)
    cfg = TrainConfig(model="small", width=0.5, epochs=1, batch_size=32, lr=0.05, milestones=(5,),
                      out_dir=None, progress=False, eval_every=0)
    return train(cfg, data, transforms=default_transforms(64, resize=None)).model


def test_end_to_end_localization_beats_the_centre_box_and_merge_matches_nms(trained_classifier):
    model = trained_classifier
    scales = ((72, 72), (88, 88), (104, 104), (136, 136))
    windows = window_samples(model, SyntheticShapes(200, image_size=64, mode="localization", seed=3), scales)
    reg = build_regressor(model)
    hist = train_regressor(model, reg, windows=windows, epochs=12, lr=0.01, batch_size=128)
    assert hist.losses[-1] < 0.6 * hist.losses[0]
    val = SyntheticShapes(100, image_size=64, mode="localization", seed=4)
    gts = ground_truth(val)
    err = {}
    for i in range(len(val)):  # one prediction per image, given to both methods
        raw = predict_boxes(model, reg, val[i]["image"], scales)
        for method in METHODS:
            loc = merge_predictions(raw, 5, method)
            err.setdefault(method, []).append((loc.classes, loc.boxes))
    top5 = {m: localization_error(p, gts, k=5) for m, p in err.items()}
    top1 = {m: localization_error(p, gts, k=1) for m, p in err.items()}
    baseline = centre_box_error(val)  # knows the class: only its box can be wrong
    print("localization error top-5 / top-1: " + ", ".join(f"{m} {top5[m]:.2f} / {top1[m]:.2f}" for m in top5)
          + f"; centre box with the true class {baseline:.2f}")
    assert baseline > 0.6
    assert top5["merge"] <= baseline - 0.25 and top5["paper"] <= baseline - 0.25
    # Objects of 20-80% of the window at scales up to ~2x: the default accumulation at least
    # matches NMS (benchmarks/bench_accumulation.py measures where and by how much)
    assert top5["merge"] <= top5["nms"] + 0.02


def test_cli_train_regressor_then_localize(tmp_path, capsys):
    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    save_weights(model, tmp_path / "w.npz")
    reg_path = tmp_path / "reg.npz"
    code = main(["train-regressor", "--weights", str(tmp_path / "w.npz"), "--synthetic", "24", "--epochs", "1",
                 "--scales", "72x72", "--out", str(reg_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and reg_path.exists(), out
    assert "training windows" in out and "localization error" in out
    from PIL import Image
    image = SyntheticShapes(1, image_size=80, mode="localization", num_classes=3)[0]["image"]
    Image.fromarray(image).save(tmp_path / "shape.png")
    code = main(["localize", str(tmp_path / "shape.png"), "--weights", str(tmp_path / "w.npz"), "--regressor",
                 str(reg_path), "--scales", "72x72,88x88", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("confidence") == 5
    drawn = np.asarray(Image.open(tmp_path / "out" / "shape_boxes.png"))
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)
    # a regressor trained for another model is refused with a clear message
    other = overfeat_small(num_classes=3, width=0.5, seed=0)
    save_regressor(build_regressor(other), tmp_path / "other.npz")
    code = main(["localize", str(tmp_path / "shape.png"), "--weights", str(tmp_path / "w.npz"), "--regressor",
                 str(tmp_path / "other.npz"), "--scales", "72x72"])
    assert code == 1 and "regressor for small-w0.5" in capsys.readouterr().err


def test_localize_returns_k_best_first():
    model = overfeat_small(num_classes=4, width=0.25, seed=2)
    reg = build_regressor(model)
    image = SyntheticShapes(1, image_size=80, mode="localization", num_classes=4)[0]["image"]
    for method in METHODS:
        loc = localize(model, reg, image, SCALES, k=3, method=method)
        assert len(loc.classes) == 3 and loc.boxes.shape == (3, 4)
        assert np.all(np.diff(loc.confidences) <= 0)


# --- regressor training in bounded memory ---------------------------------------------------------
def test_window_buffers_hold_at_most_the_cap_and_see_every_window_once():
    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    data = SyntheticShapes(12, image_size=64, mode="localization", num_classes=3, seed=5)
    ws = window_samples(model, data, SCALES)
    bufs = [(b.patches.copy(), b.targets.copy()) for b in window_buffers(model, data, SCALES, 7, np.arange(12),
                                                                           chunk_images=5)]
    assert all(len(p) <= 7 for p, _ in bufs) and sum(len(p) for p, _ in bufs) == len(ws)
    # the same windows (as multisets of targets): chunking and the buffer lose or repeat none
    got = np.concatenate([t for _, t in bufs])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(ws.targets, axis=0))


def test_streaming_training_learns_like_cached_training():
    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    data = SyntheticShapes(24, image_size=64, mode="localization", num_classes=3, seed=5)
    reg = build_regressor(model)
    hist = train_regressor(model, reg, data, SCALES, epochs=6, lr=0.01, batch_size=16, max_windows=40)
    assert hist.windows > 40 and len(hist.losses) == 6  # more windows than the cap: it streamed
    assert hist.losses[-1] < hist.losses[0]
    steps = train_regressor(model, build_regressor(model), data, SCALES, steps=5, batch_size=16, max_windows=40)
    assert steps.steps == 5


# --- scale guidance -------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes, hw", [((6, 16), (64, 64)), ((19, 38), (64, 64)), ((38, 64), (64, 64)),
                                       ((10, 200), (300, 500))])
def test_scales_for_objects_show_every_object_near_the_window(sizes, hw):
    config = overfeat_small(num_classes=3, width=0.25).config
    scales = scales_for_objects(config, sizes, hw)
    table = {s for s in scales_for(config, tuple((n, n) for n in range(1, 80)))}
    assert 2 <= len(scales) <= 6
    rule_sides = {h for h, _ in table}
    for h, w in scales:
        assert min(h, w) >= config.input_size and h in rule_sides and w in rule_sides  # Table 5's rule
        assert abs(w / h - hw[1] / hw[0]) < 0.2  # aspect kept (up to the rule's rounding)
    for side in np.geomspace(*sizes, 5):  # every object size is seen at <= ~1 window at some scale
        seen = [side * h / hw[0] / config.input_size for h, _ in scales]
        assert min(seen) <= 1.0 or scales[0][0] == min(rule_sides)


def test_object_scale_warnings_name_the_scales_that_make_objects_too_large():
    config = overfeat_small(num_classes=3, width=0.25).config
    warn = object_scale_warnings(config, ((72, 72), (168, 216)), (40, 64), (64, 64))
    assert len(warn) == 1 and "168x216" in warn[0]  # 40 px -> 105 px > 64 / sqrt(0.5) = 91 px
    assert object_scale_warnings(config, ((72, 72),), (40, 64), (64, 64)) == []
    assert object_size_range(np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 40, 10]]), 0, 100) == (10, 20)


def test_cli_object_size_chooses_scales_and_warns(tmp_path, capsys):
    from PIL import Image

    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    save_weights(model, tmp_path / "w.npz")
    save_regressor(build_regressor(model), tmp_path / "reg.npz")
    Image.fromarray(SyntheticShapes(1, image_size=64, mode="localization", num_classes=3)[0]["image"]).save(
        tmp_path / "a.png")
    base = ["localize", str(tmp_path / "a.png"), "--weights", str(tmp_path / "w.npz"), "--regressor",
            str(tmp_path / "reg.npz"), "--out", str(tmp_path / "out")]
    assert main(base + ["--object-size", "30,50", "--method", "paper"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(base + ["--object-size", "40,60", "--scales", "1,6"]) == 0
    assert "no window sees half of an object" in capsys.readouterr().err
    assert main(base + ["--object-size", "50,10"]) == 2



@settings(deadline=None, max_examples=40)
@given(st.lists(st.tuples(st.integers(8, 300), st.integers(8, 300), st.floats(0.05, 0.95), st.floats(0.05, 0.95)),
                min_size=1, max_size=6), st.floats(0.25, 4.0))
def test_relative_object_sizes_do_not_depend_on_the_image_size(images, zoom):
    # Each image holds one box of a given fraction of its width and height; zooming every image and
    # box by the same factor must leave the fractions alone, and pixels come back via object_sizes_for.
    def samples(z):
        out = []
        for h, w, fx, fy in images:
            hz, wz = max(1, round(h * z)), max(1, round(w * z))
            out.append({"image": np.zeros((hz, wz, 3), np.uint8),
                        "boxes": np.array([[0, 0, fx * wz, fy * hz]], np.float32)})
        return out

    lo, hi = relative_object_sizes(samples(1.0))
    lo_z, hi_z = relative_object_sizes(samples(zoom))
    assert 0 < lo <= hi < 1
    assert lo_z == pytest.approx(lo, rel=0.1) and hi_z == pytest.approx(hi, rel=0.1)  # rounding of the sizes only
    px = object_sizes_for((lo, hi), (100, 400))  # sqrt(100 * 400) = 200 px of image side
    assert px == pytest.approx((200 * lo, 200 * hi))


def test_cli_object_size_from_reads_the_training_boxes(tmp_path, capsys):
    from PIL import Image

    from overfeat_np.cli.localize import guided_scales
    from overfeat_np.data import write_imagenet_layout

    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    save_weights(model, tmp_path / "w.npz")
    save_regressor(build_regressor(model), tmp_path / "reg.npz")
    train = SyntheticShapes(6, image_size=64, mode="localization", num_classes=3, min_scale=0.15, max_scale=0.3)
    write_imagenet_layout(tmp_path / "data", train, "train")
    Image.fromarray(train[0]["image"]).save(tmp_path / "a.png")
    base = ["localize", str(tmp_path / "a.png"), "--weights", str(tmp_path / "w.npz"), "--regressor",
            str(tmp_path / "reg.npz"), "--out", str(tmp_path / "out")]
    assert main(base + ["--object-size-from", str(tmp_path / "data"), "--object-size-images", "6"]) == 0
    assert "object sizes from 6 training images" in capsys.readouterr().err

    # The scales are those of the training boxes' range, rescaled to the image at hand: small objects
    # (10-19 px) of a 64-px image are enlarged ~3x to fill the window, the same fractions of a
    # 256-px image (38-77 px) hardly at all.
    frac = relative_object_sizes([train[i] for i in range(6)])  # every image: the folder order differs
    args = argparse.Namespace(scales=None, object_size=None, object_size_from=str(tmp_path / "data"),
                              object_size_images=6)
    for hw in ((64, 64), (256, 256)):
        got = guided_scales(args, model.config, None, hw)
        assert got == scales_for_objects(model.config, object_sizes_for(frac, hw), hw)
    small, big = guided_scales(args, model.config, None, (64, 64)), guided_scales(args, model.config, None, (256, 256))
    assert small[0][0] / 64 > 2 and big[0][0] / 256 < 1
    assert main(base + ["--object-size-from", str(tmp_path / "nowhere")]) != 0

def test_cli_train_regressor_limits_images_and_skips_evaluation(tmp_path, capsys):
    model = overfeat_small(num_classes=3, width=0.25, seed=0)
    save_weights(model, tmp_path / "w.npz")
    code = main(["train-regressor", "--weights", str(tmp_path / "w.npz"), "--synthetic", "500", "--train-images", "6",
                 "--epochs", "1", "--scales", "72x72", "--window-memory", "0.05", "--no-eval",
                 "--out", str(tmp_path / "reg.npz"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "reg.npz").exists(), out
    assert "training on 6 images" in out and "holding at most 87 windows" in out  # 0.05 MB / (16 x 3 x 3 x 4 + 24) B
    assert "localization error" not in out


def test_no_flip_on_the_training_commands(tmp_path):
    from overfeat_np.checkpoint import load_checkpoint
    from overfeat_np.cli import build_parser

    out = tmp_path / "run"
    assert main(["train", "--synthetic", "16", "--max-steps", "1", "--width", "0.25", "--batch-size", "8",
                 "--epochs", "1", "--no-flip", "--out", str(out), "--no-progress"]) == 0
    assert load_checkpoint(out / "latest.npz")["train_config"]["flip"] is False  # --resume keeps it
    args = build_parser().parse_args(["train-detector", "--weights", "w.npz", "--synthetic", "4", "--no-flip"])
    assert args.no_flip
