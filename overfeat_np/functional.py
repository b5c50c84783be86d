"""Pure forward/backward pairs for every layer (cs231n style: `forward -> (out, cache)`).

Each function takes and returns arrays of one namespace (NumPy or CuPy, found from the inputs);
nothing here holds state. The classes in `layers.py` are thin holders of parameters around these.
"""

from __future__ import annotations

from .backend import device_random, get_array_module, on_cpu
from .im2col import batch_last, col2im, conv_outsize, im2col


# --- convolution -------------------------------------------------------------------------------
def conv2d_forward(x, W, b, stride: int = 1, pad: int = 0):
    """Cross-correlation (no kernel flip) with zero padding.

    x (N, C, H, W), W (F, C, kh, kw), b (F,) -> out (N, F, OH, OW), cache.
    `out` is an NCHW-shaped view of (F, OH, OW, N) memory, the GEMM's own output order: copying it
    to NCHW would cost a pass over the largest activations, and the next layer wants it batch-last
    anyway (see `im2col`).
    """
    f, _, kh, kw = W.shape
    n = x.shape[0]
    cols, (oh, ow) = im2col(x, kh, kw, stride, pad)  # (C*kh*kw, OH*OW*N)
    out = W.reshape(f, -1) @ cols  # (F, OH*OW*N): one GEMM
    out += b[:, None]
    return batch_last(out.reshape(f, oh, ow, n)), (x.shape, W, cols, stride, pad)


def conv2d_backward(dout, cache, need_dx: bool = True):
    """dout (N, F, OH, OW) -> dx (N, C, H, W) (None if not `need_dx`), dW (F, C, kh, kw), db (F,)."""
    x_shape, W, cols, stride, pad = cache
    f, _, kh, kw = W.shape
    xp = get_array_module(dout)
    # Free when dout is batch-last (as the layers here return it); a copy otherwise.
    d2 = xp.ascontiguousarray(dout.transpose(1, 2, 3, 0)).reshape(f, -1)  # (F, OH*OW*N)
    dW = weight_gradient(d2, cols).reshape(W.shape)
    db = d2.sum(axis=1)
    dx = None
    if need_dx:
        dcols = W.reshape(f, -1).T @ d2  # (C*kh*kw, OH*OW*N)
        dx = col2im(dcols, x_shape, kh, kw, stride, pad)
    return dx, dW, db


def weight_gradient(d2, cols):
    """dW = d2 (F, M) @ cols^T (M, K) -> (F, K): the sum over the M = OH*OW*N output positions.

    The same product can be computed as (cols @ d2^T)^T. On the CPU, OpenBLAS runs that order up
    to 2x faster where the summed axis is long against the weight's row, M >= 2K (one thread,
    here: small model layer 1 2.7 -> 1.4 ms, fast model layer 1 85 -> 46 ms, layer 2 144 -> 84),
    and the plain order is faster where it is not (fast layer 5: 373 ms against 441).
    """
    if on_cpu(get_array_module(d2)) and cols.shape[1] >= 2 * cols.shape[0]:
        return (cols @ d2.T).T  # (K, F) memory: an F-order view, copied by the caller's reshape
    return d2 @ cols.T


def _in_order_of(a, ref):
    """`a` itself if it has the memory order (strides) of `ref`, else a copy of it in that order."""
    if a.strides == ref.strides:
        return a
    out = get_array_module(a).empty_like(ref, dtype=a.dtype)
    out[...] = a
    return out


# --- max pooling -------------------------------------------------------------------------------
# A window's maximum is the maximum over its columns of each column's maximum, so pooling runs in
# two passes: down the rows (`v`, one value per output row and input column), then across the
# columns. In the layers' (C, H, W, N) memory a pass down the rows reads runs of W*N contiguous
# numbers, a pass across the columns runs of only N; doing the rows first leaves the short runs
# to the smaller array.
def _rows(k: int, stride: int, oh: int):
    return [(slice(None), slice(None), slice(i, i + stride * oh, stride)) for i in range(k)]


def _cols(k: int, stride: int, ow: int):
    return [(slice(None), slice(None), slice(None), slice(j, j + stride * ow, stride)) for j in range(k)]


def _running_max(x, slices):
    xp = get_array_module(x)
    out = xp.empty_like(x[slices[0]])  # empty_like of a slice keeps x's memory order
    out[...] = x[slices[0]]
    for s in slices[1:]:
        xp.maximum(out, x[s], out=out)
    return out


def maxpool_forward(x, k: int, stride: int | None = None):
    """Max pooling, floor output size. x (N, C, H, W) -> out (N, C, OH, OW), cache.

    Separable and loop-free over pixels: `k` strided-slice maxima down the rows, `k` across the
    columns (see the note above); memory-bound.
    """
    stride = k if stride is None else stride
    oh, ow = conv_outsize(x.shape[2], k, stride, 0), conv_outsize(x.shape[3], k, stride, 0)
    v = _running_max(x, _rows(k, stride, oh))  # (N, C, OH, W): each window row-range's column max
    out = _running_max(v, _cols(k, stride, ow))
    return out, (x, v, out, k, stride)


