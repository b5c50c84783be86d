"""Detection (Section 5): targets, on-the-fly negatives, the dense training net, inference, mAP, CLI."""

import json

import numpy as np
import pytest

from overfeat_np.boxes import iou
from overfeat_np.data import SyntheticShapes
from overfeat_np.dense import dense_forward
from overfeat_np.detect import (
    DETECT_METHODS,
    Candidates,
    Detection,
    background_index,
    detect,
    detect_with_classifier,
    detections_to_json,
    evaluate_detection,
    merge_candidates,
)
from overfeat_np.detect_train import (
    IGNORE,
    DenseTrainNet,
    DetectorTrainConfig,
    assign_targets,
    make_detector,
    select_negatives,
    train_detector,
)
from overfeat_np.grid import output_windows
from overfeat_np.merge import DEFAULT_AREA_POWER, DEFAULT_DEDUPE_IOU
from overfeat_np.models import overfeat_small
from overfeat_np.preprocess import scaled_size
from overfeat_np.scales import detection_scales


def _tiny(num_classes=3, seed=0):
    return overfeat_small(num_classes, width=0.25, seed=seed)


# --- background class -----------------------------------------------------------------------------
def test_make_detector_adds_background_last_and_keeps_the_classifier_ranking(rng):
    clf = _tiny(4)
    det = make_detector(clf)
    assert background_index(det) == 4 and det.config.num_classes == 5
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    yc, _ = clf.forward(x)
    yd, _ = det.forward(x)
    np.testing.assert_allclose(yd[:, :4], yc, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(yd[:, 4], 0)  # the new background row starts at zero
    assert not np.shares_memory(det.params["features.0.W"], clf.params["features.0.W"])


# --- targets ---------------------------------------------------------------------------------------
def test_assign_targets_rule():
    win = np.array([[0, 0, 64, 64], [32, 0, 96, 64], [64, 0, 128, 64], [200, 200, 264, 264],
                    [0, 100, 64, 164]], np.float32)
    boxes = np.array([[10, 10, 50, 50],  # inside window 0; 40x40 = 0.39 of the window
                      [88, 10, 128, 50],  # 20% inside window 1, wholly inside window 2
                      [20, 120, 26, 126]], np.float32)  # 6x6: inside window 4 but tiny
    t = assign_targets(win, boxes, np.array([1, 2, 0]), background=3)
    assert t[0] == 1  # positive: wholly inside and large enough
    assert t[1] == IGNORE  # box 0 is 18/40 = 45% inside: cut in half, ambiguous
    assert t[2] == 2
    assert t[3] == 3  # nothing nearby: background
    assert t[4] == IGNORE  # a tiny object: neither positive nor background


def test_assign_targets_coverage_thresholds():
    win = np.array([[0, 0, 64, 64]], np.float32)
    # a 40x40 box sliding right: the fraction inside the window is (64 - left) / 40
    lefts = np.array([20, 44, 50, 60, 70])  # inside 1.0, 0.5, 0.35, 0.1, 0
    expected = [0, 0, IGNORE, 3, 3]
    for left, want in zip(lefts, expected):
        box = np.array([[left, 10, left + 40, 50]], np.float32)
        assert assign_targets(win, box, [0], background=3)[0] == want, left


def test_assign_targets_prefers_the_best_iou_and_keeps_shape():
    win = output_windows(overfeat_small(3).config, (3, 4), fine_stride=False)  # (3, 4, 4)
    boxes = np.array([[0, 0, 60, 60], [10, 10, 40, 40]], np.float32)  # both inside window (0, 0)
    t = assign_targets(win, boxes, [2, 1], background=3)
    assert t.shape == (3, 4) and t.dtype == np.int64
    assert t[0, 0] == 2  # IoU 0.88 beats 0.22
    assert (assign_targets(win, np.zeros((0, 4)), [], background=3) == 3).all()
    with pytest.raises(ValueError, match="object classes"):
        assign_targets(win, boxes, [3, 1], background=3)


# --- negatives -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_select_negatives_counts_hard_ones_and_never_positives(seed):
    rng = np.random.default_rng(seed)
    bg = 4
    targets = rng.choice([0, 1, 2, 3, bg, bg, bg, bg, IGNORE], size=(6, 7, 9))
    targets[5] = IGNORE  # an image without background locations
    targets[4, :, :] = bg
    offending = rng.random((6, 7, 9))
    n_random, n_hard = 3, 2
    out = select_negatives(targets, offending, bg, n_random, n_hard, np.random.default_rng(seed))
    pos = (targets >= 0) & (targets != bg)
    np.testing.assert_array_equal(out[pos], targets[pos])  # every positive kept as it is
    assert not (out[targets == IGNORE] != IGNORE).any()  # ignored locations stay ignored
    assert set(np.unique(out[targets == bg])) <= {bg, IGNORE}
    for i in range(6):
        n_bg = int((targets[i] == bg).sum())
        chosen = out[i] == bg
        assert chosen.sum() == min(n_bg, n_random + n_hard)
        if n_bg > n_hard:
            # the n_hard most offending background locations are always among the chosen
            hardest = np.argsort(-np.where(targets[i] == bg, offending[i], -np.inf), axis=None)[:n_hard]
            assert chosen.reshape(-1)[hardest].all()


def test_select_negatives_random_part_varies_with_the_rng():
    targets = np.full((1, 10, 10), 3)
    off = np.zeros((1, 10, 10))
    a = select_negatives(targets, off, 3, 5, 0, np.random.default_rng(0))
    b = select_negatives(targets, off, 3, 5, 0, np.random.default_rng(1))
    assert (a == 3).sum() == (b == 3).sum() == 5 and not np.array_equal(a, b)


# --- the dense training net ----------------------------------------------------------------------------
def test_dense_train_forward_is_dense_forward_at_coarse_stride(rng):
    det = make_detector(_tiny(3))
    x = rng.standard_normal((2, 3, 112, 96)).astype(np.float32)
    y, _ = DenseTrainNet.of(det).forward(x, train=False)
    np.testing.assert_allclose(y, dense_forward(det, x, fine_stride=False), rtol=1e-4, atol=1e-5)


def test_dense_train_backward_matches_finite_differences(rng):
    from overfeat_np.models import he_init

    det = make_detector(he_init(_tiny(2, seed=3)))  # healthy activations: few units near a ReLU kink
    det.load_params({k: v.astype(np.float64) for k, v in det.params.items()})
    net = DenseTrainNet.of(det)
    x = rng.standard_normal((2, 3, 96, 80))
    y, cache = net.forward(x, train=False)
    r = rng.standard_normal(y.shape)
    grads = net.backward(r, cache)
    assert set(grads) == set(det.params)
    v = {k: rng.standard_normal(p.shape) for k, p in det.params.items()}
    analytic = sum(float((grads[k] * v[k]).sum()) for k in v)
    eps = 1e-6

    def loss_at(sign):
        for k, p in det.params.items():
            p += sign * eps * v[k]
        out = float((net.forward(x, train=False)[0] * r).sum())
        for k, p in det.params.items():
            p -= sign * eps * v[k]
        return out

    numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-5)


