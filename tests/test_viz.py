"""Pictures a person reads without the code: the wrong guess names the true class, axes say what
their numbers are."""

import numpy as np

from overfeat_np.models import overfeat_small
from overfeat_np.viz import plot_filters, plot_predictions


def test_a_wrong_prediction_shows_the_true_class():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    probs = np.array([[0.9, 0.1], [0.8, 0.2]], np.float32)
    fig = plot_predictions(images, np.array([0, 1]), probs, ["circle", "square"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["circle (0.90)", "circle (0.80)\ntrue: square"]


def test_filters_say_why_a_short_run_looks_like_noise():
    fig = plot_filters(overfeat_small(3, width=0.25))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("random start" in t for t in texts)
