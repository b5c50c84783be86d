"""Time the fast model's five conv layers (Table 1) against the bare GEMMs they are made of.

A convolution done as im2col + GEMM costs its matrix products plus the memory traffic around them
(building the columns, col2im, layout changes). The ratio printed here, conv time / GEMM time with
GEMMs of exactly the same shapes timed in the same run, says how much of that overhead is left:
1.0 would be free. Target (issue 2): forward+backward within 1.25x of the GEMMs for layers 2-5.

Shapes (batch 16, float32, NCHW): layer 1 input 3x231x231 (11x11, stride 4), layer 2 96x28x28
(5x5), layers 3-5 256/512/1024 x 12x12 (3x3, pad 1). Layer 2's input is 28x28 (56 pooled by 2);
Table 1's 24x24 is its conv output. Layer 1 skips its input gradient, as in `OverFeat`, so its
backward has one GEMM, the others two. Layers 2-5 get their input and dy in the memory order the
model hands them on (NCHW views of batch-last memory, see `overfeat_np.im2col`), layer 1 a
plain NCHW batch. MaxPool2D is timed at the three pooled shapes too.

Both the layers and their GEMMs run with freed memory kept for reuse, as the `overfeat-np` command
line runs (`overfeat_np.memory.reuse_freed_memory`); `--default-malloc` measures glibc's default,
under which every big array is fresh memory the kernel must zero first.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_layers.py
    python benchmarks/bench_layers.py --batch 16 --repeat 5 --backend cupy
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from overfeat_np.backend import backend_name, get_array_module, get_backend
from overfeat_np.functional import weight_gradient
from overfeat_np.im2col import conv_outsize
from overfeat_np.layers import Conv2D, MaxPool2D
from overfeat_np.memory import reuse_freed_memory

# (name, in_channels, out_channels, kernel, stride, padding, input size, needs dx)
CONVS = [
    ("conv1", 3, 96, 11, 4, 0, 231, False),
    ("conv2", 96, 256, 5, 1, 0, 28, True),
    ("conv3", 256, 512, 3, 1, 1, 12, True),
    ("conv4", 512, 1024, 3, 1, 1, 12, True),
    ("conv5", 1024, 1024, 3, 1, 1, 12, True),
]
# (name, channels, input size, window): the three poolings of the fast model.
POOLS = [("pool1", 96, 56, 2), ("pool2", 256, 24, 2), ("pool5", 1024, 12, 2)]


def timers(xp, fns: dict, repeat: int) -> dict:
    """Best wall time in ms of each fn over `repeat` rounds, the fns interleaved within a round so
    that load from other processes hits the conv and its GEMMs alike (GPU work synchronised)."""
    sync = xp.cuda.Device().synchronize if backend_name(xp) == "cupy" else (lambda: None)
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():  # warm-up: first-touch page faults, BLAS thread start
        fn()
    sync()
    for _ in range(repeat):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            best[key] = min(best[key], time.perf_counter() - t0)
    return {k: 1e3 * v for k, v in best.items()}


def _like(a, ref):
    """The values of `a` in the memory order of `ref`."""
    out = get_array_module(ref).empty_like(ref)
    out[...] = a
    return out


def bench_conv(xp, spec, batch: int, repeat: int, rng) -> dict:
    """ms of forward, forward+backward, and of the same-shaped bare GEMMs, for one conv layer."""
    name, c, f, k, stride, pad, size, need_dx = spec
    layer = Conv2D(c, f, k, stride, pad, seed=0, backend=backend_name(xp), need_input_grad=need_dx)
    x = xp.asarray(rng.standard_normal((batch, c, size, size), dtype=np.float32))
    if need_dx:  # inside the model, layers 2-5 get the batch-last views the layers hand on
        x = xp.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    o = conv_outsize(size, k, stride, pad)
    dy = xp.asarray(rng.standard_normal((batch, f, o, o), dtype=np.float32))
    dy = _like(dy, layer.forward(x)[0])  # and dy in the memory order of y, as ReLU's backward gives it

    def fwd():
        return layer.forward(x, train=True)

    def fwd_bwd():
        _, cache = layer.forward(x, train=True)
        return layer.backward(dy, cache)

    # The same products on contiguous operands: W (F, K) @ cols (K, M); dW = d2 @ cols^T in the
    # order the layer runs it (`functional.weight_gradient`, BLAS takes the transposed operands
    # without copying); dcols = W^T @ d2.
    kk, m = c * k * k, batch * o * o
    W = xp.asarray(rng.standard_normal((f, kk), dtype=np.float32))
    cols = xp.asarray(rng.standard_normal((kk, m), dtype=np.float32))
    d2 = xp.asarray(rng.standard_normal((f, m), dtype=np.float32))

    def gemms():
        W @ cols
        weight_gradient(d2, cols)
        if need_dx:
            W.T @ d2

    t = timers(xp, {"fwd": fwd, "gemm_fwd": lambda: W @ cols, "all": fwd_bwd, "gemm": gemms}, repeat)
    return dict(t, layer=name, gflop=2 * f * kk * m * (3 if need_dx else 2) / 1e9)


def bench_pool(xp, spec, batch: int, repeat: int, rng) -> dict:
    """ms of MaxPool2D forward and forward+backward on a tie-free input, x and dy in the
    batch-last memory order the model hands on."""
    name, c, size, k = spec
    layer = MaxPool2D(k)
    x = xp.asarray(rng.standard_normal((c, size, size, batch), dtype=np.float32)).transpose(3, 0, 1, 2)
    dy = _like(rng.standard_normal((batch, c, size // k, size // k), dtype=np.float32), layer.forward(x)[0])

    def fwd_bwd():
        _, cache = layer.forward(x)
        return layer.backward(dy, cache)

    t = timers(xp, {"fwd": lambda: layer.forward(x), "all": fwd_bwd}, repeat)
    return dict(t, layer=name, mb=x.nbytes / 2**20)


def blas_info() -> str:
    """Which BLAS NumPy runs and, for OpenBLAS, which CPU kernel it picked (OPENBLAS_CORETYPE
    overrides that choice, which is why the benchmark command unsets it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        return "; ".join(f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
                         f"threads={i.get('num_threads')}" for i in threadpool_info()
                         if i.get("user_api") == "blas")
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:  # the OpenBLAS bundled in NumPy's wheel: ask it directly
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            corename = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                return (f"OpenBLAS ({os.path.basename(path)}) kernel={corename().decode()} "
                        f"threads={threads() if threads else '?'}")
    return "unknown (see numpy.show_config())"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds; the best is reported")
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--layers", default="1,2,3,4,5", help="which conv layers, e.g. 2,5")
    ap.add_argument("--default-malloc", action="store_true",
                    help="keep glibc's default of unmapping freed big blocks (the CLI turns that off)")
    args = ap.parse_args(argv)
    xp = get_backend(args.backend)
    rng = np.random.default_rng(0)
    reused = False if args.default_malloc else reuse_freed_memory()
    print(f"backend={args.backend} batch={args.batch} repeat={args.repeat} float32; allocator: "
          + ("freed memory reused (overfeat_np.memory, as the CLI)" if reused else "default"))
    if args.backend == "numpy":
        print(f"BLAS: {blas_info()}")
    wanted = {int(i) for i in args.layers.split(",")}
    print(f"{'layer':6} {'fwd ms':>9} {'GEMM ms':>9} {'ratio':>6} | {'fwd+bwd ms':>10} "
          f"{'GEMMs ms':>9} {'ratio':>6} {'GFLOP/s':>8}")
    for i, spec in enumerate(CONVS, 1):
        if i not in wanted:
            continue
        r = bench_conv(xp, spec, args.batch, args.repeat, rng)
        print(f"{r['layer']:6} {r['fwd']:9.1f} {r['gemm_fwd']:9.1f} {r['fwd'] / r['gemm_fwd']:6.2f} | "
              f"{r['all']:10.1f} {r['gemm']:9.1f} {r['all'] / r['gemm']:6.2f} "
              f"{r['gflop'] / r['all'] * 1e3:8.1f}")
    print(f"{'pool':6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'input MB':>9}")
    for spec in POOLS:
        r = bench_pool(xp, spec, args.batch, args.repeat, rng)
        print(f"{r['layer']:6} {r['fwd']:9.2f} {r['all']:11.2f} {r['mb']:9.1f}")


if __name__ == "__main__":
    main()