# --- inference -------------------------------------------------------------------------------------
def _biased_detector(cls):
    """A detector whose last layer outputs class `cls` everywhere (bias dominates)."""
    det = make_detector(_tiny(3))
    key = max((k for k in det.params if k.startswith("classifier.") and k.endswith(".b")),
              key=lambda k: int(k.split(".")[1]))
    det.params[key][...] = 0
    det.params[key][cls] = 50.0
    return det


def test_background_is_never_reported_and_an_all_background_image_gives_nothing():
    image = SyntheticShapes(1, image_size=96, mode="detection", seed=3)[0]["image"]
    scales = ((72, 72), (104, 104))
    assert detect(_biased_detector(3), None, image, scales) == []  # background everywhere
    dets = detect(_biased_detector(1), None, image, scales, score_threshold=0.5)
    assert dets and all(d.cls == 1 for d in dets)
    # windows of one class that tile the image merge into few boxes, all inside the image
    for d in dets:
        assert 0 <= d.box[0] < d.box[2] <= 96 and 0 <= d.box[1] < d.box[3] <= 96
    ranked = [d.score for d in dets]
    assert ranked == sorted(ranked, reverse=True)


def _fragments(centre, side, rng, n=6):
    """n boxes of one object as two scales see it: equal centres, the second scale's 20% smaller."""
    a = np.array([centre - side / 2, centre - side / 2, centre + side / 2, centre + side / 2])
    b = a + np.array([0.1, 0.1, -0.1, -0.1]) * side
    return np.concatenate([a + rng.normal(0, 0.5, (n, 4)), b + rng.normal(0, 0.5, (n, 4))])


def test_merge_leaves_one_box_of_a_class_per_object_where_the_paper_leaves_two(rng):
    boxes = np.concatenate([_fragments(30, 40, rng), _fragments(120, 30, rng)]).astype(np.float32)
    n = len(boxes)
    scale_ids = np.tile(np.repeat([0, 1], 6), 2)
    cand = Candidates(boxes, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), scale_ids, np.array([1.0, 0.64]))
    pb, ps, _ = merge_candidates(cand, "paper", t=0.3)
    assert len(pb) == 4  # each object keeps its two scales' boxes apart (match score > t)
    assert ps.sum() == pytest.approx(0.9 * n, rel=1e-5)
    mb, ms, _ = merge_candidates(cand, "merge", t=0.3)
    # each scale's windows vote with (its relative window area) ** DEFAULT_AREA_POWER
    assert len(mb) == 2 and ms.sum() == pytest.approx(0.9 * 12 * (1 + 0.64 ** DEFAULT_AREA_POWER), rel=1e-5)
    _, ms1, _ = merge_candidates(cand, "merge", t=0.3, area_power=1.0)
    assert ms1.sum() == pytest.approx(0.9 * 12 * (1 + 0.64), rel=1e-5)
    assert iou(mb[:1], mb[1:])[0, 0] == 0  # one box per object, each object found
    nb, _, _ = merge_candidates(cand, "nms")
    assert len(nb) >= 2
    with pytest.raises(ValueError, match="method must be one of"):
        merge_candidates(cand, "mean")


