"""Log-softmax, fused cross-entropy and dropout."""

import numpy as np

from numpyml.engine import Tensor, as_tensor, make_result


def _log_softmax_array(logits, axis):
    # Shifting by the maximum keeps exp() in range for any logit gap, even in float32.
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """Return x - logsumexp(x) along ``axis``, computed with a shifted log-sum-exp.

    d/dx: g - softmax(x) * sum(g).
    """
    x = as_tensor(x)
    out = _log_softmax_array(x.data, axis)

    def vjp(g):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return make_result(out, (x,), vjp, "log_softmax")


def cross_entropy(logits, labels):
    """Return the mean negative log-likelihood of integer ``labels`` under softmax(``logits``).

    ``logits`` has shape (N, K) and ``labels`` shape (N,) with values in [0, K).
    d/dlogits = (softmax(logits) - onehot(labels)) / N.
    """
    logits = as_tensor(logits)
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: logits must be (N, K) and labels (N,); got {logits.shape} "
            f"and {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers; got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {logits.shape[1]}); got values from "
            f"{labels.min()} to {labels.max()}"
        )
    count = logits.shape[0]
    rows = np.arange(count)
    log_probs = _log_softmax_array(logits.data, axis=1)
    out = -log_probs[rows, labels].mean()

    def vjp(g):
        grad = np.exp(log_probs)
        grad[rows, labels] -= 1
        return (grad * (g / count),)

    return make_result(np.asarray(out, dtype=logits.dtype), (logits,), vjp, "cross_entropy")


def dropout(x, p, rng, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout).

    ``rng`` is a ``numpy.random.Generator``; outside training, or with p = 0, ``x`` passes
    through unchanged.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1); got {p}")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    scale = np.asarray(1 / (1 - p), dtype=x.dtype)
    mask = (rng.random(x.shape, dtype=np.float32) >= p) * scale
    out = x.data * mask

    def vjp(g):
        return (g * mask,)

    return make_result(out, (x,), vjp, "dropout")
