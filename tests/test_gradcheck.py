"""The gradient checker must pass correct layers and catch wrong ones, loudly."""

import numpy as np
import pytest

from overfeat_np.gradcheck import check_layer_gradients, numerical_gradient, relative_error
from overfeat_np.layers import Conv2D, Linear, ReLU, Sequential


class ScaledBackward(Linear):
    """A Linear whose backward is off by a factor in one output (dx or dW)."""

    def __init__(self, *args, wrong="input", factor=1.01, **kw):
        super().__init__(*args, **kw)
        self.wrong, self.factor = wrong, factor

    def backward(self, dy, cache):
        dx, grads = super().backward(dy, cache)
        if self.wrong == "input":
            dx = dx * self.factor
        else:
            grads = dict(grads, W=grads["W"] * self.factor)
        return dx, grads


class MutatesDy(ReLU):
    """Right gradient, but zeroes the caller's dy in place (a classic memory-saving bug)."""

    def backward(self, dy, cache):
        dy *= cache > 0
        return dy.copy(), {}


class MissingGrad(Linear):
    def backward(self, dy, cache):
        dx, grads = super().backward(dy, cache)
        return dx, {"W": grads["W"]}


def x_in(shape=(3, 5)):
    return np.random.default_rng(0).standard_normal(shape)


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_correct_layers_pass_with_tiny_errors(mode):
    errs = check_layer_gradients(Linear(5, 4, seed=0), x_in(), mode=mode)
    assert set(errs) == {"input", "W", "b"} and max(errs.values()) < 1e-6


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("wrong", ["input", "W"])
def test_a_slightly_wrong_backward_is_caught(mode, wrong):
    layer = ScaledBackward(5, 4, seed=0, wrong=wrong)
    name = "input" if wrong == "input" else "W"
    with pytest.raises(AssertionError, match=rf"(gradient|derivative) of {name} wrong.*relative error"):
        check_layer_gradients(layer, x_in(), mode=mode)


def test_full_mode_reports_where():
    with pytest.raises(AssertionError, match=r"at index \(\d+, \d+\): analytic .* vs numerical"):
        check_layer_gradients(ScaledBackward(5, 4, seed=0, factor=1.5), x_in())


def test_mutating_dy_is_caught():
    with pytest.raises(AssertionError, match="modified the incoming gradient"):
        check_layer_gradients(MutatesDy(), x_in())


def test_missing_gradient_key_is_caught():
    with pytest.raises(AssertionError, match="grads keys"):
        check_layer_gradients(MissingGrad(5, 4, seed=0), x_in())


def test_layer_without_input_gradient_needs_check_input_false():
    layer = Conv2D(2, 3, 3, seed=0, need_input_grad=False)
    x = x_in((1, 2, 5, 5))
    with pytest.raises(AssertionError, match="check_input=False"):
        check_layer_gradients(layer, x)
    assert set(check_layer_gradients(layer, x, check_input=False)) == {"W", "b"}


def test_nested_sequential_is_checked_in_float64():
    """Parameters of nested Sequentials are converted too: the error is at float64 level."""
    net = Sequential(Sequential(Linear(4, 6, seed=0), ReLU()), Linear(6, 3, seed=1))
    errs = check_layer_gradients(net, x_in((3, 4)) * 10)
    assert max(errs.values()) < 1e-7
    assert net.layers[0].layers[0].params["W"].dtype == np.float32  # the caller's layer untouched


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be"):
        check_layer_gradients(ReLU(), x_in(), mode="fast")


def test_numerical_gradient_of_a_known_function_and_restores_x():
    x = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])


def test_relative_error_is_scale_free_and_zero_when_equal():
    a = np.array([1.0, 2.0, -3.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, a * 1.1) == pytest.approx(relative_error(1e6 * a, 1.1e6 * a))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
