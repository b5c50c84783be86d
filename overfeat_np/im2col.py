"""im2col / col2im: convolution as one matrix product.

The column matrix is laid out for the GEMM, not for the image: rows are (c, ki, kj) and columns
are (oh, ow, n), so the forward pass is a single `W (out, C*kh*kw) @ cols (C*kh*kw, OH*OW*N)` and
both backward products are single GEMMs as well. It is filled with one strided-slice copy per
kernel offset (kh*kw copies, never a loop over pixels), and col2im adds the same slices back, so
no scatter (`np.add.at`) is ever needed: within one kernel offset the slices never overlap.

Memory order: batch innermost. Activations live in (C, H, W, N) memory, the layout of
Krizhevsky's cuda-convnet that OverFeat's own code grew from. A kernel offset then reads, for each
channel and output row, one contiguous run of OW*N numbers (384 for layer 2 of the fast model at
batch 16) where an (N, C, H, W) image would give runs of OW (24): the copies are bound by memory
bandwidth, not by the per-row cost of the array iterator. The convolution's natural output
`W @ cols` is then (F, OH, OW, N) in memory, already the layout the next layer wants.
`functional.py` hands activations on as NCHW-shaped *views* of that memory
(`a.transpose(3, 0, 1, 2)`), the pointwise layers keep the order, and `pad_batch_last` costs
nothing when there is no padding, because `x.transpose(1, 2, 3, 0)` of such a view is already
contiguous. Any other memory order (a plain NCHW batch) is accepted and copied once.
"""

from __future__ import annotations

from .backend import get_array_module, on_cpu

_CACHE_BYTES = 256 * 1024  # how much of im2col's source to keep re-reading from cache


def conv_outsize(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution/pooling along one axis (floor division, as in the paper)."""
    return (size + 2 * pad - k) // stride + 1


def batch_last(a):
    """(C, H, W, N) memory -> the NCHW-shaped view of it the layers hand on (no copy)."""
    return a.transpose(3, 0, 1, 2)


def pad_batch_last(x, pad: int):
    """(N, C, H, W) -> (C, H+2p, W+2p, N), contiguous: transpose and zero-pad in one copy.

    No copy at all when pad is 0 and x is a batch-last view (what the layers here produce).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if not pad:
        return xp.ascontiguousarray(x.transpose(1, 2, 3, 0))  # the view itself if contiguous
    out = xp.zeros((c, h + 2 * pad, w + 2 * pad, n), dtype=x.dtype)
    out[:, pad : pad + h, pad : pad + w] = x.transpose(1, 2, 3, 0)
    return out


def stride_phases(x, stride: int, rows: int, cols: int):
    """Split x (N, C, H, W) (any memory order) by stride phase into batch-last memory:
    -> (C, s, s, rows, cols, N), s = stride, with out[c, p, q, a, b, n] = x[n, c, a*s + p, b*s + q]
    (zero where that lies outside x); rows/cols: how many rows/columns of each phase to keep.

    A kernel offset (i, j) of a stride-s convolution reads rows i, i+s, i+2s, ... of the image: in
    the split array that is the unit-stride run out[:, i % s, j % s, i//s : i//s + OH], so im2col's
    copies become contiguous runs instead of gathers of every s-th element (layer 1 of the fast
    model: 121 gathers at stride 4 replaced by one split of the small input). The split is also
    the copy that puts the batch innermost, straight from a plain NCHW batch (layer 1's input,
    read once); on the CPU a channel at a time, so what each copy gathers stays in the cache.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    exact = stride * rows <= h and stride * cols <= w  # then every phase fills its rows x cols
    out = (xp.empty if exact else xp.zeros)((c, stride, stride, rows, cols, n), dtype=x.dtype)
    step = 1 if on_cpu(xp) else c  # on a GPU every copy is a kernel launch: all channels at once
    for c0 in range(0, c, step):
        for p in range(stride):
            for q in range(stride):
                part = x[:, c0 : c0 + step, p : p + stride * rows : stride, q : q + stride * cols : stride]
                out[c0 : c0 + step, p, q, : part.shape[2], : part.shape[3]] = part.transpose(1, 2, 3, 0)
    return out


def im2col(x, kh: int, kw: int, stride: int = 1, pad: int = 0):
    """Unfold x (N, C, H, W) into columns (C*kh*kw, OH*OW*N) for `W.reshape(out, -1) @ cols`.

    Returns (cols, (OH, OW)). Row order (c, ki, kj) matches the weight layout (out, in, kh, kw);
    column order (oh, ow, n), batch innermost: column (y*OW + x)*N + n holds the window of image n
    at output position (y, x).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    s = stride
    oh, ow = conv_outsize(h, kh, s, pad), conv_outsize(w, kw, s, pad)
    if s == 1:
        xs = pad_batch_last(x, pad)[:, None, None]  # (C, 1, 1, Hp, Wp, N): one phase, a view
    else:  # padded first only where there is padding (no model here pads a strided layer)
        src = batch_last(pad_batch_last(x, pad)) if pad else x
        xs = stride_phases(src, s, oh + (kh - 1) // s, ow + (kw - 1) // s)  # (C, s, s, ., ., N)
    cols = xp.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    # On the CPU a few channels at a time, so the kh*kw copies of a block re-read a source that is
    # still in the cache (about 256 KiB of it) instead of streaming all of x from memory kh*kw
    # times. On a GPU each copy is a kernel launch: all channels at once, kh*kw launches in all.
    step = max(1, _CACHE_BYTES // max(1, xs[0].nbytes)) if on_cpu(xp) else c
    for c0 in range(0, c, step):
        src, dst = xs[c0 : c0 + step], cols[c0 : c0 + step]
        for i in range(kh):
            a = i // s
            for j in range(kw):
                b = j // s
                dst[:, i, j] = src[:, i % s, j % s, a : a + oh, b : b + ow]
    return cols.reshape(c * kh * kw, oh * ow * n), (oh, ow)


def col2im(cols, x_shape, kh: int, kw: int, stride: int = 1, pad: int = 0):
    """Adjoint of `im2col`: fold columns (C*kh*kw, OH*OW*N) back into (N, C, H, W), adding overlaps.

    The result is an NCHW-shaped view of (C, H, W, N) memory (see the module docstring).
    """
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    oh, ow = conv_outsize(h, kh, stride, pad), conv_outsize(w, kw, stride, pad)
    cols = cols.reshape(c, kh, kw, oh, ow, n)
    dxt = xp.zeros((c, h + 2 * pad, w + 2 * pad, n), dtype=cols.dtype)
    for i in range(kh):
        i_end = i + stride * oh
        for j in range(kw):
            dxt[:, i:i_end:stride, j : j + stride * ow : stride] += cols[:, i, j]
    return batch_last(dxt[:, pad : pad + h, pad : pad + w])
