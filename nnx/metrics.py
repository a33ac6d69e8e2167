"""Classification and regression metrics computed on the device, with one transfer to the host at the end.

Every classification function takes true class numbers and predicted class
numbers (or scores) as arrays of any backend, or NumPy arrays and lists. The
counting happens where the arrays are (a GPU stays busy, the host gets one
small array); the results are host numbers. Class numbers are
``0 .. classes-1``; map other labels first
(:func:`nnx.preprocessing.encode_labels`). The regression functions
(:func:`rmse`, :func:`mae`, :func:`r2`, :func:`regression_scores`) take true
and predicted values the same way.
"""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.arguments import integer
from nnx.errors import ShapeError, TargetError

# rows of one-hot per chunk: bounds the temporary (rows x classes) arrays
_CHUNK_ELEMENTS = 2**22


def _backend_name(value: Any) -> str | None:
    """The backend of a device array, or ``None`` for lists, tuples and other host data."""
    if isinstance(value, (list, tuple)):
        return None
    try:
        return _backend.backend_of(value)
    except TypeError:
        return None


def _on_one_backend(*arrays: Any) -> list[Any]:
    """The arrays on the backend of the first one that is not host data (NumPy or a list), else on the host."""
    names = [_backend_name(a) for a in arrays]
    name = next((n for n in names if n not in (None, _backend.HOST)), _backend.HOST)
    return [a if n == name else _backend.to_device(a, name) for a, n in zip(arrays, names)]


