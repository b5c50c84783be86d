"""Losses, each returning (loss, gradient with respect to the prediction)."""

from __future__ import annotations

from .backend import get_array_module, on_cpu


def _same_namespace(who: str, name: str, a, xp):
    """Refuse an operand that lives elsewhere than the prediction: a host array next to device
    logits would be a silent host->device copy every call; the caller moves it, once."""
    if get_array_module(a) is not xp:
        raise TypeError(f"{who}: {name} lives on {get_array_module(a).__name__} but the prediction on "
                        f"{xp.__name__}; move it explicitly (xp.asarray) before the call")


def softmax(scores, axis=1):
    """Numerically stable softmax along `axis` (classes), any namespace: scores -> probabilities."""
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, labels, ignore_index: int = -1):
    """Mean cross-entropy of softmax(logits) against integer labels, numerically stable.

    logits (N, C) or (N, C, H, W) (one prediction per location, as in spatial detection training,
    Section 5); labels (N,) or (N, H, W) int class indices in the logits' namespace,
    `ignore_index` entries not counted. Returns (loss, dlogits with the shape of logits); the
    mean is over counted entries. loss is a 0-d float64 of the logits' namespace (on NumPy a
    np.float64, which is a float), so reading it on a GPU is the caller's synchronisation.
    Out-of-range labels raise on NumPy; on a GPU, where checking would synchronise, they make
    the loss NaN instead (the caller's finiteness check then stops the run).
    """
    xp = get_array_module(logits)
    if logits.ndim < 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (N, C[, H, W]), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(
            f"softmax_cross_entropy: labels shape {labels.shape} does not match logits {logits.shape}; "
            f"expected {(logits.shape[0],) + logits.shape[2:]}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"softmax_cross_entropy: labels must be integer class indices, got dtype {labels.dtype}")
    _same_namespace("softmax_cross_entropy", "labels", labels, xp)
    c = logits.shape[1]
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= c))
    if on_cpu(xp) and bad.any():
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {c}) (or equal ignore_index={ignore_index})")
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    safe = xp.where(valid & ~bad, labels, 0)
    picked = xp.take_along_axis(z, safe[:, None], axis=1)[:, 0]  # (N, ...) logit of the label
    count = xp.maximum(valid.sum(), 1)  # stays where it is: no synchronisation
    loss = ((xp.log(s[:, 0]) - picked) * valid).sum().astype(xp.float64) / count
    if not on_cpu(xp):
        loss = xp.where(bad.any(), xp.nan, loss)
    dlogits = e / s  # softmax; d loss / d logits = softmax - onehot(label), per counted entry
    p_label = xp.take_along_axis(dlogits, safe[:, None], axis=1)
    xp.put_along_axis(dlogits, safe[:, None], p_label - 1, axis=1)
    dlogits *= (valid[:, None] / count).astype(dlogits.dtype)
    return loss, dlogits


def l2_loss(pred, target, mask=None):
    """0.5 * squared error summed over each sample's outputs, averaged over counted samples.

    pred, target (N, ...) same shape; mask with the shape of pred's leading axes (e.g. (N,) or
    (N, H, W) for pred (N, H, W, 4)), 1 counts and 0 ignores (windows overlapping the box by less
    than 50% are not trained on, Section 4); other non-negative values weight a sample. target
    and mask live in pred's namespace. loss = 0.5 * sum(w * (pred - target)^2) / sum(w).
    Returns (loss, dpred like pred); loss is a 0-d float64 of pred's namespace (see
    `softmax_cross_entropy`).
    """
    xp = get_array_module(pred)
    if pred.shape != target.shape:
        raise ValueError(f"l2_loss: pred shape {pred.shape} does not match target shape {target.shape}")
    diff = pred - target
    if mask is None:
        count = pred.shape[0]
        weighted = diff
    else:
        if tuple(mask.shape) != tuple(pred.shape[: mask.ndim]):
            raise ValueError(
                f"l2_loss: mask shape {tuple(mask.shape)} must equal pred's leading axes "
                f"{tuple(pred.shape[: mask.ndim])} (pred shape {pred.shape})"
            )
        _same_namespace("l2_loss", "mask", mask, xp)
        w = mask.astype(pred.dtype)
        count = xp.maximum(w.sum().astype(xp.float64), 1.0)  # no synchronisation
        weighted = diff * w.reshape(w.shape + (1,) * (pred.ndim - w.ndim))
    loss = 0.5 * (weighted * diff).sum().astype(xp.float64) / count
    scale = 1.0 / count
    # our own temporary: scaled in place into dpred
    weighted *= scale.astype(pred.dtype) if hasattr(scale, "astype") else pred.dtype.type(scale)
    return loss, weighted
