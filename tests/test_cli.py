"""The overfeat-np command line, driven through main([...]) on a tiny ImageNet-layout tree."""

import json
import subprocess
import sys

import numpy as np
import pytest

from overfeat_np.checkpoint import load_checkpoint, model_from_checkpoint
from overfeat_np.cli import COMMANDS, build_parser, main
from overfeat_np.data import SyntheticShapes, detection_set, localization_set, write_imagenet_layout
from overfeat_np.detect import evaluate_detection
from overfeat_np.detect_train import make_detector
from overfeat_np.localize import centre_box_error, evaluate_localization
from overfeat_np.models import overfeat_small
from overfeat_np.regressor import build_regressor, save_regressor
from overfeat_np.serialization import save_weights


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A 3-class ImageNet tree (train/<wnid>/, flat val/ with LOC_val_solution.csv) and a run on it."""
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_layout(root, SyntheticShapes(30, image_size=72, num_classes=3, seed=0), "train")
    write_imagenet_layout(root, SyntheticShapes(12, image_size=72, num_classes=3, seed=1), "val")
    out = root / "run"
    rc = main(["train", "--data", str(root), "--model", "small", "--width", "0.25", "--epochs", "2",
               "--batch-size", "8", "--lr", "0.02", "--out", str(out), "--no-progress"])
    assert rc == 0
    return root, out


def test_train_writes_run_folder(tree):
    _, out = tree
    for name in ("latest.npz", "weights.npz", "log.jsonl", "curves.png", "filters.png"):
        assert (out / name).stat().st_size > 0, name
    ckpt = load_checkpoint(out / "latest.npz")
    assert ckpt["state"] == {"epoch": 2, "batch": 0, "global_step": 6,
                             "sums": {"loss": 0.0, "correct": 0, "seen": 0}}
    assert ckpt["classes"] == SyntheticShapes(1, num_classes=3).classes  # names from the mapping file
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [0, 1]
    assert all("val_top1" in r for r in epochs if r["kind"] == "epoch")


def test_resume_continues_to_the_same_step_count(tree, tmp_path, capsys):
    root, _ = tree
    args = ["train", "--data", str(root), "--model", "small", "--width", "0.25", "--epochs", "2",
            "--batch-size", "8", "--out", str(tmp_path), "--no-progress"]
    assert main([*args, "--max-steps", "4"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert main(["train", "--data", str(root), "--out", str(tmp_path), "--resume", "--no-progress"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out


def test_evaluate_prints_top1_top5(tree, capsys):
    root, out = tree
    assert main(["evaluate", "--checkpoint", str(out / "latest.npz"), "--data", str(root)]) == 0
    text = capsys.readouterr().out
    assert "12 images" in text and "top-1 accuracy" in text and "top-5 accuracy 1.0000" in text  # 3 classes
    assert main(["evaluate", "--weights", str(out / "weights.npz"), "--data", str(root)]) == 0
    assert capsys.readouterr().out.split(":")[1] == text.split(":")[1]  # same weights, same numbers


def test_classify_and_features_agree(tree, tmp_path, capsys):
    root, out = tree
    images = sorted(str(p) for p in (root / "val").glob("*.JPEG"))[:2]
    ckpt = str(out / "latest.npz")
    assert main(["classify", *images, "--checkpoint", ckpt, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(im) for line, im in zip(lines, images))

    # Section 3.3: dense over scales 1 and 2 (72x72 and 88x104 for the small model), fine stride, flips.
    assert main(["classify", *images, "--checkpoint", ckpt, "--scales", "1,2", "--top-k", "3"]) == 0
    dense = capsys.readouterr().out.strip().splitlines()
    assert len(dense) == 2 and all(line.startswith(im) and line.count(",") == 2 for line, im in zip(dense, images))
    # --scales takes scale numbers and sizes, mixed: the same two scales named three ways.
    for scales in ("72,2", "1,88x104"):
        assert main(["classify", *images, "--checkpoint", ckpt, "--scales", scales, "--top-k", "3"]) == 0
        assert capsys.readouterr().out.strip().splitlines() == dense, scales

    # Layer 8 of the small model (5 conv + 3 full) is the class scores: softmax = classify's.
    assert main(["features", *images, "--checkpoint", ckpt, "--layer", "8", "--out", str(tmp_path)]) == 0
    assert main(["features", *images, "--checkpoint", ckpt, "--layer", "5", "--out", str(tmp_path)]) == 0
    names = SyntheticShapes(1, num_classes=3).classes
    model_pooled = load_checkpoint(ckpt)["model_config"]
    for line, im in zip(lines, images):
        stem = im.rsplit("/", 1)[1].rsplit(".", 1)[0]
        scores = np.load(tmp_path / f"{stem}.layer8.npy")
        p = np.exp(scores - scores.max())
        p /= p.sum()
        best = int(np.argmax(p))
        assert line.split(": ")[1].startswith(f"{names[best]} {p[best]:.3f}")
        pooled = np.load(tmp_path / f"{stem}.layer5.npy")
        assert pooled.shape == (model_pooled.convs[-1].out_channels, 3, 3)  # 64 input, stride 16 -> 3x3
        assert pooled.min() >= 0  # after ReLU and max pooling


def test_classify_saves_class_maps_and_ten_view_agrees_with_library(tree, tmp_path, capsys):
    from PIL import Image

    from overfeat_np.multiscale import ten_view

    root, out = tree
    image = min(str(p) for p in (root / "val").glob("*.JPEG"))
    ckpt = str(out / "latest.npz")
    assert main(["classify", image, "--checkpoint", ckpt, "--scales", "1,2", "--coarse-stride",
                 "--save-maps", str(tmp_path / "maps")]) == 0
    capsys.readouterr()
    (png,) = (tmp_path / "maps").glob("*_maps.png")
    assert png.stem == image.rsplit("/", 1)[1].rsplit(".", 1)[0] + "_maps"
    assert Image.open(png).size[0] > 100

    assert main(["classify", image, "--checkpoint", ckpt, "--ten-view", "--top-k", "1"]) == 0
    line = capsys.readouterr().out.strip()
    p = ten_view(model_from_checkpoint(ckpt), np.asarray(Image.open(image).convert("RGB")))
    names = load_checkpoint(ckpt)["classes"]
    assert line == f"{image}: {names[int(np.argmax(p))]} {p.max():.3f}"

    # --save-maps without --scales has nothing to draw: a clean error, not a crash.
    assert main(["classify", image, "--checkpoint", ckpt, "--save-maps", str(tmp_path)]) == 1


def test_features_dense_maps_over_the_whole_image(tree, tmp_path):
    root, out = tree
    image = min(str(p) for p in (root / "val").glob("*.JPEG"))
    assert main(["features", image, "--checkpoint", str(out / "latest.npz"), "--layer", "5",
                 "--no-crop", "--resize", "96", "--out", str(tmp_path)]) == 0
    (f,) = tmp_path.glob("*.npy")
    assert np.load(f).shape[1:] == (5, 5)  # 96 = 64 + 2 * 16: two more positions per axis


# --- evaluate --task localization | detection ---------------------------------------------------------
@pytest.fixture(scope="module")
def box_models(tmp_path_factory):
    """Untrained tiny models in files: classifier, its regressor, a detector made from it, its regressor.

    The detector's first class is biased up so that every location proposes a box of it, and the
    detector's regressor outputs each location's window: the evaluation then has boxes to rank, some
    of them on objects, and its mAP is a number other than 0."""
    d = tmp_path_factory.mktemp("boxes")
    clf = overfeat_small(3, width=0.25, seed=0)
    det = make_detector(clf)
    last = max((k for k in det.params if k.startswith("classifier.") and k.endswith(".b")),
               key=lambda k: int(k.split(".")[1]))
    det.params[last][0] = 3.0  # class 0 at p ~ 0.87 everywhere, the location's weights vary it a little
    files = {"weights": d / "w.npz", "regressor": d / "reg.npz", "detector": d / "det.npz",
             "det_regressor": d / "det_reg.npz"}
    save_weights(clf, files["weights"])
    save_regressor(build_regressor(clf, seed=1), files["regressor"])
    save_weights(det, files["detector"])
    det_reg = build_regressor(det, seed=2)
    det_reg.head.layers[-1].params["b"][...] = [0, 0, 1, 1]  # (left, top, right, bottom) of the window
    save_regressor(det_reg, files["det_regressor"])
    return {k: str(v) for k, v in files.items()}, clf, det


def _numbers_after(text, label):
    """The float printed right after `label` in text."""
    return float(text.split(label, 1)[1].split()[0].rstrip(",;"))


def test_evaluate_localization_reports_merge_nms_and_centre_box_on_the_seed_1000_set(box_models, capsys):
    files, clf, _ = box_models
    argv = ["evaluate", "--task", "localization", "--weights", files["weights"], "--regressor", files["regressor"],
            "--synthetic", "10", "--scales", "72x72,88x88"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("10 images")
    from overfeat_np.regressor import load_regressor

    val = localization_set(10, 1000, 64, 3)  # the documented evaluation set: --seed 0 + 1000
    err = evaluate_localization(clf, load_regressor(files["regressor"], clf), val, ((72, 72), (88, 88)))
    assert _numbers_after(out, "(merge, the default)") == pytest.approx(err["merge"], abs=5e-5)
    assert _numbers_after(out, "Section 4.3's merge") == pytest.approx(err["paper"], abs=5e-5)
    assert _numbers_after(out, "NMS") == pytest.approx(err["nms"], abs=5e-5)
    assert _numbers_after(out, "true class") == pytest.approx(centre_box_error(val), abs=5e-5)
    assert main([*argv, "--limit", "4"]) == 0
    assert capsys.readouterr().out.startswith("4 images")


def test_evaluate_detection_reports_map_and_matches_evaluate_detection(box_models, tmp_path, capsys):
    files, _, det = box_models
    argv = ["--detector", files["detector"], "--regressor", files["det_regressor"], "--synthetic", "8",
            "--scales", "136,168"]
    assert main(["evaluate", "--task", "detection", *argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    from overfeat_np.regressor import load_regressor

    data = detection_set(8, 1000, 64, 3)
    m, per_class, _ = evaluate_detection(det, load_regressor(files["det_regressor"], det), data,
                                         ((136, 136), (168, 168)))
    assert 0 < m < 1
    assert _numbers_after(out, "mAP") == pytest.approx(m, abs=5e-5)
    saved = json.loads((tmp_path / "map.json").read_text())
    assert saved["images"] == 8 and saved["mAP"] == pytest.approx(m)
    assert len(saved["AP"]) == len(per_class) and (tmp_path / "pr_curves.png").stat().st_size > 0
    assert main(["evaluate-detection", *argv]) == 0  # the standalone subcommand says the same
    assert capsys.readouterr().out == out


def test_detect_min_score_keeps_the_best_detections_only(box_models, tmp_path):
    from PIL import Image

    files, _, _ = box_models
    Image.fromarray(detection_set(1, 7, 64, 3)[0]["image"]).save(tmp_path / "a.png")

    def scores(*extra):
        assert main(["detect", str(tmp_path / "a.png"), "--detector", files["detector"], "--regressor",
                     files["det_regressor"], "--scales", "136,168", "--out", str(tmp_path), *extra]) == 0
        data = json.loads((tmp_path / "detections.json").read_text())
        return data["min_score"], [d["score"] for d in data["images"][0]["detections"]]

    _, every = scores()
    assert len(every) >= 2
    cut = float(np.median(every))
    recorded, kept = scores("--min-score", str(cut))
    assert recorded == cut and kept == [s for s in every if s >= cut]  # the same detections, cut at the score


def test_evaluate_tasks_name_their_missing_inputs(box_models, capsys):
    files, _, _ = box_models
    data = ["--synthetic", "4"]
    cases = [
        (["--task", "localization", "--weights", files["weights"]], "needs --regressor"),
        (["--task", "localization", "--regressor", files["regressor"]], "needs --checkpoint or --weights"),
        (["--task", "localization", "--weights", files["weights"], "--regressor", "nope.npz"], "does not exist"),
        (["--task", "detection", "--regressor", files["det_regressor"]], "needs --detector"),
        (["--task", "detection", "--detector", files["detector"]], "needs --regressor"),
        (["--task", "detection", "--detector", "nope.npz", "--regressor", files["det_regressor"]], "does not exist"),
        (["--weights", files["weights"], "--regressor", files["regressor"], "--task", "classification",
          "--checkpoint", "x"], None),  # argparse: --checkpoint and --weights exclude each other
        ([], "needs --checkpoint or --weights"),
    ]
    for extra, message in cases:
        code = main(["evaluate", *extra, *data])
        err = capsys.readouterr().err
        if message is None:
            assert code == 2, extra
            continue
        assert code == 1 and message in err and "Traceback" not in err, (extra, err)
    assert main(["evaluate", "--task", "segmentation", *data]) == 2


def test_cupy_without_gpu_is_a_clean_error(tmp_path, capsys, no_gpu):
    required = {"train": ["--synthetic", "16"], "evaluate": ["--weights", "w", "--synthetic", "8"],
                "classify": ["x.png", "--weights", "w"], "features": ["x.png", "--weights", "w", "--layer", "1"],
                "demo": ["--out", str(tmp_path)]}
    for cmd, extra in required.items():
        assert cmd in COMMANDS
        assert main([cmd, *extra, "--backend", "cupy"]) == 1, cmd
        err = capsys.readouterr().err
        assert "backend='cupy'" in err and "Traceback" not in err, cmd
    assert not list(tmp_path.iterdir())  # failed before doing any work


def test_missing_inputs_are_clean_errors(tmp_path, tree, capsys):
    _, out = tree
    cases = [
        (["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "does not exist"),
        (["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")], "does not exist"),  # no train/
        (["train", "--synthetic", "16", "--out", str(tmp_path / "o"), "--resume"], "cannot resume"),
        (["classify", str(tmp_path / "no.png"), "--checkpoint", str(out / "latest.npz")], "does not exist"),
        (["classify", str(tmp_path / "no.png"), "--checkpoint", str(tmp_path / "c.npz")], "no checkpoint"),
        (["evaluate", "--weights", str(out / "latest.npz"), "--synthetic", "8"], "not an overfeat-np weights"),
        (["features", "a.png", "--checkpoint", str(out / "latest.npz"), "--layer", "9"], "--layer must be in 1..8"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert main(["train"]) == 2  # usage error from argparse: --data or --synthetic is required
    assert main(["classify", "x.png", "--weights", "w", "--backend", "tpu"]) == 2


def test_python_dash_m_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "overfeat_np", "--help"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0
    for name in ("train", "evaluate", "classify", "features", "demo", "localize", "detect", "evaluate-detection"):
        assert name in res.stdout


# --- one option vocabulary ----------------------------------------------------------------------------
def test_scales_accept_numbers_and_sizes_in_localize_and_detect(box_models, tmp_path, capsys):
    from PIL import Image

    files, _, _ = box_models
    image = str(tmp_path / "a.png")
    Image.fromarray(detection_set(1, 7, 64, 3)[0]["image"]).save(image)
    # localize: scales 1 and 3 of the small model are 72x72 and 104x136; --out names the folder.
    outputs = []
    for scales in ("1,3", "72,104x136", "72x72,3"):
        out = tmp_path / f"loc{len(outputs)}"
        assert main(["localize", image, "--weights", files["weights"], "--regressor", files["regressor"],
                     "--scales", scales, "--out", str(out)]) == 0
        outputs.append(capsys.readouterr().out.replace(str(out), "OUT"))
        assert (out / "a_boxes.png").stat().st_size > 0
    assert outputs[0] == outputs[1] == outputs[2] and "1. " in outputs[0]
    # detect: scale 4 is 136x168; 136 is a square size.
    found = []
    for scales in ("4,136", "136x168,136x136"):
        assert main(["detect", image, "--detector", files["detector"], "--regressor", files["det_regressor"],
                     "--scales", scales, "--out", str(tmp_path / "det")]) == 0
        data = json.loads((tmp_path / "det" / "detections.json").read_text())
        assert data["scales"] == [[136, 168], [136, 136]]
        found.append(data["images"][0]["detections"])
    assert found[0] == found[1] and len(found[0]) > 0
    capsys.readouterr()


def test_bad_scales_is_one_error_line(box_models, tree, tmp_path, capsys):
    files, _, _ = box_models
    _, out = tree
    image = str(tmp_path / "a.png")
    from PIL import Image

    Image.fromarray(detection_set(1, 7, 64, 3)[0]["image"]).save(image)
    model = ["--weights", files["weights"]]
    cases = {
        "classify": [image, "--checkpoint", str(out / "latest.npz")],
        "localize": [image, *model, "--regressor", files["regressor"], "--out", str(tmp_path / "l")],
        "train-regressor": [*model, "--synthetic", "4", "--out", str(tmp_path / "r.npz")],
        "evaluate": ["--task", "localization", *model, "--regressor", files["regressor"], "--synthetic", "4"],
        "detect": [image, "--detector", files["detector"], "--out", str(tmp_path / "d")],
        "train-detector": [*model, "--synthetic", "4", "--steps", "1", "--out", str(tmp_path / "t")],
        "evaluate-detection": ["--detector", files["detector"], "--synthetic", "4"],
    }
    for cmd, argv in cases.items():
        for bad in ("abc", "1,,2", "7x", "40"):  # not a number; empty item; half a size; smaller than the input
            assert main([cmd, *argv, "--scales", bad]) == 2, (cmd, bad)  # a usage error
            err = capsys.readouterr().err
            assert err.startswith(f"overfeat-np {cmd}: error: --scales") and err.count("\n") == 1, (cmd, bad, err)
    assert not (tmp_path / "t").exists() and not (tmp_path / "r.npz").exists()  # refused before any training


def _required_args(tmp_path) -> dict:
    """The least each subcommand needs to parse."""
    model = ["--weights", "w.npz"]
    return {"train": ["--synthetic", "8"], "evaluate": [*model, "--synthetic", "8"], "classify": ["x.png", *model],
            "features": ["x.png", *model, "--layer", "1"], "demo": [],
            "train-regressor": [*model, "--synthetic", "8"], "localize": ["x.png", *model, "--regressor", "r.npz"],
            "train-detector": [*model, "--synthetic", "8"], "detect": ["x.png", "--detector", "d.npz"],
            "evaluate-detection": ["--detector", "d.npz", "--synthetic", "8"]}


def test_every_subcommand_takes_the_compute_options(tmp_path, capsys):
    required = _required_args(tmp_path)
    assert set(required) == set(COMMANDS)  # a new subcommand must be added here
    parser = build_parser()
    for cmd, argv in required.items():
        args = parser.parse_args([cmd, *argv, "--backend", "numpy", "--blas-threads", "3", "--no-progress"])
        assert (args.backend, args.blas_threads, args.no_progress) == ("numpy", 3, True), cmd
        args = parser.parse_args([cmd, *argv])
        assert (args.backend, args.blas_threads, args.no_progress) == ("numpy", None, False), cmd
        assert main([cmd, "--help"]) == 0
        assert "--out-dir" not in capsys.readouterr().out, cmd  # one vocabulary: --out everywhere
    assert main(["classify", "x.png", "--weights", "w", "--blas-threads", "0"]) == 2  # usage error


def test_main_resolves_the_backend_once_and_limits_the_blas_around_the_run(monkeypatch):
    from threadpoolctl import threadpool_info

    from overfeat_np.cli.registry import Command

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen = {}

    def probe(args):
        seen.update(xp=args.xp, has_name=hasattr(args, "backend"), threads=blas_threads())
        return 0

    before = blas_threads()
    target = max(before) + 1
    monkeypatch.setitem(COMMANDS, "probe", Command("probe", "test probe", lambda p: None, probe))
    assert main(["probe", "--blas-threads", str(target)]) == 0
    assert seen == {"xp": np, "has_name": False, "threads": [target] * len(before)}  # the module, not its name
    assert blas_threads() == before  # restored after the command
