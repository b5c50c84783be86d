"""Training speed: the fast model's forward+backward against its bare GEMMs, and small-model images/s.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py [--batch 16]
        [--reps 5] [--steps 60] [--skip-fast] [--skip-small] [--breakdown]

(1) The full fast model (Table 1, 1000 classes, 231x231 input) at batch 16: best wall time of
    one forward + backward (train mode: dropout on), and, in the same run, the best time of the
    bare matrix products it contains, with the same shapes and memory layouts: per conv layer the
    forward GEMM W (F, C*k*k) @ cols and the two backward GEMMs dW = dY @ cols^T (in the order
    `functional.weight_gradient` runs it) and dcols = W^T @ dY (layer 1 skips dcols, as the model
    does), per full layer x @ W^T, dY^T @ x (at batch 1 an outer product, no GEMM) and dY @ W.
    The ratio model / GEMMs is the overhead of everything else (im2col, col2im, pooling, ReLU,
    dropout, copies). Target: <= 1.2. Both run with freed memory kept for reuse,
    as the `overfeat-np` command line runs (`overfeat_np.memory.reuse_freed_memory`);
    --default-malloc measures glibc's default, where every big array is fresh zeroed memory.
(2) The small model training on synthetic shapes with the real loop (`train.train`) and
    num_workers 0, 1 and 2, next to the model step alone on pre-loaded batches and the loader
    alone (one process; also its CPU time per image). Two kinds of images: "fresh", drawn on
    every access (no cache: about 0.5 ms of CPU per 72x72 image), and "cached", the steady state
    of the demo, CLI and lessons, which use `SyntheticShapes(cache=True)` (every image drawn once,
    then only cropped, flipped and normalised). Two BLAS settings: all cores, and `train`'s
    default (`train.blas_threads_for`, the package policy `blas`: one thread whatever the workers): on two
    cores, two BLAS threads next to two loader processes make every GEMM wait for a descheduled
    thread. Per setting: ms per step, the mean time the loop waits for its next batch, images/s,
    and images/s as a fraction of the model alone (all cores, no loader).
    "The loader keeps up" is measured as: with num_workers=2 and `train`'s BLAS setting, the
    loop waits for batches less than 5% of its step time, i.e. the model is never kept waiting
    for data. On 2 cores the model alone already uses both, so any loader costs some of its
    speed; the line "CPU bound" says how fast any loader of the measured CPU cost could possibly
    go (the model's step on one core plus the loader's CPU time per batch, spread over the cores).
    Every figure is the best of --reps interleaved rounds (other processes' load hits all
    alike). Worker start-up and the first 10 steps are not counted.
(3) --breakdown: where (1)'s time goes, per function of `overfeat_np.functional` (GEMMs
    included in conv/linear) and, inside them, im2col and col2im: ms per step, each call's best
    over --reps steps.
(4) --small-breakdown: the small model's training step (forward, loss, backward, SGD update; one
    BLAS thread, batch --small-batch, pre-loaded batch) next to its bare GEMMs (same shapes and
    layouts), and where every millisecond of the step goes: the bare GEMMs, im2col, col2im, the
    rest of conv/linear (bias add, bias gradient, the GEMMs' slowdown inside the step against
    bare), pooling, ReLU, dropout, loss, SGD update, and the Python glue (the step minus all of
    those); the NumPy calls per step (every ufunc, operator, array function and indexing of the
    step, counted on arrays that count); images per CPU second (= images/s per core); and the
    same step on two BLAS threads (wall and CPU time: what the second thread buys and what
    waiting for it costs). One-thread figures are CPU time (`time.process_time`), which leaves
    out the time the process waits for a core while other jobs share the machine; each is the
    median over --reps rounds of --steps steps, every round timing the step, the bare GEMMs and
    the step part by part in turn.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import typing

import numpy as np

from overfeat_np import functional
from overfeat_np import train as train_module
from overfeat_np.blas import available_cores, limit_blas
from overfeat_np.data import DataLoader, SyntheticShapes
from overfeat_np.layers import Conv2D, Dropout, Linear
from overfeat_np.losses import softmax_cross_entropy
from overfeat_np.memory import reuse_freed_memory
from overfeat_np.models import overfeat_fast
from overfeat_np.optim import SGD
from overfeat_np.train import (
    TrainConfig,
    blas_threads_for,
    build_model,
    default_transforms,
    train,
)


def _interleaved_times(fns, reps: int):
    """Best wall time of each function over `reps` rounds, run alternately so that load from other
    processes hits all of them alike (the minimum is the least disturbed run)."""
    for fn in fns:
        fn()  # warm-up: page faults, BLAS thread start
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def _gemm_shapes(model, batch: int):
    """[(name, [(a_shape, b_shape, transpose_b)])]: every GEMM one forward+backward of `model` does."""
    out = []
    shape = (model.config.in_channels, model.config.input_size, model.config.input_size)
    for i, layer in enumerate(model.features.layers):
        if isinstance(layer, Conv2D):
            f, c, kh, kw = layer.params["W"].shape
            _, oh, ow = layer.output_shape(shape)
            k, m = c * kh * kw, batch * oh * ow
            gemms = [((f, k), (k, m), False)]  # forward W @ cols
            if m >= 2 * k:  # dW = dY @ cols^T, in the order `functional.weight_gradient` runs it
                gemms.append(((k, m), (f, m), True))  # (cols @ dY^T)^T
            else:
                gemms.append(((f, m), (k, m), True))
            if layer.need_input_grad:
                gemms.append(((k, f), (f, m), False))  # dcols = W^T @ dY
            out.append((f"conv {i}", gemms))
        shape = layer.output_shape(shape)
    for i, layer in enumerate(model.classifier.layers):
        if isinstance(layer, Linear):
            o, n_in = layer.params["W"].shape
            gemms = [((batch, n_in), (o, n_in), True),  # x @ W^T
                     ((o, batch), (batch, n_in), False),  # dY^T @ x
                     ((batch, o), (o, n_in), False)]  # dY @ W
            if batch == 1:  # dY^T @ x is then an outer product, which the layer computes without a GEMM
                del gemms[1]
            out.append((f"full {i}", gemms))
    return out


def bench_fast(batch: int, reps: int):
    model = overfeat_fast(1000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 231, 231), dtype=np.float32)
    labels = rng.integers(0, 1000, batch)

    def step():
        logits, cache = model.forward(x, train=True)
        _, d = softmax_cross_entropy(logits, labels)
        model.backward(d, cache)

    gemms = _bare_gemms(model, batch, rng)
    t_model, t_gemm = _interleaved_times([step, gemms], reps)
    macs = sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in gemms.operands)
    print(f"fast model, batch {batch}, forward+backward: {1e3 * t_model:.0f} ms "
          f"(best of {reps}); its {len(gemms.operands)} bare GEMMs: {1e3 * t_gemm:.0f} ms "
          f"({2 * macs / t_gemm / 1e9:.0f} GFLOP/s); ratio {t_model / t_gemm:.2f}")


def breakdown(batch: int, reps: int):
    """Time every call of the functional layer functions (and im2col/col2im) inside real steps."""
    model = overfeat_fast(1000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 231, 231), dtype=np.float32)
    labels = rng.integers(0, 1000, batch)
    names = ["conv2d_forward", "conv2d_backward", "im2col", "col2im", "relu_forward", "relu_backward",
             "maxpool_forward", "maxpool_backward", "linear_forward", "linear_backward"]
    step_times = collections.defaultdict(list)  # name -> [seconds of each call] for the current step
    originals = {name: getattr(functional, name) for name in names}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            step_times[name].append(time.perf_counter() - t0)
            return out
        return wrapper

    for name, fn in originals.items():  # layers.py calls these through the module: patch there
        setattr(functional, name, timed(name, fn))
    try:
        per_step = []
        for _ in range(reps + 1):  # the first step warms up
            step_times.clear()
            logits, cache = model.forward(x, train=True)
            _, d = softmax_cross_entropy(logits, labels)
            model.backward(d, cache)
            per_step.append({k: list(v) for k, v in step_times.items()})
    finally:
        for name, fn in originals.items():
            setattr(functional, name, fn)
    print(f"per function, ms per step (each call's best of {reps} steps; conv/linear include their GEMMs, "
          "conv includes im2col/col2im):")
    for name in names:
        best = np.min([s[name] for s in per_step[1:]], axis=0) * 1e3
        print(f"  {name:17} {best.sum():7.1f}  [" + ", ".join(f"{t:.1f}" for t in best) + "]")


def _small_setup(batch: int):
    """The small model (6 classes, as on synthetic shapes), its optimizer, one batch, and a step."""
    cfg = TrainConfig(model="small", batch_size=batch, milestones=(), out_dir=None, progress=False)
    model = build_model(cfg, 6)
    opt = SGD(model.params, lr=0.05)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 64, 64), dtype=np.float32)  # NCHW, as the loader gives it
    labels = rng.integers(0, 6, batch)

    def step():
        logits, cache = model.forward(x, train=True)
        _, d = softmax_cross_entropy(logits, labels)
        opt.step(model.backward(d, cache)[1])

    return model, opt, x, labels, step


def _bare_gemms(model, batch: int, rng):
    """A function running the bare GEMMs of one training step of `model` (same shapes, layouts);
    its `operands` attribute lists the (a, b) pairs it multiplies."""
    operands = []
    for _, gemms in _gemm_shapes(model, batch):
        for a_shape, b_shape, tb in gemms:
            a = rng.standard_normal(a_shape, dtype=np.float32)
            b = rng.standard_normal(b_shape, dtype=np.float32)
            operands.append((a, b.T if tb else b))

    def gemms():
        for a, b in operands:
            a @ b

    gemms.operands = operands
    return gemms


class _Counted(np.ndarray):
    """An array that counts every NumPy call made on it: ufuncs (operators, `@` and reductions
    included), array functions (`ascontiguousarray`, `take_along_axis`, ...), indexing and
    assignment into it. Results are counted arrays again, so a whole step can be counted."""

    calls: typing.ClassVar[collections.Counter] = collections.Counter()

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _Counted.calls[ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"] += 1
        inputs = [a.view(np.ndarray) if isinstance(a, _Counted) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(a.view(np.ndarray) if isinstance(a, _Counted) else a for a in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(_Counted) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types, args, kwargs):
        _Counted.calls[func.__name__] += 1
        result = super().__array_function__(func, types, args, kwargs)
        return result.view(_Counted) if type(result) is np.ndarray else result

    def __getitem__(self, key):
        _Counted.calls["getitem"] += 1
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        _Counted.calls["setitem"] += 1
        super().__setitem__(key, value)


def _count_numpy_calls(batch: int) -> collections.Counter:
    """NumPy calls of one training step: the step runs on counted arrays (parameters, velocities,
    batch), and the array constructors the package calls (`empty`, `zeros`) make counted ones."""
    model, opt, x, labels, step = _small_setup(batch)
    step()  # the optimizer's velocities exist; now turn every array into a counting one
    counted = {k: v.view(_Counted) for k, v in model.params.items()}
    model.load_params(counted)
    opt.params = counted
    opt.velocity = {k: v.view(_Counted) for k, v in opt.velocity.items()}
    originals = {name: getattr(np, name) for name in ("empty", "zeros")}

    def constructor(name, fn):
        def make(*args, **kwargs):
            _Counted.calls[name] += 1
            return fn(*args, **kwargs).view(_Counted)
        return make

    x_counted, labels_counted = x.view(_Counted), labels.view(_Counted)
    _Counted.calls = collections.Counter()
    try:
        for name, fn in originals.items():
            setattr(np, name, constructor(name, fn))
        logits, cache = model.forward(x_counted, train=True)
        _, d = softmax_cross_entropy(logits, labels_counted)
        opt.step(model.backward(d, cache)[1])
    finally:
        for name, fn in originals.items():
            setattr(np, name, fn)
    return _Counted.calls


def small_breakdown(batch: int, reps: int, steps: int):
    """(4): the small model's step, its bare GEMMs and where the rest goes (module docstring).

    Every round times the step, the bare GEMMs and the step part by part, one after the other, and
    every figure is the median over the rounds of that round's value (ratios too): on a machine
    shared with other work, load that comes and goes then hits the three alike.
    """
    model, _, _, _, step = _small_setup(batch)
    gemms = _bare_gemms(model, batch, np.random.default_rng(1))
    instrumented = _Instrumented(step)
    rounds = collections.defaultdict(list)
    with limit_blas(1):
        for fn in (step, gemms, instrumented):
            fn()  # warm-up
        for _ in range(reps):
            rounds["wall"].append(_mean_time(step, steps))
            t_step, t_gemm = _mean_time(step, steps, time.process_time), _mean_time(gemms, steps, time.process_time)
            parts = instrumented.run(steps)
            conv = sum(parts.pop(k) for k in ("conv2d_forward", "conv2d_backward", "linear_forward",
                                              "linear_backward"))
            parts["rest of conv/linear: bias add, bias gradient, the GEMMs' slowdown in the step against bare"] = (
                conv - t_gemm - parts["im2col"] - parts["col2im"])
            for key, t in {**parts, "step": t_step, "gemms": t_gemm, "ratio": t_step / t_gemm}.items():
                rounds[key].append(t)
    with limit_blas(2):
        step()
        for _ in range(reps):
            c0 = time.process_time()
            rounds["step2"].append(_mean_time(step, steps))
            rounds["cpu2"].append((time.process_time() - c0) / steps)
            rounds["gemms2"].append(_mean_time(gemms, steps))
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    calls = _count_numpy_calls(batch)
    t_step, t_gemm, ratio, wall = med.pop("step"), med.pop("gemms"), med.pop("ratio"), med.pop("wall")
    t_step2, cpu2, t_gemm2, t_instr = med.pop("step2"), med.pop("cpu2"), med.pop("gemms2"), med.pop("instrumented step")
    glue = med.pop("Python glue")
    rows = [("GEMMs (bare, same shapes and layouts)", t_gemm)]
    rows += sorted(med.items(), key=lambda kv: -kv[1])
    rows.append(("Python glue (layers, Sequential, model: the instrumented step minus its parts)", glue))
    print(f"small model training step, batch {batch}, one BLAS thread, ms of CPU per step (medians of {reps} rounds "
          f"of {steps} steps; load {os.getloadavg()[0]:.1f}; the step's wall time {1e3 * wall:.2f} ms):")
    print("  | part | ms per step |")
    print("  |---|---|")
    for name, t in rows:
        print(f"  | {name} | {1e3 * t:.2f} |")
    print(f"  | the step timed part by part | {1e3 * t_instr:.2f} |")
    print(f"  | **the step** | **{1e3 * t_step:.2f}** |")
    print(f"  step / bare GEMMs: {ratio:.2f} (median of the rounds' ratios); {batch / t_step:.0f} images per CPU second; "
          f"NumPy calls per step: {sum(calls.values())} (" + ", ".join(f"{k} {v}" for k, v in calls.most_common(8))
          + ", ...)")
    print(f"  two BLAS threads: step {1e3 * t_step2:.2f} ms wall, {1e3 * cpu2:.2f} ms CPU (both threads: above the "
          f"wall time they spin waiting for each other, below it they wait for a core); bare GEMMs "
          f"{1e3 * t_gemm2:.2f} ms; {batch / t_step2:.0f} images/s")


def _mean_time(fn, steps: int, clock=time.perf_counter) -> float:
    """Mean seconds of `steps` calls of fn on `clock` (time.process_time: CPU time, which leaves
    out the time the process waited for a core on a busy machine; with one BLAS thread it is the
    work itself)."""
    t0 = clock()
    for _ in range(steps):
        fn()
    return (clock() - t0) / steps


class _Instrumented:
    """The step with its parts timed in CPU time: functional's functions, dropout, loss, SGD update."""

    NAMES = ("conv2d_forward", "conv2d_backward", "im2col", "col2im", "relu_forward", "relu_backward",
             "maxpool_forward", "maxpool_backward", "linear_forward", "linear_backward")
    LABELS: typing.ClassVar[dict] = {
        "relu_forward": "ReLU forward", "relu_backward": "ReLU backward",
        "maxpool_forward": "max pooling forward", "maxpool_backward": "max pooling backward"}

    def __init__(self, step):
        self.step = step
        self.targets = [(functional, name, self.LABELS.get(name, name)) for name in self.NAMES] + [
            (Dropout, "forward", "dropout forward"), (Dropout, "backward", "dropout backward"),
            (SGD, "step", "SGD update"), (sys.modules[__name__], "softmax_cross_entropy", "loss")]
        self.spent = collections.defaultdict(float)

    def _timed(self, key, fn):
        def wrapper(*args, **kwargs):
            t0 = time.process_time()
            out = fn(*args, **kwargs)
            self.spent[key] += time.process_time() - t0
            return out
        return wrapper

    def run(self, steps: int = 1) -> dict:
        """Mean seconds per step of every part over `steps` steps, "Python glue" and the whole."""
        originals = [getattr(obj, attr) for obj, attr, _ in self.targets]
        for (obj, attr, key), fn in zip(self.targets, originals):
            setattr(obj, attr, self._timed(key, fn))
        self.spent.clear()
        try:
            total = _mean_time(self.step, steps, time.process_time)
        finally:
            for (obj, attr, _), fn in zip(self.targets, originals):
                setattr(obj, attr, fn)
        parts = {key: self.spent[key] / steps for _, _, key in self.targets}
        outer = sum(t for k, t in parts.items() if k not in ("im2col", "col2im"))  # those run inside conv
        return {**parts, "Python glue": total - outer, "instrumented step": total}

    __call__ = run


