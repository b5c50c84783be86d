"""Losses against a direct float64 computation, their gradients against finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.gradcheck import numerical_gradient
from overfeat_np.losses import l2_loss, softmax_cross_entropy

seeds = st.integers(0, 2**32 - 1)


@st.composite
def ce_problems(draw):
    """logits (N, C) or (N, C, H, W) and labels with some entries = ignore_index (-1)."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 6))
    spatial = draw(st.sampled_from([(), (1, 1), (2, 3)]))
    rng = np.random.default_rng(draw(seeds))
    logits = rng.standard_normal((n, c) + spatial) * 3
    labels = rng.integers(0, c, (n,) + spatial)
    labels[rng.random(labels.shape) < draw(st.sampled_from([0.0, 0.3]))] = -1
    return logits, labels


def ce_reference(logits, labels):
    """Cross-entropy in float64 with plain loops: -log softmax(logits at one position)[label]."""
    c = logits.shape[1]
    z = np.moveaxis(logits, 1, -1).reshape(-1, c)
    total, count = 0.0, 0
    for row, y in zip(z, labels.reshape(-1)):
        if y == -1:
            continue
        total += np.log(np.sum(np.exp(row - row.max()))) + row.max() - row[y]
        count += 1
    return total / max(count, 1)


@given(ce_problems())
def test_softmax_cross_entropy_matches_reference_and_finite_differences(problem):
    logits, labels = problem
    loss, d = softmax_cross_entropy(logits, labels)
    assert np.isclose(loss, ce_reference(logits, labels), rtol=1e-10, atol=1e-12)
    num = numerical_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    np.testing.assert_allclose(d, num, rtol=1e-5, atol=1e-8)
    assert not d[np.broadcast_to((labels == -1)[:, None], d.shape)].any()  # ignored: no gradient


def test_softmax_cross_entropy_float32_matches_float64():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((8, 10, 3, 3)) * 4, rng.integers(0, 10, (8, 3, 3))
    l32, d32 = softmax_cross_entropy(logits.astype(np.float32), labels)
    l64, d64 = softmax_cross_entropy(logits, labels)
    assert d32.dtype == np.float32
    assert np.isclose(l32, l64, rtol=1e-5)
    np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_softmax_cross_entropy_is_stable_for_huge_logits(scale):
    """exp(1e4) overflows; the max-shifted form gives the same answer as modest logits would."""
    base = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
    labels = np.array([2, 1])
    shifted = base + np.float32(scale) * np.array([[1], [-1]], np.float32)  # a constant per row
    loss, d = softmax_cross_entropy(shifted, labels)
    loss_ref, d_ref = softmax_cross_entropy(base, labels)
    if scale < 1e6:  # a float32 shift of 1e30 swallows the small differences entirely
        assert np.isclose(loss, loss_ref, rtol=1e-2)
        np.testing.assert_allclose(d, d_ref, atol=1e-2)
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    huge = np.array([[scale, 0.0, -scale]], np.float32)
    loss, d = softmax_cross_entropy(huge, np.array([2]))
    assert np.isfinite(loss) and np.isclose(loss, 2 * scale, rtol=1e-6)
    np.testing.assert_allclose(d, [[1, 0, -1]], atol=1e-6)


def test_softmax_cross_entropy_all_ignored_is_zero():
    loss, d = softmax_cross_entropy(np.ones((2, 3)), np.array([-1, -1]))
    assert loss == 0.0 and not d.any()


def test_ignore_index_may_lie_outside_the_classes():
    logits, labels = np.zeros((2, 3)), np.array([255, 1])
    loss, _ = softmax_cross_entropy(logits, labels, ignore_index=255)
    assert np.isclose(loss, np.log(3))


@pytest.mark.parametrize("logits,labels,match", [
    (np.zeros(3), np.array([0]), r"logits must be \(N, C"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), r"labels shape \(3,\) does not match logits \(2, 3\)"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), "integer class indices"),
    (np.zeros((2, 3)), np.array([0, 3]), r"\[0, 3\)"),
    (np.zeros((2, 3)), np.array([0, -2]), r"\[0, 3\)"),
])
def test_softmax_cross_entropy_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(logits, labels)


@given(st.integers(1, 5), st.sampled_from([(4,), (2, 3, 4)]), st.booleans(), seeds)
def test_l2_loss_matches_reference_and_finite_differences(n, tail, masked, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal((n,) + tail), rng.standard_normal((n,) + tail)
    mask = (rng.random((n,) + tail[:-1]) < 0.6).astype(np.float64) if masked else None
    loss, d = l2_loss(pred, target, mask)
    w = np.ones((n,) + tail[:-1]) if mask is None else mask
    count = n if mask is None else max(w.sum(), 1.0)
    ref = 0.5 * np.sum(w[..., None] * (pred - target) ** 2) / count
    assert np.isclose(loss, ref, rtol=1e-12)
    num = numerical_gradient(lambda: l2_loss(pred, target, mask)[0], pred)
    np.testing.assert_allclose(d, num, rtol=1e-5, atol=1e-8)


def test_l2_loss_keeps_float32_and_leaves_inputs_alone():
    pred, target = np.ones((3, 4), np.float32), np.zeros((3, 4), np.float32)
    loss, d = l2_loss(pred, target, np.array([1, 0, 1]))
    assert d.dtype == np.float32 and loss == pytest.approx(2.0)
    assert not d[1].any() and pred.all() and not target.any()


@pytest.mark.parametrize("pred,target,mask,match", [
    (np.zeros((2, 4)), np.zeros((2, 3)), None, r"pred shape \(2, 4\) does not match target shape \(2, 3\)"),
    (np.zeros((2, 4)), np.zeros((2, 4)), np.ones(3), r"mask shape \(3,\) must equal pred's leading axes \(2,\)"),
])
def test_l2_loss_bad_input(pred, target, mask, match):
    with pytest.raises(ValueError, match=match):
        l2_loss(pred, target, mask)
