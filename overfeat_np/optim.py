"""SGD with momentum and L2 weight decay, and the step learning-rate schedule (Section 3).

Section 3 of the paper: momentum 0.6, L2 weight decay 1e-5, learning rate 5e-2 multiplied by 0.5
after 30, 50, 60, 70 and 80 epochs. The schedule is its own object (`StepSchedule`) so the
training loop asks it for the rate and passes that to `SGD.step(grads, lr=...)`; the optimizer
never knows about epochs.

The update, for every parameter w with gradient g and velocity v (v starts at 0):

    v <- momentum * v - lr * (g + weight_decay * w)
    w <- w + v

Weight decay is the gradient of (weight_decay / 2) * ||w||^2, i.e. the L2 penalty of the paper.
It applies to weights only ("...W" keys), not to biases ("...b"): the paper does not say, and
decaying biases only pulls them towards 0 without regularising anything (the usual practice of
cuda-convnet and most frameworks' recipes). `decay_biases=True` decays them too.

Updates are made IN PLACE on the arrays of the `params` dict: `model.params` builds a fresh dict
of the model's own arrays, so writing into those arrays is what makes the update stick. Create
the optimizer after `model.to(backend)` (which replaces the arrays); loading weights with
`overfeat_np.serialization.load_weights(path, model)` copies into the existing arrays and keeps
the optimizer valid.
"""

from __future__ import annotations

import bisect

import numpy as np

from .backend import get_array_module, to_numpy


class StepSchedule:
    """Learning rate base_lr * gamma ** (number of milestones <= epoch), epochs counted from 0.

    With the paper's values epochs 0..29 use 5e-2, epochs 30..49 use 2.5e-2, ..., epochs >= 80
    use 5e-2 * 0.5**5 = 1.5625e-3. A fractional epoch (e.g. 29.5) is allowed.
    """

    def __init__(self, base_lr: float = 5e-2, milestones=(30, 50, 60, 70, 80), gamma: float = 0.5):
        self.base_lr, self.milestones, self.gamma = _check_schedule(base_lr, milestones, gamma)

    def __repr__(self):
        return f"StepSchedule(base_lr={self.base_lr:g}, milestones={self.milestones}, gamma={self.gamma:g})"

    def lr_at(self, epoch: float) -> float:
        """Learning rate during `epoch` (0-based)."""
        if epoch < 0:
            raise ValueError(f"StepSchedule: epoch must be >= 0, got {epoch}")
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)

    __call__ = lr_at

    def state_dict(self) -> dict:
        """Plain-Python state (JSON-serialisable)."""
        return {"base_lr": self.base_lr, "milestones": list(self.milestones), "gamma": self.gamma}

    def load_state_dict(self, state: dict):
        """Restore from `state_dict()`; returns self."""
        missing = {"base_lr", "milestones", "gamma"} - set(state)
        if missing:
            raise ValueError(f"StepSchedule.load_state_dict: missing keys {sorted(missing)}; "
                             "pass the dict returned by StepSchedule.state_dict()")
        self.base_lr, self.milestones, self.gamma = _check_schedule(
            state["base_lr"], state["milestones"], state["gamma"])
        return self


def _check_schedule(base_lr, milestones, gamma):
    milestones = tuple(int(m) for m in milestones)
    if base_lr <= 0 or gamma <= 0:
        raise ValueError(f"StepSchedule: base_lr and gamma must be > 0, got {base_lr}, {gamma}")
    if list(milestones) != sorted(set(milestones)) or any(m < 0 for m in milestones):
        raise ValueError(f"StepSchedule: milestones must be increasing epochs >= 0, got {milestones}")
    return float(base_lr), milestones, float(gamma)


class SGD:
    """SGD with momentum and L2 weight decay, updating `params` (a dict of arrays) in place.

    params: {key: float array} on one backend (NumPy or CuPy), e.g. `model.params`.
    See the module docstring for the exact update and the weight-decay choice for biases.
    """

    def __init__(self, params: dict, lr: float = 5e-2, momentum: float = 0.6, weight_decay: float = 1e-5,
                 decay_biases: bool = False):
        if not params:
            raise ValueError("SGD: params is empty; pass model.params (a dict of arrays)")
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SGD: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; "
                             f"got lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        self.params = dict(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.decay_biases = bool(decay_biases)
        self.velocity = {k: get_array_module(w).zeros_like(w) for k, w in self.params.items()}

    def __repr__(self):
        return (f"SGD({len(self.params)} arrays, lr={self.lr:g}, momentum={self.momentum:g}, "
                f"weight_decay={self.weight_decay:g}, decay_biases={self.decay_biases})")

    def decays(self, key: str) -> bool:
        """Whether weight decay applies to parameter `key` (weights always; biases if decay_biases)."""
        return self.decay_biases or key.rsplit(".", 1)[-1] != "b"

    def step(self, grads: dict, lr: float | None = None):
        """One update of every parameter from `grads` (same keys and shapes as params); lr overrides self.lr."""
        _check_same_keys("SGD.step: grads", grads, self.params)
        lr = self.lr if lr is None else float(lr)
        for key, w in self.params.items():
            g, v = grads[key], self.velocity[key]
            if g.shape != w.shape:
                raise ValueError(f"SGD.step: grads[{key!r}] has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(w.shape)}")
            wd = self.weight_decay if self.decays(key) else 0.0
            # One temporary per array: step = lr * (g + wd * w), then v = m*v - step, w += v.
            step = w * wd if wd else g.copy()
            if wd:
                step += g
            step *= lr
            v *= self.momentum
            v -= step
            w += v

    def state_dict(self) -> dict:
        """Hyper-parameters and host (NumPy) copies of the velocities, keyed like params."""
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "decay_biases": self.decay_biases,
                "velocity": {k: np.array(to_numpy(v), copy=True) for k, v in self.velocity.items()}}

    def load_state_dict(self, state: dict):
        """Restore from `state_dict()`; velocities are moved to each parameter's backend. Returns self."""
        missing = {"lr", "momentum", "weight_decay", "velocity"} - set(state)
        if missing:
            raise ValueError(f"SGD.load_state_dict: missing keys {sorted(missing)}; "
                             "pass the dict returned by SGD.state_dict()")
        vel = state["velocity"]
        _check_same_keys("SGD.load_state_dict: velocity", vel, self.params)
        for key, w in self.params.items():
            if tuple(vel[key].shape) != tuple(w.shape):
                raise ValueError(f"SGD.load_state_dict: velocity[{key!r}] has shape {tuple(vel[key].shape)}, "
                                 f"parameter has {tuple(w.shape)}; the state is from another model")
        self.velocity = {k: get_array_module(w).array(vel[k], dtype=w.dtype) for k, w in self.params.items()}
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        self.decay_biases = bool(state.get("decay_biases", False))
        return self


def _check_same_keys(what: str, got: dict, want: dict):
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(f"{what} do not match the parameters: missing {missing[:5]}, unexpected {extra[:5]} "
                         f"({len(missing)} missing, {len(extra)} unexpected); pass the dict with the keys "
                         "of the params given to SGD (e.g. the grads from model.backward)")