def _route(grad, ref, candidates, dst, dst_slices, overlap: bool):
    """Send `grad` to the first of `candidates` equal to `ref`, writing `dst[dst_slices[t]]`
    (adding when windows overlap); the others get 0. Every step writes into preallocated arrays
    (`out=`): the pass is memory-bound and temporaries cost."""
    xp = get_array_module(grad)
    hit = xp.empty_like(ref, dtype=bool)  # the memory order of ref: no strided mixing
    last = len(candidates) - 1
    for t, (cand, sl) in enumerate(zip(candidates, dst_slices)):
        if t == last and t > 0 and not overlap:
            # No earlier candidate matched exactly where this one must: what is left of grad is
            # grad minus the (one or no) earlier share, exactly 0 or grad.
            xp.subtract(grad, dst[dst_slices[0]], out=dst[sl])
            for u in range(1, t):
                xp.subtract(dst[sl], dst[dst_slices[u]], out=dst[sl])
            return
        xp.equal(cand, ref, out=hit)
        if t == 0:
            # Which maxima are claimed matters from a third candidate on, or where windows overlap
            # (2x2 pooling with stride 2 never asks: a copy of the mask saved).
            taken = hit.copy() if overlap or last > 1 else None
        else:
            xp.greater(hit, taken, out=hit)  # bools: hit > taken is "a max, and not yet claimed"
            taken |= hit
        if overlap:
            dst[sl] += grad * hit
        else:
            xp.multiply(grad, hit, out=dst[sl])


def maxpool_backward(dout, cache):
    """dout (N, C, OH, OW) -> dx (N, C, H, W).

    Tie rule: the gradient of each window goes to exactly one element, its first maximum scanning
    the window column by column (top to bottom within a column), so tied maxima never receive the
    gradient twice. The forward's two passes are undone in reverse: across the columns (to the
    first column holding the maximum), then down the rows (to the first row of that column).
    """
    x, v, out, k, stride = cache
    xp = get_array_module(dout)
    dout = _in_order_of(dout, out)  # the passes below: give them operands of one memory order
    oh, ow = out.shape[2:]
    overlap = stride < k
    cols, rows = _cols(k, stride, ow), _rows(k, stride, oh)
    # Where the windows tile an axis exactly, every element along it is written below.
    g = xp.empty_like(v) if not overlap and x.shape[3] == k * ow else xp.zeros_like(v)
    _route(dout, out, [v[s] for s in cols], g, cols, overlap)
    dx = xp.empty_like(x) if not overlap and x.shape[2] == k * oh else xp.zeros_like(x)
    _route(g, v, [x[s] for s in rows], dx, rows, overlap)
    return dx


# --- pointwise and dense -----------------------------------------------------------------------
def relu_forward(x):
    """max(x, 0), any shape."""
    xp = get_array_module(x)
    out = xp.maximum(x, 0, out=xp.empty_like(x))  # empty_like keeps x's memory order
    return out, out


def relu_backward(dout, cache):
    """Gradient passes where the output was positive (subgradient 0 at 0)."""
    xp = get_array_module(dout)
    # A multiply by the boolean mask is ~8x faster than `where(cache > 0, dout, 0)` in NumPy;
    # the output follows the forward's memory order, so the conv below gets it without a copy.
    return xp.multiply(dout, cache > 0, out=xp.empty_like(cache, dtype=dout.dtype))


def linear_forward(x, W, b):
    """x (N, in), W (out, in), b (out,) -> (N, out)."""
    out = x @ W.T
    out += b
    return out, (x, W)


def linear_backward(dout, cache, need_dx: bool = True):
    """dout (N, out) -> dx (N, in), dW (out, in), db (out,)."""
    x, W = cache
    # A batch of one makes dW a rank-1 outer product: as a broadcast multiply it is one pass over
    # dW, where OpenBLAS's GEMM takes ~7x longer (fast model layer 6: 3072x1 @ 1x36864).
    dW = dout.T * x if dout.shape[0] == 1 else dout.T @ x  # (out, in)
    db = dout.sum(axis=0)
    dx = dout @ W if need_dx else None
    return dx, dW, db


def dropout_mask(shape, p: float, rng, xp, dtype):
    """Inverted-dropout keep mask (0 or 1/(1-p)) of `shape` on `xp`; rng: the layer's seeded numpy
    Generator.

    NumPy: drawn from `rng` itself (so a resumed run, whose checkpoint saves `rng`, draws the same
    masks). A GPU: drawn on the device, from a device generator seeded by one number from `rng`
    (no host draw, no transfer; reproducible per backend and across resume, but not the NumPy
    stream).
    """
    if on_cpu(xp):
        return ((rng.random(shape, dtype="float32") >= p) * (1.0 / (1.0 - p))).astype(dtype)
    u = device_random(xp, int(rng.integers(2**63))).random_sample(shape, dtype=xp.float32)
    keep = (u >= p).astype(dtype)
    keep *= 1.0 / (1.0 - p)
    return keep