class _TimedLoader(DataLoader):
    """DataLoader that records how long the consumer waits for each batch (`waits`, seconds)."""

    waits: typing.ClassVar[list] = []

    def batches(self, epoch, start_batch=0):
        it = super().batches(epoch, start_batch)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                return
            _TimedLoader.waits.append(time.perf_counter() - t0)
            yield batch


def bench_small(steps: int, reps: int, batch: int = 32, workers=(0, 1, 2)):
    """(2): the small model alone, the loader alone, and training with both, for images drawn
    fresh and cached, with the BLAS on all cores and with `train`'s default (the cores the
    workers leave free)."""
    n = steps * batch
    cores = available_cores()
    fresh = SyntheticShapes(n + 64, image_size=72, seed=0)  # drawn on every access
    cached = SyntheticShapes(n + 64, image_size=72, seed=0, cache=True)
    for i in range(len(cached)):  # the steady state of the demo's training: every image drawn once
        cached[i]
    tf = default_transforms(64, resize=None)
    with DataLoader(fresh, batch, tf[0], seed=0) as loader:
        pre = [b for _, b in zip(range(steps), loader.batches(0))]

    def loader_alone(data):
        with DataLoader(data, batch, tf[0], seed=0) as loader:
            for _ in zip(range(steps), loader.batches(1)):
                pass

    def model_alone():  # the training step on batches already in memory
        cfg = TrainConfig(model="small", batch_size=batch, milestones=(), out_dir=None, progress=False)
        model = build_model(cfg, fresh.num_classes)
        opt = SGD(model.params, lr=0.05)
        for b in pre:
            logits, cache = model.forward(b["x"], train=True)
            _, d = softmax_cross_entropy(logits, b["labels"])
            opt.step(model.backward(d, cache)[1])

    def with_loader(data, w, blas_threads):
        """(seconds for `steps` steps, mean wait for a batch per step), steps 10.. only."""
        stamps = []
        cfg = TrainConfig(model="small", batch_size=batch, lr=0.05, milestones=(), out_dir=None,
                          progress=False, workers=w, blas_threads=blas_threads, max_steps=steps + 10)
        _TimedLoader.waits = []
        original, train_module.DataLoader = train_module.DataLoader, _TimedLoader
        try:
            train(cfg, data, transforms=tf, on_step=lambda _r: stamps.append(time.perf_counter()))
        finally:
            train_module.DataLoader = original
        wait = float(np.mean(_TimedLoader.waits[10:]))  # waits[k]: the wait before step k + 1
        return (stamps[-1] - stamps[9]) * steps / (len(stamps) - 10), wait

    datas = {"fresh": fresh, "cached": cached}
    blas = {"all cores": cores, "train's default": None}
    best, waits = {}, {}
    for _ in range(reps):  # interleaved rounds, best of each: other load hits all alike
        for name, data in datas.items():
            t0, c0 = time.perf_counter(), time.process_time()
            loader_alone(data)
            key = ("loader", name)
            if time.perf_counter() - t0 < best.get(key, np.inf):
                best[key], best["cpu", name] = time.perf_counter() - t0, time.process_time() - c0
        for threads in (None, 1):
            with limit_blas(threads):
                t0 = time.perf_counter()
                model_alone()
                best["model", threads] = min(best.get(("model", threads), np.inf), time.perf_counter() - t0)
        for name, data in datas.items():
            for label, threads in blas.items():
                for w in workers:
                    if label == "train's default" and blas_threads_for(TrainConfig(workers=w)) == cores:
                        continue  # the same as all cores
                    t, wait = with_loader(data, w, threads)
                    key = (name, label, w)
                    if t < best.get(key, np.inf):
                        best[key], waits[key] = t, wait

    model = best["model", None]
    one = best["model", 1]
    print(f"small model, batch {batch}, {steps} steps, best of {reps}, {cores} cores: model step alone "
          f"{n / model:.0f} images/s ({1e3 * model / steps:.1f} ms per step; on one BLAS thread "
          f"{1e3 * one / steps:.1f} ms)")
    for name in datas:
        print(f"  loader alone ({name}, one process): {n / best['loader', name]:.0f} images/s, "
              f"{1e6 * best['cpu', name] / n:.0f} us of CPU per image")
    print("  | images | BLAS threads | num_workers | ms per step | waiting for the batch | images/s | "
          "of the model alone |")
    print("  |---|---|---|---|---|---|---|")
    for key in sorted(waits, key=lambda k: (list(datas).index(k[0]), k[2], k[1])):
        name, label, w = key
        t, wait = best[key], waits[key]
        threads = cores if label == "all cores" else blas_threads_for(TrainConfig(workers=w))
        print(f"  | {name} | {threads} ({label}) | {w} | {1e3 * t / steps:.1f} | {1e3 * wait:.2f} ms "
              f"({wait * steps / t:.0%}) | {n / t:.0f} | {model / t:.0%} |")
    for name in datas:
        bound = max(one, (one + best["cpu", name]) / cores)
        key = (name, "train's default", 2)  # the setting `train` runs with
        if key not in waits:  # train's default is all cores here
            key = (name, "all cores", 2)
        t, wait = best[key], waits[key]
        print(f"  {name}: CPU bound (the step on one core + the loader's CPU per batch, over {cores} "
              f"cores) {n / bound:.0f} images/s; the loader keeps up (num_workers=2 and train's BLAS "
              f"setting, waits < 5% of the step): {'yes' if wait * steps / t < 0.05 else 'no'} "
              f"({wait * steps / t:.0%})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16, help="fast model batch (default 16)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=60, help="small model steps per measurement")
    p.add_argument("--skip-fast", action="store_true", help="only the small model part")
    p.add_argument("--skip-small", action="store_true", help="only the fast model part")
    p.add_argument("--breakdown", action="store_true", help="also time (1) per function")
    p.add_argument("--small-breakdown", action="store_true",
                   help="only (4): the small model's step by part, against its bare GEMMs")
    p.add_argument("--small-batch", type=int, default=32, help="batch of --small-breakdown (default 32)")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default of unmapping freed big blocks (the CLI turns that off)")
    args = p.parse_args()
    reused = False if args.default_malloc else reuse_freed_memory()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; allocator: "
          + ("freed memory reused (overfeat_np.memory, as the CLI)" if reused else "default"))
    if args.small_breakdown:
        small_breakdown(args.small_batch, args.reps, args.steps)
        return
    if not args.skip_fast:
        bench_fast(args.batch, args.reps)
        if args.breakdown:
            breakdown(args.batch, args.reps)
    if not args.skip_small:
        bench_small(args.steps, args.reps)


if __name__ == "__main__":
    main()
