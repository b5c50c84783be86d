"""Dense inference versus evaluating every window separately (Section 3.3, "sliding window efficiency").

For the fast model (Table 1, random weights) on one 461x569 image: the time of `dense_forward`
against the time of cropping the same windows and running them through the plain model in
batches, for coarse (32 px) and fine (16 px) stride; beside the measured speed-up, the speed-up
predicted by multiply-adds counted from shapes (`dense_macs`; windows: n x 2.80 G). Then the time
per image of the full accurate pipeline: 6 scales of Table 5 + flips, fine stride.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_dense.py
    python benchmarks/bench_dense.py --backend cupy          # on a GPU
    python benchmarks/bench_dense.py --skip-pipeline --repeat 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from overfeat_np.accounting import dense_macs
from overfeat_np.backend import get_backend, to_numpy
from overfeat_np.dense import dense_forward, infer
from overfeat_np.grid import num_windows, output_stride
from overfeat_np.models import overfeat_accurate, overfeat_fast
from overfeat_np.multiscale import classify_multiscale
from overfeat_np.scales import SCALES_ACCURATE


def _sync(xp):
    if xp.__name__.startswith("cupy"):
        xp.cuda.Stream.null.synchronize()


def best_time(fn, xp, repeat):
    fn()  # warm-up: first-touch allocations, BLAS thread start, CuPy kernel compilation
    _sync(xp)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(xp)
        times.append(time.perf_counter() - t)
    return min(times)


def windows_forward(model, x, stride, batch):
    """Every training-size window at `stride`, cropped and run through the non-dense model."""
    s, (_, _, h, w) = model.config.input_size, x.shape
    xp = get_backend("cupy") if type(x).__module__.startswith("cupy") else np
    corners = [(i * stride, j * stride) for i in range((h - s) // stride + 1) for j in range((w - s) // stride + 1)]
    out = []
    for b in range(0, len(corners), batch):
        crops = xp.concatenate([x[:, :, t:t + s, left:left + s] for t, left in corners[b:b + batch]])
        # Same inference path as the dense pass (no caches kept), so only the sharing differs.
        out.append(infer(model.classifier, model.pool.forward(infer(model.features, crops))[0]))
    return xp.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="windows per batch in the one-by-one baseline")
    ap.add_argument("--skip-pipeline", action="store_true", help="skip the accurate 6-scale pipeline")
    args = ap.parse_args()
    xp = get_backend(args.backend)

    model = overfeat_fast(backend=args.backend)
    cfg, hw = model.config, (461, 569)
    x = xp.asarray(np.random.default_rng(0).normal(size=(1, 3, *hw)).astype(np.float32))
    win_macs = dense_macs(cfg, (cfg.input_size,) * 2)
    print(f"fast model, {hw[0]}x{hw[1]} image, backend={args.backend}; one {cfg.input_size}px window = "
          f"{win_macs / 1e9:.2f} G multiply-adds")
    print(f"{'stride':>8} {'windows':>8} {'dense s':>8} {'windows s':>10} {'measured':>9} {'predicted':>10} "
          f"{'ratio':>6} {'dense GMAC/s':>13} {'win GMAC/s':>11}")
    for fine in (False, True):
        stride = output_stride(cfg, fine)
        qh, qw = num_windows(cfg, hw, fine)
        n = qh * qw
        d_macs, w_macs = dense_macs(cfg, hw, fine), n * win_macs
        y_dense = dense_forward(model, x, fine)
        y_win = windows_forward(model, x, stride, args.batch)
        ref = to_numpy(y_win).reshape(qh, qw, -1).transpose(2, 0, 1)
        # Zero padding in conv 3-5 makes crops differ from the dense pass near their borders;
        # the maps must still agree closely, a check that the two runs compute the same windows.
        err = np.abs(to_numpy(y_dense)[0] - ref).max() / np.abs(ref).max()
        t_dense = best_time(lambda: dense_forward(model, x, fine), xp, args.repeat)  # noqa: B023
        t_win = best_time(lambda: windows_forward(model, x, stride, args.batch), xp, args.repeat)  # noqa: B023
        measured, predicted = t_win / t_dense, w_macs / d_macs
        print(f"{stride:>6}px {n:>8} {t_dense:>8.2f} {t_win:>10.2f} {measured:>8.1f}x {predicted:>9.1f}x "
              f"{measured / predicted:>5.0%} {d_macs / t_dense / 1e9:>13.1f} {w_macs / t_win / 1e9:>11.1f}"
              f"   (max rel. diff dense vs crops {err:.2g})")

    if not args.skip_pipeline:
        del model
        acc = overfeat_accurate(backend=args.backend)
        img = (np.random.default_rng(1).random((375, 500, 3)) * 255).astype(np.uint8)
        macs = 2 * sum(dense_macs(acc.config, s) for s in SCALES_ACCURATE)
        t = best_time(lambda: classify_multiscale(acc, img, scales=SCALES_ACCURATE, flip=True), xp, 1)
        print(f"accurate model, 6 scales + flip, fine stride: {t:.1f} s per image "
              f"({macs / 1e9:.0f} G multiply-adds, {macs / t / 1e9:.1f} GMAC/s; the paper: ~2 s on a K20x GPU)")


if __name__ == "__main__":
    main()
