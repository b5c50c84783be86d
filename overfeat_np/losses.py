"""Losses, each returning (loss, gradient with respect to the prediction)."""

from __future__ import annotations

from .backend import get_array_module


def softmax(scores, axis=1):
    """Numerically stable softmax along `axis` (classes), any namespace: scores -> probabilities."""
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, labels, ignore_index: int = -1):
    """Mean cross-entropy of softmax(logits) against integer labels, numerically stable.

    logits (N, C) or (N, C, H, W) (one prediction per location, as in spatial detection training,
    Section 5); labels (N,) or (N, H, W) int class indices, `ignore_index` entries not counted.
    Returns (loss: float, dlogits with the shape of logits). The mean is over counted entries.
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
    c = logits.shape[1]
    labels = xp.asarray(labels)
    valid = labels != ignore_index
    if bool((valid & ((labels < 0) | (labels >= c))).any()):
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {c}) (or equal ignore_index={ignore_index})")
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    safe = xp.where(valid, labels, 0)
    picked = xp.take_along_axis(z, safe[:, None], axis=1)[:, 0]  # (N, ...) logit of the label
    count = max(int(valid.sum()), 1)
    loss = float(((xp.log(s[:, 0]) - picked) * valid).sum()) / count
    dlogits = e / s  # softmax; d loss / d logits = softmax - onehot(label), per counted entry
    p_label = xp.take_along_axis(dlogits, safe[:, None], axis=1)
    xp.put_along_axis(dlogits, safe[:, None], p_label - 1, axis=1)
    dlogits *= (valid[:, None] / count).astype(dlogits.dtype)
    return loss, dlogits


def l2_loss(pred, target, mask=None):
    """0.5 * squared error summed over each sample's outputs, averaged over counted samples.

    pred, target (N, ...) same shape; mask with the shape of pred's leading axes (e.g. (N,) or
    (N, H, W) for pred (N, H, W, 4)), 1 counts and 0 ignores (windows overlapping the box by less
    than 50% are not trained on, Section 4); other non-negative values weight a sample.
    loss = 0.5 * sum(w * (pred - target)^2) / sum(w). Returns (loss: float, dpred like pred).
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
        w = xp.asarray(mask).astype(pred.dtype)
        count = max(float(w.sum()), 1.0)
        weighted = diff * w.reshape(w.shape + (1,) * (pred.ndim - w.ndim))
    loss = 0.5 * float((weighted * diff).sum()) / count
    weighted *= pred.dtype.type(1.0 / count)  # our own temporary: scaled in place into dpred
    return loss, weighted
