"""SGD with momentum / weight decay and the step schedule (overfeat_np.optim, Section 3)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.models import overfeat_small
from overfeat_np.optim import SGD, StepSchedule


def _params(xp, rng):
    return {"l.W": xp.asarray(rng.normal(size=(3, 4)).astype(np.float32)),
            "l.b": xp.asarray(rng.normal(size=(3,)).astype(np.float32))}


def test_two_steps_match_hand_computation(backend):
    xp = get_backend(backend)
    params = {"a.W": xp.asarray(np.array([1.0, -2.0], np.float32)),
              "a.b": xp.asarray(np.array([0.5], np.float32))}
    opt = SGD(params, lr=0.1, momentum=0.5, weight_decay=0.01)
    g1 = {"a.W": xp.asarray(np.array([1.0, 1.0], np.float32)), "a.b": xp.asarray(np.array([2.0], np.float32))}
    g2 = {"a.W": xp.asarray(np.array([-1.0, 0.0], np.float32)), "a.b": xp.asarray(np.array([0.0], np.float32))}
    opt.step(g1)
    # W: v = -0.1*(1 + 0.01*1) = -0.101 -> w = 0.899;  v = -0.1*(1 - 0.02) = -0.098 -> w = -2.098
    # b (no decay): v = -0.2 -> b = 0.3
    np.testing.assert_allclose(to_numpy(params["a.W"]), [0.899, -2.098], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(params["a.b"]), [0.3], rtol=1e-6)
    opt.step(g2)
    # W[0]: v = 0.5*-0.101 - 0.1*(-1 + 0.00899) = -0.0505 + 0.099101 = 0.048601 -> 0.947601
    # W[1]: v = 0.5*-0.098 - 0.1*(0 - 0.02098) = -0.049 + 0.002098 = -0.046902 -> -2.144902
    # b:    v = 0.5*-0.2 = -0.1 -> 0.2
    np.testing.assert_allclose(to_numpy(params["a.W"]), [0.947601, -2.144902], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(params["a.b"]), [0.2], rtol=1e-6)


def test_decay_biases_flag_decays_biases():
    p = {"x.b": np.array([2.0], np.float32)}
    SGD(p, lr=0.5, momentum=0.0, weight_decay=0.1, decay_biases=True).step({"x.b": np.zeros(1, np.float32)})
    np.testing.assert_allclose(p["x.b"], [2.0 - 0.5 * 0.1 * 2.0])


@given(st.floats(1e-3, 1.0), st.floats(0.0, 1e-2), st.integers(0, 2**31))
def test_momentum_zero_is_plain_gradient_descent(lr, wd, seed):
    rng = np.random.default_rng(seed)
    params = _params(np, rng)
    start = {k: v.copy() for k, v in params.items()}
    grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
    SGD(params, lr=lr, momentum=0.0, weight_decay=wd).step(grads)
    np.testing.assert_allclose(params["l.W"], start["l.W"] - lr * (grads["l.W"] + wd * start["l.W"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params["l.b"], start["l.b"] - lr * grads["l.b"], rtol=1e-5, atol=1e-6)


def test_updates_the_models_own_arrays_in_place(rng):
    model = overfeat_small(num_classes=3, width=0.25)
    before = {k: v.copy() for k, v in model.params.items()}
    grads = {k: np.ones_like(v) for k, v in model.params.items()}
    SGD(model.params, lr=0.1).step(grads)
    for k, v in model.params.items():  # a fresh dict from the model sees the update
        np.testing.assert_allclose(v, before[k] - 0.1 * (1.0 + (1e-5 * before[k] if k.endswith("W") else 0)),
                                   rtol=1e-5, atol=1e-7)


def test_step_lr_argument_overrides_default(rng):
    a = _params(np, rng)
    b = {k: v.copy() for k, v in a.items()}
    grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in a.items()}
    SGD(a, lr=0.9).step(grads, lr=0.01)
    SGD(b, lr=0.01).step(grads)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("epoch, lr", [(0, 5e-2), (29, 5e-2), (29.9, 5e-2), (30, 2.5e-2), (49, 2.5e-2),
                                       (50, 1.25e-2), (60, 6.25e-3), (70, 3.125e-3), (80, 1.5625e-3),
                                       (100, 1.5625e-3)])
def test_paper_schedule(epoch, lr):
    s = StepSchedule()
    assert s.lr_at(epoch) == pytest.approx(lr, rel=1e-12)
    assert s(epoch) == s.lr_at(epoch)


def test_schedule_state_round_trip_and_errors():
    s = StepSchedule(0.1, (2, 5), 0.1)
    t = StepSchedule().load_state_dict(s.state_dict())
    assert [t(e) for e in range(8)] == [s(e) for e in range(8)]
    with pytest.raises(ValueError, match="increasing"):
        StepSchedule(milestones=(30, 20))
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        StepSchedule()(-1)
    with pytest.raises(ValueError, match="missing keys"):
        StepSchedule().load_state_dict({"gamma": 0.5})


def test_state_round_trip_continues_identically(backend, rng):
    xp = get_backend(backend)
    grads = [{k: xp.asarray(rng.normal(size=s).astype(np.float32)) for k, s in [("l.W", (3, 4)), ("l.b", (3,))]}
             for _ in range(6)]
    sched = StepSchedule(0.1, (2, 4), 0.5)
    a = _params(xp, np.random.default_rng(1))
    opt_a = SGD(a, momentum=0.9, weight_decay=1e-3)
    for i in range(3):
        opt_a.step(grads[i], lr=sched(i))
    saved_w = {k: to_numpy(v).copy() for k, v in a.items()}
    saved_state, saved_sched = opt_a.state_dict(), sched.state_dict()
    for i in range(3, 6):
        opt_a.step(grads[i], lr=sched(i))

    b = {k: xp.asarray(v) for k, v in saved_w.items()}
    opt_b = SGD(b, lr=1.0, momentum=0.1).load_state_dict(saved_state)
    sched_b = StepSchedule().load_state_dict(saved_sched)
    assert opt_b.momentum == 0.9 and opt_b.weight_decay == 1e-3
    for i in range(3, 6):
        opt_b.step(grads[i], lr=sched_b(i))
    for k in a:
        np.testing.assert_array_equal(to_numpy(a[k]), to_numpy(b[k]))
    assert isinstance(saved_state["velocity"]["l.W"], np.ndarray)  # host copies, whatever the backend


def test_state_dict_is_a_copy(rng):
    p = _params(np, rng)
    opt = SGD(p)
    state = opt.state_dict()
    opt.step({k: np.ones_like(v) for k, v in p.items()})
    assert not state["velocity"]["l.W"].any()


def test_grads_key_mismatch_is_a_clear_error(rng):
    p = _params(np, rng)
    opt = SGD(p)
    with pytest.raises(ValueError, match=r"missing \['l.b'\], unexpected \['l.c'\]"):
        opt.step({"l.W": np.zeros((3, 4), np.float32), "l.c": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"grads\['l.W'\] has shape \(4, 3\)"):
        opt.step({"l.W": np.zeros((4, 3), np.float32), "l.b": np.zeros(3, np.float32)})
    bad = opt.state_dict()
    bad["velocity"]["l.W"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="another model"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="params is empty"):
        SGD({})
