"""Gradient checks: hand-written backward against numerical differentiation, in float64.

Two checks (used by the tests and the lessons):
- `check_layer_gradients(..., mode="full")`: centered finite differences for every element of the
  input and of every parameter; exact but costs two forward passes per element.
- `mode="directional"`: one random direction v per tensor, comparing the centered difference of
  f along v with <analytic gradient, v> (Chainer's check_backward); cheap for big layers.
Both raise AssertionError with the relative error and where it occurred; they never just print.
The scalar checked is f(x) = sum(layer(x) * g) for a fixed random upstream gradient g.
"""

from __future__ import annotations

import copy

import numpy as np

from .backend import to_numpy


def relative_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|, tiny): scale-free, 0 for identical arrays."""
    a, b = np.asarray(to_numpy(a), dtype=np.float64), np.asarray(to_numpy(b), dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12))) if a.size else 0.0


def numerical_gradient(f, x, eps: float = 1e-6):
    """Centered differences of the scalar f() with respect to every element of x (modified in place
    and restored). x must be float64. Returns an array shaped like x."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def _rng_layers(layer):
    found = [layer] if hasattr(layer, "rng") else []
    for sub in getattr(layer, "layers", []):
        found += _rng_layers(sub)
    return found


def _to_float64(layer):
    """Turn every parameter of `layer` (and of nested Sequentials) into a float64 host array."""
    subs = getattr(layer, "layers", None)
    if subs is not None:
        for sub in subs:
            _to_float64(sub)
    else:
        layer.params = {k: np.asarray(to_numpy(v), dtype=np.float64) for k, v in layer.params.items()}


def _float64_copy(layer):
    layer = copy.deepcopy(layer)
    _to_float64(layer)
    return layer


def _where(arr_err, shape):
    idx = int(np.argmax(arr_err))
    return np.unravel_index(idx, shape)


def check_layer_gradients(layer, x, *, train: bool = False, mode: str = "full", seed: int = 0,
                          eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8,
                          check_input: bool = True):
    """Assert that `layer.backward` matches numerical gradients for the input and every parameter.

    layer: any object with forward/backward/params (float32 params are checked in a float64 copy);
    x: input array (any float dtype, host). Raises AssertionError naming the tensor, the relative
    error and the worst index (full mode) on failure. Returns {name: relative error}.
    An element passes when |numerical - analytic| <= atol + noise + rtol * (|numerical| + |analytic|),
    noise being the finite-difference rounding floor for the size of f.
    """
    if mode not in ("full", "directional"):
        raise ValueError(f"mode must be 'full' or 'directional', got {mode!r}")
    layer = _float64_copy(layer)
    x = np.array(to_numpy(x), dtype=np.float64)
    rng = np.random.default_rng(seed)
    # Random layers (dropout) must draw the same mask on every evaluation.
    rng_states = [(lay, copy.deepcopy(lay.rng.bit_generator.state)) for lay in _rng_layers(layer)]

    def run_forward(inp):
        for lay, state in rng_states:
            lay.rng.bit_generator.state = copy.deepcopy(state)
        return layer.forward(inp, train=train)

    y, cache = run_forward(x)
    g = rng.standard_normal(y.shape)
    g_before = g.copy()
    dx, grads = layer.backward(g, cache)
    if not np.array_equal(g, g_before):
        raise AssertionError(f"{layer!r}: backward modified the incoming gradient in place")
    if check_input and dx is None:
        raise AssertionError(f"{layer!r}: backward returned no input gradient; pass check_input=False "
                             "for a layer built with need_input_grad=False")
    if set(grads) != set(layer.params):
        raise AssertionError(f"{layer!r}: grads keys {sorted(grads)} != params keys {sorted(layer.params)}")

    def f():
        return float(np.sum(run_forward(x)[0] * g))

    # Rounding noise of a centered difference: summing the terms of f loses about eps_machine *
    # sum|y*g| per evaluation, divided by the step. Below this floor a difference means nothing
    # (it reaches 1e-8 once f sums a few hundred units), so it is added to atol.
    atol = atol + 10 * np.finfo(np.float64).eps * float(np.sum(np.abs(y * g))) / eps

    tensors = ([("input", x, dx)] if check_input else []) + [
        (name, layer.params[name], grads[name]) for name in layer.params
    ]
    errors = {}
    for name, arr, analytic in tensors:
        analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
        if analytic.shape != arr.shape:
            raise AssertionError(f"{layer!r}: gradient of {name} has shape {analytic.shape}, expected {arr.shape}")
        if mode == "full":
            numeric = numerical_gradient(f, arr, eps)
            diff = np.abs(numeric - analytic)
            bound = atol + rtol * (np.abs(numeric) + np.abs(analytic))
            err = relative_error(numeric, analytic)
            if np.any(diff > bound):
                at = _where(diff - bound, arr.shape)
                raise AssertionError(
                    f"{layer!r}: gradient of {name} wrong at index {tuple(int(i) for i in at)}: "
                    f"analytic {analytic[at]:.6g} vs numerical {numeric[at]:.6g} (max relative error {err:.3g})"
                )
        else:
            v = rng.standard_normal(arr.shape)
            base = arr.copy()
            arr += eps * v
            fp = f()
            arr[...] = base - eps * v
            fm = f()
            arr[...] = base
            numeric = (fp - fm) / (2 * eps)
            exact = float(np.sum(analytic * v))
            err = abs(numeric - exact) / max(abs(numeric) + abs(exact), 1e-12)
            if abs(numeric - exact) > atol + rtol * (abs(numeric) + abs(exact)):
                raise AssertionError(
                    f"{layer!r}: directional derivative of {name} wrong: analytic {exact:.8g} vs "
                    f"numerical {numeric:.8g} (relative error {err:.3g})"
                )
        errors[name] = err
    return errors
