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


def im2col(x, kh: int, kw: int, stride: int = 1, pad: int = 0):
    """Unfold x (N, C, H, W) into columns (C*kh*kw, N*OH*OW) for `W.reshape(out, -1) @ cols`.

    Returns (cols, (OH, OW)). Row order (c, ki, kj) matches the weight layout (out, in, kh, kw).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    oh, ow = conv_outsize(h, kh, stride, pad), conv_outsize(w, kw, stride, pad)
    xt = pad_channels_first(x, pad)  # (C, N, Hp, Wp)
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        i_end = i + stride * oh
        for j in range(kw):
            cols[:, i, j] = xt[:, :, i:i_end:stride, j : j + stride * ow : stride]
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
