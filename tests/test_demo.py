"""`overfeat-np demo --quick`: all three tasks trained, measured and drawn, and the CLI agrees.

One test, because the quick demo (~20-30 s on 2 cores) is the expensive part: a module fixture
shared by several tests would run once per xdist worker.
"""

import json

import numpy as np
from PIL import Image

from overfeat_np.cli import main
from overfeat_np.demo import best_f1_scores


def _after(text, label):
    return float(text.split(label, 1)[1].split()[0].rstrip(",;"))


def test_quick_demo_shows_three_tasks_and_evaluate_reproduces_its_figures(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("curves.png", "filters.png", "predictions.png", "pr_curves.png", "showcase.png", "latest.npz",
                 "weights.npz", "regressor.npz", "detector.npz", "detector_regressor.npz", "classes.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    s = json.loads((tmp_path / "summary.json").read_text())
    c, loc, det, show = s["classification"], s["localization"], s["detection"], s["showcase"]

    # Classification: 120 steps; chance is 1/6.
    assert 0.5 <= c["val_top1"] <= c["val_top5"] <= 1
    # Localization: the centre box knows the true class, so only its box can be wrong; the regressor
    # must frame objects far better (quick run: ~0.2-0.3 vs ~0.73 on 40 images).
    errors = (loc["error_merge"], loc["error_paper"], loc["error_nms"], loc["error_centre_box"])
    assert all(0 <= e <= 1 for e in errors)
    assert loc["error_merge"] <= loc["error_centre_box"] - 0.2 and loc["error_nms"] <= loc["error_centre_box"] - 0.2
    # Detection: the background class must lift mAP well above the classifier used alone (~0.6 vs ~0.2).
    assert 0.3 <= det["mAP"] <= 1 and 0 <= det["mAP_classifier_only"] <= det["mAP"] - 0.15
    assert det["loss"][1] < det["loss"][0]

    # One picture: a row per fresh image with objects, four panels wide.
    w, h = Image.open(tmp_path / "showcase.png").size
    assert show["images"] == 3 and all(n > 0 for n in show["objects"]) and w > 1000 and h > 3 * 250
    assert sum(show["detections"]) > 0
    assert show["method"] == "accumulation (merge)"  # what the picture's panel titles name
    for label in ("top-1", "accumulation (merge, the default)", "Section 4.3's merge", "mAP", "showcase.png"):
        assert label in printed, label
    assert "greedy merge" not in printed  # the default is not Section 4.3's merge: name the method used
    assert _after(printed, "(merge, the default)") == round(loc["error_merge"], 3)
    assert _after(printed, "Section 4.3's merge") == round(loc["error_paper"], 3)
    assert _after(printed, "mAP") == round(det["mAP"], 3)

    # The CLI evaluates the demo's files on the same held-out sets (seed 1000) and gets its numbers.
    assert main(["evaluate", "--task", "localization", "--weights", str(tmp_path / "weights.npz"),
                 "--regressor", str(tmp_path / "regressor.npz"), "--synthetic", str(loc["val_images"]),
                 "--scales", ",".join(f"{h}x{w}" for h, w in loc["scales"])]) == 0
    out = capsys.readouterr().out
    assert _after(out, "(merge, the default)") == round(loc["error_merge"], 4)
    assert _after(out, "Section 4.3's merge") == round(loc["error_paper"], 4)
    assert _after(out, "NMS") == round(loc["error_nms"], 4)
    assert _after(out, "true class") == round(loc["error_centre_box"], 4)
    assert main(["evaluate", "--task", "detection", "--detector", str(tmp_path / "detector.npz"),
                 "--regressor", str(tmp_path / "detector_regressor.npz"),
                 "--synthetic", str(det["test_images"])]) == 0
    assert _after(capsys.readouterr().out, "mAP") == round(det["mAP"], 4)


def test_best_f1_scores_picks_the_score_of_the_f1_peak():
    # Three objects; detections by score are hit, hit, miss, miss, hit: F1 = 0.5, 0.8, 0.67, 0.57, 0.75.
    p = np.array([1, 1, 2 / 3, 1 / 2, 3 / 5])
    r = np.array([1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    curves = {0: (p, r, np.array([9.0, 7.0, 5.0, 2.0, 1.0])), 1: (np.zeros(0), np.zeros(0), np.zeros(0)),
              2: (np.array([0.0]), np.array([np.nan]), np.array([3.0]))}  # no detections / no ground truth
    assert best_f1_scores(curves) == {0: 7.0}
