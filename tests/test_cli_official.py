"""`--official` weights and `--preprocess official` on the command line: the release's own
preprocessing (data.official) is what classify and features feed the network."""

import numpy as np
import pytest
from PIL import Image

from overfeat_np.cli import main, options
from overfeat_np.data import load_rgb, official_preprocess
from overfeat_np.losses import softmax
from overfeat_np.models import he_init, layer_output, overfeat_small


@pytest.fixture
def official(monkeypatch, tmp_path):
    """A small stand-in for the release's weights (the real files are 580 MB and not shipped):
    load_official returns it with class names, as weights.load_official does."""
    model = he_init(overfeat_small(5, seed=4))
    model.class_names = [f"name{i}" for i in range(5)]
    calls = []

    def fake_load_official(path, name, backend="numpy"):
        calls.append((str(path), name))
        return model

    monkeypatch.setattr(options, "load_official", fake_load_official)
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (150, 260, 3), dtype=np.uint8)).save(image)
    return model, calls, str(image), tmp_path


def _printed_probs(out):
    pairs = out.split(": ", 1)[1].split(", ")
    return {name: float(p) for name, p in (pair.rsplit(" ", 1) for pair in pairs)}


def test_classify_official_feeds_the_release_preprocessing(official, capsys):
    model, calls, image, _ = official
    assert main(["classify", image, "--official", "/x/net_weight_1", "--top-k", "5"]) == 0
    assert calls == [("/x/net_weight_1", "accurate")]  # the file name names the model
    got = _printed_probs(capsys.readouterr().out.strip())
    x = official_preprocess(load_rgb(image), model)  # (1, 3, 64, 64): the top-left 64 of the 231 crop
    want = softmax(model.forward(x)[0].astype(np.float64))[0]
    assert got == {f"name{c}": round(float(want[c]), 3) for c in range(5)}
    # the package's own preprocessing gives other inputs, so other numbers
    assert main(["classify", image, "--official", "/x/net_weight_0", "--preprocess", "standard"]) == 0
    assert _printed_probs(capsys.readouterr().out.strip()) != got


def test_features_official_no_crop_is_the_whole_image(official, capsys):
    model, _, image, tmp_path = official
    assert main(["features", image, "--official", "/x/net_weight_0", "--layer", "2", "--no-crop",
                 "--out", str(tmp_path)]) == 0
    y = np.load(tmp_path / "photo.layer2.npy")
    want = layer_output(model, official_preprocess(load_rgb(image), model, task="features"), 2)[0]
    np.testing.assert_array_equal(y, want)


def test_official_preprocessing_refuses_dense_options(official, capsys):
    _, _, image, _ = official
    assert main(["classify", image, "--official", "w", "--scales", "1"]) == 2
    assert "single centre crop" in capsys.readouterr().err