def _pair(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """The namespace and both class-number arrays as int64 on one backend, checked for rank and dtype."""
    t, p = _on_one_backend(y_true, y_pred)
    xp = _backend.namespace_of(t)
    for what, a in (("y_true", t), ("y_pred", p)):
        if a.ndim != 1 or not xp.isdtype(a.dtype, "integral"):
            raise TargetError(f"{what} must be a 1-D array of class numbers, got {_backend.dtype_name(a)} "
                              f"{tuple(a.shape)}; for scores or probabilities pass their arg-max over the "
                              f"classes, or use top_k_accuracy")
    if t.shape != p.shape:
        raise ShapeError(f"y_true has {t.shape[0]} samples, y_pred {p.shape[0]}")
    return xp, xp.astype(t, xp.int64), xp.astype(p, xp.int64)


def _range_error(xp: Any, t: Any, p: Any, classes: int) -> TargetError:
    both = xp.concat([t, p])
    low, high = (int(v) for v in _backend.to_host(xp.stack([xp.min(both), xp.max(both)])))
    return TargetError(f"class numbers must be in [0, {classes}), got {low}..{high}")


def _counts(y_true: Any, y_pred: Any, classes: int | None) -> tuple[Any, Any, Any, int, int]:
    """The confusion counts on the device, float64 ``(k, k)``; the namespace, both arrays, ``n`` and ``k``."""
    xp, t, p = _pair(y_true, y_pred)
    n = int(t.shape[0])
    if classes is None:
        k = int(_backend.to_host(xp.max(xp.concat([t, p])))) + 1 if n else 0
    else:
        k = integer(classes, "classes", "metrics", minimum=0)
    counts = xp.zeros((k, k), dtype=xp.float64, device=t.device)
    ids = xp.arange(k, dtype=xp.int64, device=t.device)
    step = max(1, _CHUNK_ELEMENTS // max(k, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)  # slices past the end are not portable
        one_t = xp.astype(t[start:stop, None] == ids[None, :], xp.float64)
        one_p = xp.astype(p[start:stop, None] == ids[None, :], xp.float64)
        counts = counts + xp.matmul(xp.matrix_transpose(one_t), one_p)  # exact below 2**53 samples
    return counts, xp, (t, p), n, k


def _checked(host: Any, xp: Any, pair: tuple[Any, Any], n: int, k: int) -> Any:
    """The host confusion counts as int64, after checking every sample landed in a cell."""
    if int(host[:k].sum()) != n:  # a class number outside [0, k) matched no column
        raise _range_error(xp, *pair, k)
    return host[:k].astype("int64")


def confusion_matrix(y_true: Any, y_pred: Any, classes: int | None = None) -> Any:
    """``C[i, j]``: how many samples of true class ``i`` were predicted as ``j`` (host NumPy int64,
    ``classes x classes``)."""
    counts, xp, pair, n, k = _counts(y_true, y_pred, classes)
    return _checked(_backend.to_host(counts), xp, pair, n, k)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The fraction of samples whose predicted class is the true one (0.0 for no samples)."""
    xp, t, p = _pair(y_true, y_pred)
    n = int(t.shape[0])
    return float(_backend.to_host(xp.sum(xp.astype(t == p, xp.int64)))) / n if n else 0.0


def precision_recall_f1(y_true: Any, y_pred: Any, classes: int | None = None) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support (host NumPy arrays), their macro averages,
    accuracy and the confusion matrix, computed on the device and moved to the host at once.

    A class never predicted has precision 0; a class absent from ``y_true``
    has recall 0 (and support 0); F1 is 0 where precision + recall is 0.
    """
    counts, xp, pair, n, k = _counts(y_true, y_pred, classes)
    right = xp.sum(counts * xp.eye(k, dtype=xp.float64, device=counts.device), axis=1)
    predicted, support = xp.sum(counts, axis=0), xp.sum(counts, axis=1)

    def ratio(a: Any, b: Any) -> Any:
        return xp.where(b > 0, a / xp.where(b > 0, b, xp.ones_like(b)), xp.zeros_like(a))

    precision, recall = ratio(right, predicted), ratio(right, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    host = _backend.to_host(xp.concat([counts, xp.stack([precision, recall, f1, support, right])], axis=0))
    matrix = _checked(host, xp, pair, n, k)
    precision, recall, f1, support, right = host[k:]
    return {
        "precision": precision, "recall": recall, "f1": f1, "support": support.astype("int64"),
        "macro_precision": float(precision.mean()) if k else 0.0,
        "macro_recall": float(recall.mean()) if k else 0.0,
        "macro_f1": float(f1.mean()) if k else 0.0,
        "accuracy": float(right.sum() / n) if n else 0.0,
        "confusion_matrix": matrix,
    }


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """The fraction of samples whose true class is among the ``k`` highest ``scores`` (``samples x classes``).

    A true class tied with others counts as ranked above them.
    """
    k = integer(k, "k", "top_k_accuracy", minimum=1)
    s, t = _on_one_backend(scores, y_true)
    xp = _backend.namespace_of(s)
    if not xp.isdtype(s.dtype, "real floating"):
        s = xp.astype(s, xp.float64)
    if s.ndim != 2 or t.ndim != 1 or int(t.shape[0]) != int(s.shape[0]):
        raise ShapeError(f"top_k_accuracy needs y_true (samples,) and scores (samples, classes), got "
                         f"{tuple(t.shape)} and {tuple(s.shape)}")
    n, c = int(s.shape[0]), int(s.shape[1])
    if not n:
        return 0.0
    if not xp.isdtype(t.dtype, "integral"):
        raise TargetError(f"y_true must be class numbers, got {_backend.dtype_name(t)}")
    t = xp.astype(t, xp.int64)
    ids = xp.arange(c, dtype=xp.int64, device=s.device)
    hit = t[:, None] == ids[None, :]
    true_score = xp.sum(xp.where(hit, s, xp.zeros_like(s)), axis=1)
    above = xp.sum(xp.astype(s > true_score[:, None], xp.int64), axis=1)
    found = xp.sum(xp.astype(hit, xp.int64))
    right, found = (int(v) for v in _backend.to_host(xp.stack([xp.sum(xp.astype(above < k, xp.int64)), found])))
    if found != n:
        raise _range_error(xp, t, t, c)
    return right / n


def report(y_true: Any, y_pred: Any, labels: list[Any] | None = None) -> str:
    """A text table: per-class precision, recall, F1 and support, the macro averages, accuracy and
    the confusion matrix (rows: true class, columns: predicted), with ``labels`` as class names."""
    classes = len(labels) if labels is not None else None
    scores = precision_recall_f1(y_true, y_pred, classes)
    names = [str(v) for v in (labels if labels is not None else range(len(scores["f1"])))]
    width = max([len(n) for n in names] + [9])
    lines = [f"{'class':>{width}}  precision  recall     f1  support"]
    for i, name in enumerate(names):
        lines.append(f"{name:>{width}}  {scores['precision'][i]:9.4f}  {scores['recall'][i]:6.4f}  "
                     f"{scores['f1'][i]:6.4f}  {scores['support'][i]:7d}")
    lines.append(f"{'macro avg':>{width}}  {scores['macro_precision']:9.4f}  {scores['macro_recall']:6.4f}  "
                 f"{scores['macro_f1']:6.4f}  {int(scores['support'].sum()):7d}")
    lines.append(f"accuracy {scores['accuracy']:.4f}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    cell = max([len(n) for n in names] + [len(str(int(scores["confusion_matrix"].max(initial=0))))])
    lines.append(" " * (width + 1) + " ".join(f"{n:>{cell}}" for n in names))
    for name, row in zip(names, scores["confusion_matrix"]):
        lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)


# regression ---------------------------------------------------------------------------


def _values(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """The namespace and both value arrays as float64 ``(samples, outputs)`` on one backend, checked."""
    t, p = _on_one_backend(y_true, y_pred)
    xp = _backend.namespace_of(t)
    for what, a in (("y_true", t), ("y_pred", p)):
        if a.ndim not in (1, 2) or not (xp.isdtype(a.dtype, "real floating") or xp.isdtype(a.dtype, "integral")):
            raise TargetError(f"{what} must be a 1-D or 2-D array of real numbers (samples, or samples x outputs), "
                              f"got {a.dtype} {tuple(a.shape)}")
    shapes = (tuple(t.shape), tuple(p.shape))
    if int(t.shape[0]) == 0:
        raise ShapeError("regression metrics need at least one sample, got none")
    t, p = (a[:, None] if a.ndim == 1 else a for a in (t, p))  # a vector is one output
    if t.shape != p.shape:
        raise ShapeError(f"y_true has shape {shapes[0]}, y_pred {shapes[1]}; give one value per sample "
                         f"(and output) in both")
    return xp, xp.astype(t, xp.float64), xp.astype(p, xp.float64)


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Root mean squared error, mean absolute error and the coefficient of determination R^2 at once.

    ``y_true`` and ``y_pred`` are ``(samples,)`` or ``(samples, outputs)``
    (a single column and a vector pair up). Per output ``j``:
    ``rmse_j = sqrt(mean((t - p)**2))``, ``mae_j = mean(|t - p|)``,
    ``r2_j = 1 - sum((t - p)**2) / sum((t - mean(t))**2)``; each score is the
    plain average over the outputs. An output whose true values are all equal
    has ``r2_j = 1`` when predicted exactly and ``0`` otherwise (instead of a
    division by zero). Computed in float64 where the arrays are; one small
    array moves to the host.

    Returns
    -------
    dict
        ``{"rmse": float, "mae": float, "r2": float}``.
    """
    xp, t, p = _values(y_true, y_pred)
    # per output, in units of a power of two near its largest magnitude (exact): squares of values near
    # the float64 limit would overflow, and of tiny ones underflow
    peak = xp.max(xp.maximum(xp.abs(t), xp.abs(p)), axis=0)
    unit = 2.0 ** xp.floor(xp.log2(xp.where((peak > 0) & xp.isfinite(peak), peak, xp.ones_like(peak))))
    t, p = t / unit, p / unit
    error = t - p
    squares = xp.mean(error * error, axis=0)
    spread = xp.sum((t - xp.mean(t, axis=0))**2, axis=0)
    residual = xp.sum(error * error, axis=0)
    safe = xp.where(spread > 0, spread, xp.ones_like(spread))
    r2 = xp.where(spread > 0, 1 - residual / safe, xp.where(residual == 0, xp.ones_like(spread), xp.zeros_like(spread)))
    host = _backend.to_host(xp.stack([xp.mean(xp.sqrt(squares) * unit), xp.mean(xp.mean(xp.abs(error), axis=0) * unit),
                                      xp.mean(r2)]))
    return {"rmse": float(host[0]), "mae": float(host[1]), "r2": float(host[2])}


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error (per output, averaged over outputs); see :func:`regression_scores`."""
    return regression_scores(y_true, y_pred)["rmse"]


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error (per output, averaged over outputs); see :func:`regression_scores`."""
    return regression_scores(y_true, y_pred)["mae"]


def r2(y_true: Any, y_pred: Any) -> float:
    """The coefficient of determination R^2 (per output, averaged over outputs); see :func:`regression_scores`."""
    return regression_scores(y_true, y_pred)["r2"]


__all__ = ["accuracy", "confusion_matrix", "mae", "precision_recall_f1", "r2", "regression_scores", "report", "rmse",
           "top_k_accuracy"]
