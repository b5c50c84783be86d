"""One check of the CuPy backend where a GPU is visible: tests, layer accuracy, speed, memory.

    python benchmarks/gpu_check.py                 # on a GPU machine: everything, one table
    python benchmarks/gpu_check.py --tf32          # GEMMs in TF32 (CUPY_TF32=1): compare the errors
    python benchmarks/gpu_check.py --double --small --no-tests   # the CPU double, tiny: a smoke test

What it does, in order:
1. runs the GPU tests (`pytest -m gpu` and tests/test_cupy_double.py) unless --no-tests;
2. every layer of the fast model (features, last pooling, classifier), forward and backward, on
   CuPy and on NumPy from the same weights and inputs: the largest relative error of the output,
   the input gradient and the parameter gradients (max |a - b| / max |b|);
3. training images/s of the fast and accurate models at batch 128 (forward, backward, SGD; the
   batch already on the device, a synchronisation around the timed steps);
4. a dense pass of the fast model over a 461x569 image (coarse and fine stride);
5. the accurate model's 6 scales + flips, fine stride (`classify_multiscale`): time per image;
6. the memory pool's size at its peak.
--small shrinks everything (width 1/16, batch 4, small images) so it finishes in seconds; --double
runs on `overfeat_np.cupy_double` (no GPU: numbers say nothing about speed, the run proves that
the script and the CuPy path work end to end). Without a GPU and without --double it stops with
the backend's error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

if "--tf32" in sys.argv:  # read by CuPy when it is imported: set before anything imports it
    os.environ["CUPY_TF32"] = "1"

import numpy as np

from overfeat_np import cupy_double
from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.dense import dense_forward
from overfeat_np.losses import softmax_cross_entropy
from overfeat_np.models import build_model
from overfeat_np.multiscale import classify_multiscale
from overfeat_np.optim import SGD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rel_error(a, b) -> float:
    """max |a - b| / max |b| (b the NumPy reference; 0 for two empty arrays)."""
    a, b = to_numpy(a).astype(np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) if b.size else 0.0


def _sync(xp):
    xp.cuda.Device().synchronize()


def _peak(xp, peak: list):
    peak[0] = max(peak[0], xp.get_default_memory_pool().total_bytes())


def run_tests() -> tuple:
    """The GPU tests (marker `gpu`) in a subprocess -> (row label, result). On a machine without
    a GPU the test suite itself runs them on the CPU double."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/"]
    res = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    last = (res.stdout.strip().splitlines() or ["no output"])[-1]
    return "GPU tests", f"{'ok' if res.returncode == 0 else 'FAILED'}: {last}"


def layer_errors(xp, width: float, batch: int, peak: list) -> list:
    """(label, forward error, backward error) of every layer of the fast model."""
    host, dev = build_model("fast", 1000, width, seed=0), build_model("fast", 1000, width, seed=0, backend=xp)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 231, 231)).astype(np.float32)
    layers = ([(f"features.{i}", a, b) for i, (a, b) in enumerate(zip(host.features.layers, dev.features.layers))]
              + [("pool", host.pool, dev.pool)]
              + [(f"classifier.{i}", a, b) for i, (a, b) in enumerate(zip(host.classifier.layers, dev.classifier.layers))])
    rows = []
    for name, h, d in layers:
        if type(h).__name__ == "Dropout":
            continue  # identity at evaluation; its masks are drawn per backend
        y, hc = h.forward(x)
        yd, dc = d.forward(xp.asarray(x))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx, g = h.backward(dy, hc)
        dxd, gd = d.backward(xp.asarray(dy), dc)
        back = [rel_error(gd[k], g[k]) for k in g] + ([rel_error(dxd, dx)] if dx is not None else [])
        rows.append((f"{name} {type(h).__name__}", rel_error(yd, y), max(back)))
        x = y
        _peak(xp, peak)
    return rows


def train_speed(xp, name: str, width: float, batch: int, steps: int, peak: list) -> float:
    """Images/s of forward + backward + SGD on a device-resident batch."""
    model = build_model(name, 1000, width, seed=0, backend=xp)
    s = model.config.input_size
    x = xp.asarray(np.random.default_rng(0).standard_normal((batch, 3, s, s)).astype(np.float32))
    labels = xp.asarray(np.arange(batch) % 1000)
    opt = SGD(model.params)

    def step():
        logits, cache = model.forward(x, train=True)
        _, d = softmax_cross_entropy(logits, labels)
        _, grads = model.backward(d, cache)
        opt.step(grads)

    step()  # warm-up: kernels compiled, memory pooled
    _sync(xp)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(xp)
    _peak(xp, peak)
    return batch * steps / (time.perf_counter() - t0)


def _timed(xp, fn, repeat: int) -> float:
    fn()
    _sync(xp)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(xp)
    return (time.perf_counter() - t0) / repeat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--double", action="store_true", help="run on the CPU double of CuPy (no GPU needed)")
    ap.add_argument("--small", action="store_true", help="tiny widths, batches and images: seconds")
    ap.add_argument("--tf32", action="store_true", help="GEMMs in TF32 (CUPY_TF32=1; off by default)")
    ap.add_argument("--no-tests", action="store_true", help="skip running the GPU tests")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    if a.double:
        cupy_double.install()
    xp = get_backend("cupy")  # BackendError with the install hint where no GPU is visible
    width, batch, steps = (1 / 16, 4, 1) if a.small else (1.0, a.batch, a.steps)
    hw, image_hw = ((256, 288), (160, 192)) if a.small else ((461, 569), (461, 569))
    peak = [0]
    rows = []
    if not a.no_tests:
        rows.append(run_tests())
    for label, fwd, bwd in layer_errors(xp, width, 2, peak):
        rows.append((f"rel. error {label}", f"forward {fwd:.1e}  backward {bwd:.1e}"))
    for name in ("fast", "accurate"):
        rows.append((f"train {name}, batch {batch}", f"{train_speed(xp, name, width, batch, steps, peak):,.1f} images/s"))
    fast = build_model("fast", 1000, width, seed=0, backend=xp)
    img = xp.asarray(np.random.default_rng(1).standard_normal((1, 3) + hw).astype(np.float32))
    for fine in (False, True):
        t = _timed(xp, lambda f=fine: dense_forward(fast, img, fine_stride=f), 1 if a.small else 3)
        rows.append((f"dense fast {hw[0]}x{hw[1]}, {'fine' if fine else 'coarse'} stride", f"{t * 1e3:,.1f} ms"))
    _peak(xp, peak)
    acc = build_model("accurate", 1000, width, seed=0, backend=xp)
    image = np.random.default_rng(2).integers(0, 256, image_hw + (3,), dtype=np.uint8)
    scales = [(221, 221), (253, 285)] if a.small else None
    t = _timed(xp, lambda: classify_multiscale(acc, image, scales, fine_stride=True, flip=True), 1 if a.small else 3)
    rows.append((f"accurate {'2' if a.small else '6'} scales + flips, fine stride", f"{t:,.3f} s per image"))
    _peak(xp, peak)
    rows.append(("GPU memory pool at peak", f"{peak[0] / 2**20:,.0f} MiB" if not a.double else "n/a (CPU double)"))
    where = "CPU double of CuPy" if a.double else "CuPy " + getattr(xp, "__version__", "?")
    print(f"gpu_check on {where}, TF32 {'on' if a.tf32 else 'off'}, width {width:g}")
    wide = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{wide}}  {value}")


if __name__ == "__main__":
    main()
