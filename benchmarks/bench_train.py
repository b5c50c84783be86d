"""Training speed: the fast model's forward+backward against its bare GEMMs, and small-model images/s.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py [--batch 16]
        [--reps 5] [--steps 60] [--skip-fast] [--skip-small] [--breakdown]

(1) The full fast model (Table 1, 1000 classes, 231x231 input) at batch 16: best wall time of
    one forward + backward (train mode: dropout on), and, in the same run, the best time of the
    bare matrix products it contains, with the same shapes and memory layouts: per conv layer the
    forward GEMM W (F, C*k*k) @ cols and the two backward GEMMs dW = dY @ cols^T and
    dcols = W^T @ dY (layer 1 skips dcols, as the model does), per full layer x @ W^T, dY^T @ x
    and dY @ W. The ratio model / GEMMs is the overhead of everything else (im2col, col2im,
    pooling, ReLU, dropout, copies). Target: <= 1.2. Both run with freed memory kept for reuse,
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
"""

from __future__ import annotations

import argparse
import collections
import os
import time
import typing

import numpy as np

from overfeat_np import functional
from overfeat_np import train as train_module
from overfeat_np.blas import available_cores, limit_blas
from overfeat_np.data import DataLoader, SyntheticShapes
from overfeat_np.layers import Conv2D, Linear
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
            gemms = [((f, k), (k, m), False),  # forward W @ cols
                     ((f, m), (k, m), True)]  # dW = dY @ cols^T
            if layer.need_input_grad:
                gemms.append(((k, f), (f, m), False))  # dcols = W^T @ dY
            out.append((f"conv {i}", gemms))
        shape = layer.output_shape(shape)
    for i, layer in enumerate(model.classifier.layers):
        if isinstance(layer, Linear):
            o, n_in = layer.params["W"].shape
            out.append((f"full {i}", [((batch, n_in), (o, n_in), True),  # x @ W^T
                                      ((o, batch), (batch, n_in), False),  # dY^T @ x
                                      ((batch, o), (o, n_in), False)]))  # dY @ W
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

    operands = []
    for _, gemms in _gemm_shapes(model, batch):
        for a_shape, b_shape, tb in gemms:
            a = rng.standard_normal(a_shape, dtype=np.float32)
            b = rng.standard_normal(b_shape, dtype=np.float32)
            operands.append((a, b.T if tb else b))

    def gemms():
        for a, b in operands:
            a @ b

    t_model, t_gemm = _interleaved_times([step, gemms], reps)
    macs = sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands)
    print(f"fast model, batch {batch}, forward+backward: {1e3 * t_model:.0f} ms "
          f"(best of {reps}); its {len(operands)} bare GEMMs: {1e3 * t_gemm:.0f} ms "
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
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default of unmapping freed big blocks (the CLI turns that off)")
    args = p.parse_args()
    reused = False if args.default_malloc else reuse_freed_memory()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; allocator: "
          + ("freed memory reused (overfeat_np.memory, as the CLI)" if reused else "default"))
    if not args.skip_fast:
        bench_fast(args.batch, args.reps)
        if args.breakdown:
            breakdown(args.batch, args.reps)
    if not args.skip_small:
        bench_small(args.steps, args.reps)


if __name__ == "__main__":
    main()
