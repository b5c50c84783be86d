"""im2col / col2im: convolution as one matrix product.

The column matrix is laid out for the GEMM, not for the image: rows are (c, ki, kj) and columns
are (n, oh, ow), so the forward pass is a single `W (out, C*kh*kw) @ cols (C*kh*kw, N*OH*OW)` and
both backward products are single GEMMs as well. It is filled with one strided-slice copy per
kernel offset (kh*kw copies, never a loop over pixels), and col2im adds the same slices back, so
no scatter (`np.add.at`) is ever needed: within one kernel offset the slices never overlap.

Memory order. The columns are channel-major, (C, N, ...), so the convolution's natural output
`W @ cols` is (F, N, OH, OW) in memory. `functional.py` hands activations on as NCHW-shaped
*views* of that channel-major memory (`a.transpose(1, 0, 2, 3)`) instead of copying them to NCHW,
and the pointwise layers keep that order; `pad_channels_first` then costs nothing when there is no
padding, because `x.transpose(1, 0, 2, 3)` of such a view is already contiguous.
"""

from __future__ import annotations

from .backend import get_array_module


def conv_outsize(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution/pooling along one axis (floor division, as in the paper)."""
    return (size + 2 * pad - k) // stride + 1


def pad_channels_first(x, pad: int):
    """(N, C, H, W) -> (C, N, H+2p, W+2p), contiguous: transpose and zero-pad in one copy.

    No copy at all when pad is 0 and x is a channels-first view (what the layers here produce).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if not pad:
        return xp.ascontiguousarray(x.transpose(1, 0, 2, 3))  # returns the view itself if contiguous
    out = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    out[:, :, pad : pad + h, pad : pad + w] = x.transpose(1, 0, 2, 3)
    return out


def stride_phases(xt, stride: int, rows: int, cols: int):
    """Split xt (C, N, H, W) by stride phase: -> (C, s, s, N, rows, cols), s = stride, with
    out[:, p, q, :, a, b] = xt[:, :, a*s + p, b*s + q] (zero where that lies outside xt);
    rows/cols: how many rows/columns of each phase to keep.

    A kernel offset (i, j) of a stride-s convolution reads rows i, i+s, i+2s, ... of xt: in the
    split array that is the unit-stride run out[:, i % s, j % s, :, i//s : i//s + OH], so im2col's
    copies become contiguous row copies instead of gathers of every s-th element (layer 1 of the
    fast model: 121 gathers at stride 4 replaced by one split of the small input).
    """
    xp = get_array_module(xt)
    c, n = xt.shape[:2]
    out = xp.zeros((c, stride, stride, n, rows, cols), dtype=xt.dtype)
    for p in range(stride):
        for q in range(stride):
            part = xt[:, :, p : p + stride * rows : stride, q : q + stride * cols : stride]
            out[:, p, q, :, : part.shape[2], : part.shape[3]] = part
    return out


def im2col(x, kh: int, kw: int, stride: int = 1, pad: int = 0):
    """Unfold x (N, C, H, W) into columns (C*kh*kw, N*OH*OW) for `W.reshape(out, -1) @ cols`.

    Returns (cols, (OH, OW)). Row order (c, ki, kj) matches the weight layout (out, in, kh, kw).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    s = stride
    oh, ow = conv_outsize(h, kh, s, pad), conv_outsize(w, kw, s, pad)
    xt = pad_channels_first(x, pad)  # (C, N, Hp, Wp)
    if s == 1:
        xs = xt[:, None, None]  # (C, 1, 1, N, Hp, Wp): one phase, a view
    else:
        xs = stride_phases(xt, s, oh + (kh - 1) // s, ow + (kw - 1) // s)  # (C, s, s, N, ., .)
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        a = i // s
        for j in range(kw):
            b = j // s
            cols[:, i, j] = xs[:, i % s, j % s, :, a : a + oh, b : b + ow]
    return cols.reshape(c * kh * kw, n * oh * ow), (oh, ow)


def col2im(cols, x_shape, kh: int, kw: int, stride: int = 1, pad: int = 0):
    """Adjoint of `im2col`: fold columns (C*kh*kw, N*OH*OW) back into (N, C, H, W), adding overlaps.

    The result is an NCHW-shaped view of channel-major memory (see the module docstring).
    """
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    oh, ow = conv_outsize(h, kh, stride, pad), conv_outsize(w, kw, stride, pad)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    dxt = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        i_end = i + stride * oh
        for j in range(kw):
            dxt[:, :, i:i_end:stride, j : j + stride * ow : stride] += cols[:, i, j]
    return dxt[:, :, pad : pad + h, pad : pad + w].transpose(1, 0, 2, 3)
