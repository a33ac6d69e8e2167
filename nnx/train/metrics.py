"""Metrics fit and evaluate report: each a batch's *sum* as a 0-d array on the device."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx.errors import ShapeError

Metric = Callable[[Any, Any], Any]


def accuracy_count(output: Any, target: Any) -> Any:
    """How many samples of a batch are classified right, as a 0-d float array on the device.

    Several output columns: the arg-max is the class, compared with integer
    targets or with the arg-max of one-hot targets. One column: ``output > 0.5``
    against ``target > 0.5`` (sigmoid outputs with 0/1 targets). Targets of another shape
    (another batch, another number of classes) are a :class:`~nnx.errors.ShapeError`.
    """
    xp = _backend.namespace_of(output)
    out, tgt = tuple(output.shape), tuple(target.shape)
    n = out[0] if out else -1
    if len(out) == 2 and out[1] > 1:
        if tgt not in ((n,), out):
            raise ShapeError(f"accuracy of outputs {out} needs class numbers ({n},) or one-hot targets {out}, "
                             f"got targets of shape {tgt}")
        predicted = xp.argmax(output, axis=1)
        truth = target if target.ndim == 1 else xp.argmax(target, axis=1)
        right = predicted == xp.astype(truth, predicted.dtype)
    else:
        if out not in ((n,), (n, 1)) or tgt not in ((n,), (n, 1)):
            raise ShapeError(f"accuracy of one output per sample needs outputs and targets of shape (samples,) "
                             f"or (samples, 1), of one length, got {out} and {tgt}")
        right = xp.reshape(output, (n,)) > 0.5  # reshaped: (n, 1) against (n,) must not broadcast to (n, n)
        right = right == (xp.reshape(target, (n,)) > 0.5)
    return xp.sum(xp.astype(right, output.dtype))


def _looks_like_classes(y_host: Any) -> bool:
    """Whether ``accuracy`` means something for these targets (checked once, on the host)."""
    kind = y_host.dtype.kind
    if kind in "iub":
        return True
    if y_host.ndim == 2 and y_host.shape[1] > 1:
        return bool(((y_host == 0) | (y_host == 1)).all() and (y_host.sum(axis=1) == 1).all())
    return bool(((y_host == 0) | (y_host == 1)).all())


def resolve_metrics(metrics: Any, y: Any) -> dict[str, Metric]:
    """``None`` means accuracy when the targets are classes; names or ``{name: fn}`` otherwise.

    A metric function takes ``(output, target)`` of one batch and returns the
    batch's *sum* as a 0-d device array (like :func:`accuracy_count`); the
    history holds the sum over the epoch divided by the number of samples.
    """
    if metrics is None:
        return {"accuracy": accuracy_count} if _looks_like_classes(_backend.to_host(y)) else {}
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        return dict(metrics)
    resolved: dict[str, Metric] = {}
    for m in metrics:
        if m == "accuracy":
            resolved["accuracy"] = accuracy_count
        elif callable(m):
            resolved[getattr(m, "__name__", f"metric{len(resolved)}")] = m
        else:
            raise ValueError(f"unknown metric {m!r}; use 'accuracy', a function or a {{name: function}} dict")
    return resolved


__all__ = ["Metric", "accuracy_count", "resolve_metrics"]
