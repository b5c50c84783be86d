"""Every bad input to the command line is one line that names the problem and the fix, never a
traceback; usage errors (a bad option value) exit with 2, other failures with 1."""

import os

import numpy as np
import pytest
from PIL import Image

from overfeat_np.cli import main
from overfeat_np.models import overfeat_small
from overfeat_np.serialization import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.npz"
    save_weights(overfeat_small(3, width=0.25), path)
    return str(path)


def _one_line(capsys, argv, code, *fragments):
    got = main(argv)
    err = capsys.readouterr().err
    assert got == code, (argv, got, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, (argv, err)
    for f in fragments:
        assert f in err, (argv, f, err)
    return err


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--synthetic", "0"], "must be at least 1, got 0"),
    (["train", "--synthetic", "-10"], "must be at least 1, got -10"),
    (["train-regressor", "--weights", "w", "--synthetic", "0"], "must be at least 1"),
    (["train-detector", "--weights", "w", "--synthetic", "0"], "must be at least 1"),
    (["train", "--synthetic", "8", "--lr", "nan"], "must be a finite number > 0, got nan"),
    (["train", "--synthetic", "8", "--lr", "-1"], "must be a finite number > 0"),
    (["train", "--synthetic", "8", "--milestones", "a,b"], "comma-separated whole numbers like 30,50,60"),
    (["classify", "x.png", "--weights", "w", "--top-k", "0"], "must be at least 1, got 0"),
    (["train", "--synthetic", "8", "--blas-threads", "0"], "must be at least 1"),
])
def test_bad_option_values_are_usage_errors(capsys, argv, fragment):
    _one_line(capsys, argv, 2, fragment)


def test_bad_scales_are_usage_errors(capsys, weights, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(image)
    _one_line(capsys, ["classify", str(image), "--weights", weights, "--scales", "abc"], 2,
              "--scales: cannot read 'abc'")


def test_a_folder_given_as_an_image(capsys, weights, tmp_path):
    _one_line(capsys, ["classify", str(tmp_path), "--weights", weights], 1, "is a folder, not an image")


def test_a_tiny_image_is_refused_with_its_size(capsys, weights, tmp_path):
    image = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(image)
    _one_line(capsys, ["classify", str(image), "--weights", weights], 1, "only 1x1 pixels", "at least 8")


def test_out_under_a_regular_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _one_line(capsys, ["train", "--synthetic", "16", "--out", str(blocker / "run"), "--max-steps", "1",
                       "--batch-size", "8", "--no-progress"], 1, "cannot use", "choose another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder, so nothing is refused")
def test_unwritable_out(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _one_line(capsys, ["train", "--synthetic", "16", "--out", str(locked / "run"), "--max-steps", "1",
                       "--batch-size", "8", "--no-progress"], 1, "Permission denied", "choose another --out")


def test_a_diverging_loss_is_one_line(capsys, tmp_path):
    _one_line(capsys, ["train", "--synthetic", "32", "--out", str(tmp_path / "r"), "--lr", "1e30", "--epochs", "1",
                       "--batch-size", "16", "--no-progress"], 1, "lower the learning rate")


def test_train_reports_accuracy_as_accuracy(capsys, tmp_path):
    assert main(["train", "--synthetic", "32", "--out", str(tmp_path / "r"), "--epochs", "1", "--batch-size", "16",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy top-1" in out and "(error" in out


def test_checkpoint_every_steps_writes_mid_epoch_checkpoints(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--synthetic", "64", "--batch-size", "16", "--epochs", "1", "--max-steps", "3",
                 "--checkpoint-every-steps", "2", "--out", str(out), "--no-progress"]) == 0
    from overfeat_np.checkpoint import load_checkpoint

    state = load_checkpoint(out / "latest.npz")["state"]
    assert (state["epoch"], state["batch"], state["global_step"]) == (0, 3, 3)  # mid-epoch, resumable
    assert load_checkpoint(out / "latest.npz")["train_config"]["checkpoint_every"] == 2


def test_boxes_outside_their_image_are_reported(tmp_path, capsys):
    from overfeat_np.cli import build_parser
    from overfeat_np.cli.options import image_folder, report_boxes
    from overfeat_np.data import write_voc_xml

    folder = tmp_path / "train" / "n00000001"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "a.png")
    write_voc_xml(tmp_path / "Annotation" / "n00000001" / "a.xml", np.array([[5, 5, 20, 20], [30, 30, 70, 45]]),
                  ["n00000001"] * 2, (50, 40))
    data = image_folder(str(tmp_path), "train", outside_boxes="drop")
    assert len(data[0]["boxes"]) == 1
    report_boxes(data)
    assert "1 of 2 boxes reached outside their image: 0 clipped, 1 dropped" in capsys.readouterr().out
    for cmd in ("train-regressor", "train-detector", "evaluate"):
        args = build_parser().parse_args([cmd, "--weights", "w", "--data", "d", "--outside-boxes", "drop"])
        assert args.outside_boxes == "drop"