def test_every_method_runs_and_merge_leaves_no_overlapping_pair_of_a_class(rng):
    det = make_detector(_tiny(3, seed=5))
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    scales = ((72, 72), (88, 104))
    for method in DETECT_METHODS:
        dets = detect(det, None, image, scales, score_threshold=0.05, method=method)
        assert dets and [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        if method == "merge":
            for c in {d.cls for d in dets}:
                b = np.array([d.box for d in dets if d.cls == c], np.float32)
                o = iou(b, b)
                np.fill_diagonal(o, 0)
                assert o.max() <= DEFAULT_DEDUPE_IOU + 1e-6


def test_random_detector_never_reports_background(rng):
    det = make_detector(_tiny(3, seed=5))
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    dets = detect(det, None, image, ((72, 72), (88, 104)), score_threshold=0.05)
    assert dets and all(0 <= d.cls < background_index(det) for d in dets)


def test_scaled_size_follows_the_image_orientation():
    assert scaled_size((100, 200), (104, 136)) == (104, 136)
    assert scaled_size((200, 100), (104, 136)) == (136, 104)
    assert detection_scales(overfeat_small(3).config) == ((104, 104), (136, 136), (168, 168))


def test_detect_rejects_bad_input():
    det = make_detector(_tiny(3))
    with pytest.raises(ValueError, match="uint8"):
        detect(det, None, np.zeros((80, 80, 3), np.float32), ((72, 72),))
    with pytest.raises(ValueError, match="smaller than"):
        detect(det, None, np.zeros((80, 80, 3), np.uint8), ((48, 48),))
    with pytest.raises(ValueError, match="probability"):
        detect(det, None, np.zeros((80, 80, 3), np.uint8), ((72, 72),), score_threshold=0)


def test_detections_to_json_round_trips():
    dets = [Detection(1, 3.5, (1.0, 2.0, 30.0, 40.0)), Detection(0, 0.7, (5.0, 5.0, 9.0, 9.0))]
    d = json.loads(json.dumps(detections_to_json(dets, ["disc", "square"], "a.png")))
    assert d["image"] == "a.png"
    assert d["detections"][0] == {"class": 1, "name": "square", "score": 3.5, "box": [1.0, 2.0, 30.0, 40.0]}
    assert [r["name"] for r in d["detections"]] == ["square", "disc"]


def test_evaluate_detection_counts_empty_images_as_false_positives():
    ds = SyntheticShapes(6, image_size=96, mode="detection", seed=1, num_classes=3)
    empty = [i for i in range(len(ds)) if len(ds[i]["boxes"]) == 0]
    gt = [(ds[i]["box_labels"], ds[i]["boxes"]) for i in range(len(ds))]

    def perfect(image):  # the ground truth of the image, found by identity
        i = next(j for j in range(len(ds)) if np.array_equal(ds[j]["image"], image))
        return [Detection(int(c), 1.0, tuple(b)) for c, b in zip(*gt[i])]

    m, per_class, _ = evaluate_detection(None, None, ds, (), detect_fn=perfect)
    assert m == 1.0 and set(per_class) == {0, 1, 2}
    assert all(ap == 1.0 or np.isnan(ap) for ap in per_class.values())
    if empty:
        def noisy(image):  # perfect, plus one confident box on every empty image
            dets = perfect(image)
            return dets or [Detection(0, 5.0, (0.0, 0.0, 30.0, 30.0))]

        _, pc2, _ = evaluate_detection(None, None, ds, (), detect_fn=noisy)
        has_0 = any((g[0] == 0).any() for g in gt)
        assert (pc2[0] < 1.0) if has_0 else np.isnan(pc2[0])


# --- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    """Classifier (Section 3, briefly) -> detector fine-tuned spatially -> regressor on its features."""
    from overfeat_np.localize import train_regressor
    from overfeat_np.regressor import build_regressor
    from overfeat_np.train import TrainConfig, train

    n_cls = 6
    cls_set = SyntheticShapes(1600, image_size=72, seed=0, cache=True, num_classes=n_cls)
    cfg = TrainConfig(model="small", epochs=4, batch_size=32, lr=0.05, milestones=(100,), out_dir=None,
                      progress=False)
    clf = train(cfg, cls_set).model
    det_set = SyntheticShapes(400, image_size=128, mode="detection", seed=10, cache=True, num_classes=n_cls,
                              min_scale=0.2)
    det = make_detector(clf)
    tscales = ((96, 96), (128, 128), (160, 160))
    hist = train_detector(det, det_set, DetectorTrainConfig(scales=tscales, steps=400, batch_size=8, lr=0.03))
    reg = build_regressor(det)
    train_regressor(det, reg, [det_set[i] for i in range(200)], tscales, epochs=5, fine_stride=False)
    test_set = SyntheticShapes(60, image_size=128, mode="detection", seed=11, cache=True, num_classes=n_cls,
                               min_scale=0.2)
    return clf, det, reg, test_set, hist


def test_detector_beats_the_classifier_only_baseline(trained):
    clf, det, reg, test_set, hist = trained
    first = np.mean([s["loss"] for s in hist.steps[:5]])
    last = np.mean([s["loss"] for s in hist.steps[-5:]])
    assert last < 0.8 * first
    scales = detection_scales(det.config)
    m, per_class, curves = evaluate_detection(det, reg, test_set, scales)
    base, _, _ = evaluate_detection(None, None, test_set, scales,
                                    detect_fn=lambda im: detect_with_classifier(clf, im, scales))
    assert m >= 0.45, per_class
    assert m >= base + 0.25, (m, base)
    for p, r, thr in curves.values():
        assert len(p) == len(r) == len(thr)
        assert np.all(np.diff(thr) <= 0)  # by score, descending


def test_detector_is_mostly_silent_on_images_without_objects(trained):
    _, det, reg, test_set, _ = trained
    empty = [test_set[i]["image"] for i in range(len(test_set)) if len(test_set[i]["boxes"]) == 0]
    empty += [SyntheticShapes(8, image_size=128, seed=99).background(i) for i in range(8)]
    silent = [len(detect(det, reg, im, detection_scales(det.config), score_threshold=0.5)) == 0 for im in empty]
    assert np.mean(silent) >= 0.6, f"{sum(silent)} of {len(silent)} empty images gave no detection"


# --- command line ----------------------------------------------------------------------------------
def test_cli_detect_writes_json_and_pictures(tmp_path):
    from PIL import Image

    from overfeat_np import cli
    from overfeat_np.serialization import save_weights

    det = _biased_detector(2)
    save_weights(det, tmp_path / "detector.npz")
    (tmp_path / "classes.txt").write_text("disc\nsquare\ntriangle\n")
    img = SyntheticShapes(1, image_size=96, mode="detection", seed=2)[0]["image"]
    Image.fromarray(img).save(tmp_path / "a.png")
    out = tmp_path / "out"
    rc = cli.main(["detect", str(tmp_path / "a.png"), "--detector", str(tmp_path / "detector.npz"),
                   "--scales", "72,104", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "detections.json").read_text())
    assert data["scales"] == [[72, 72], [104, 104]]
    dets = data["images"][0]["detections"]
    assert dets and {d["name"] for d in dets} == {"triangle"}
    assert all(len(d["box"]) == 4 and d["score"] > 0 for d in dets)
    assert (out / "a_detections.png").stat().st_size > 0
    assert cli.main(["detect", str(tmp_path / "a.png"), "--detector", str(tmp_path / "nope.npz")]) == 1
    assert cli.main(["detect", str(tmp_path / "a.png"), "--detector", str(tmp_path / "detector.npz"),
                     "--scales", "10"]) == 2  # a usage error
    rc = cli.main(["detect", str(tmp_path / "a.png"), "--detector", str(tmp_path / "detector.npz"),
                   "--object-size", "20,40", "--method", "paper", "--out", str(out)])
    data = json.loads((out / "detections.json").read_text())
    assert rc == 0 and data["method"] == "paper" and data["scales"] == [[136, 136], [200, 200]]  # 40 px -> 0.9 x 64 px


def test_showcase_draws_the_three_tasks(tmp_path):
    from overfeat_np.regressor import build_regressor
    from overfeat_np.showcase import showcase

    clf = _tiny(3)
    det = _biased_detector(0)
    samples = [SyntheticShapes(2, image_size=96, mode="detection", seed=4, num_classes=3)[i] for i in range(2)]
    out = tmp_path / "showcase.png"
    dets = showcase(samples, clf, build_regressor(clf), det, out, ["disc", "square", "triangle"],
                    scales=((72, 72), (104, 104)))
    assert out.stat().st_size > 0 and len(dets) == 2
    assert all(d.cls == 0 for per_image in dets for d in per_image) and all(dets)
