"""Pure forward/backward pairs for every layer (cs231n style: `forward -> (out, cache)`).

Each function takes and returns arrays of one namespace (NumPy or CuPy, found from the inputs);
nothing here holds state. The classes in `layers.py` are thin holders of parameters around these.
"""

from __future__ import annotations

from .backend import get_array_module
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
    dW = (d2 @ cols.T).reshape(W.shape)
    db = d2.sum(axis=1)
    dx = None
    if need_dx:
        dcols = W.reshape(f, -1).T @ d2  # (C*kh*kw, OH*OW*N)
        dx = col2im(dcols, x_shape, kh, kw, stride, pad)
    return dx, dW, db


def _in_order_of(a, ref):
    """`a` itself if it has the memory order (strides) of `ref`, else a copy of it in that order."""
    if a.strides == ref.strides:
        return a
    out = get_array_module(a).empty_like(ref, dtype=a.dtype)
    out[...] = a
    return out


# --- max pooling -------------------------------------------------------------------------------
def _pool_slices(k: int, stride: int, oh: int, ow: int):
    for i in range(k):
        for j in range(k):
            yield (slice(None), slice(None), slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride))


def maxpool_forward(x, k: int, stride: int | None = None):
    """Max pooling, floor output size. x (N, C, H, W) -> out (N, C, OH, OW), cache.

    Computed as the running maximum of k*k strided slices: memory-bound and loop-free over pixels.
    """
    stride = k if stride is None else stride
    xp = get_array_module(x)
    oh, ow = conv_outsize(x.shape[2], k, stride, 0), conv_outsize(x.shape[3], k, stride, 0)
    out = None
    for s in _pool_slices(k, stride, oh, ow):
        if out is None:  # empty_like of a slice keeps x's memory order (batch-last or not)
            out = xp.empty_like(x[s])
            out[...] = x[s]
        else:
            xp.maximum(out, x[s], out=out)
    return out, (x, out, k, stride)


def maxpool_backward(dout, cache):
    """dout (N, C, OH, OW) -> dx (N, C, H, W).

    Tie rule: the gradient of each window goes to exactly one element, its first maximum in
    row-major scan order of the window, so tied maxima never receive the gradient twice. Every
    step writes into preallocated arrays (`out=`): the pass is memory-bound, temporaries cost.
    """
    x, out, k, stride = cache
    xp = get_array_module(dout)
    dout = _in_order_of(dout, out)  # k*k passes below: give them operands of one memory order
    oh, ow = out.shape[2:]
    tiles = stride == k and x.shape[2] == k * oh and x.shape[3] == k * ow
    # When the windows tile the input exactly, every element of dx is written once below.
    dx = xp.empty_like(x) if tiles else xp.zeros_like(x)
    hit = xp.empty_like(out, dtype=bool)  # the memory order of out and x: no strided mixing
    taken = None
    for s in _pool_slices(k, stride, oh, ow):
        xp.equal(x[s], out, out=hit)
        if taken is None:
            taken = hit.copy()
        else:
            xp.greater(hit, taken, out=hit)  # bools: hit > taken is "a max, and not yet claimed"
            taken |= hit
        if stride >= k:  # non-overlapping: each input element belongs to at most one window
            xp.multiply(dout, hit, out=dx[s])
        else:
            dx[s] += dout * hit
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
    dW = dout.T @ x
    db = dout.sum(axis=0)
    dx = dout @ W if need_dx else None
    return dx, dW, db


def dropout_mask(shape, p: float, rng, xp, dtype):
    """Inverted-dropout keep mask (0 or 1/(1-p)), drawn on the host from the numpy Generator `rng`.

    Drawing on the host keeps masks identical on NumPy and CuPy for one seed; the transfer is one
    small array per full layer.
    """
    keep = ((rng.random(shape, dtype="float32") >= p) * (1.0 / (1.0 - p))).astype(dtype)
    return keep if xp.__name__ == "numpy" else xp.asarray(keep)
