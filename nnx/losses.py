"""Losses: ``forward(pred, target)`` returns a 0-d array; ``backward()`` returns d loss / d pred.

Conventions (``N`` is the number of elements of ``pred``):

* :class:`MSE` — ``mean((pred - target)**2)``; gradient ``2 (pred - target) / N``.
  With ``reduction="sum"`` it is the sum of squares.
* :class:`SumSquaredError` — ``sum((pred - target)**2)``; gradient
  ``2 (pred - target)``. With ``half=True`` it is ``1/2 sum((pred - target)**2)``
  and the gradient is exactly ``pred - target``: the loss the single-neuron and
  iamtrask tutorials train on implicitly when they use ``error = y - output``
  as the output delta.
* :class:`BinaryCrossEntropyWithLogits` (alias ``BCEWithLogits``) — from logits
  ``z`` and targets ``t`` in [0, 1]: ``max(z, 0) - z t + log(1 + exp(-|z|))``,
  gradient ``sigmoid(z) - t`` (``/N`` for the mean). Finite for any ``z``.
* :class:`SoftmaxCrossEntropy` — from logits of shape ``(..., classes)`` and
  integer class indices ``(...)`` or one-hot/probability targets
  ``(..., classes)``; log-softmax through log-sum-exp, fused with its
  gradient ``softmax(z) * sum(q) - q``. ``"mean"`` averages over the counted
  positions (``ignore_index`` and per-position weights decide which count).

Every loss checks that its prediction (and float target) is finite, no NaN and
no ±inf: one pass and one device-to-host sync per call (switch off with
``nnx.set_finite_checks(False)``).
"""

from __future__ import annotations

import math
from typing import Any

from nnx import backend as _backend
from nnx import ops
from nnx.arguments import integer
from nnx.errors import DTypeError, ShapeError, TargetError
from nnx.layers.base import SavesForBackward
from nnx.layers.checks import (
    Where,
    check_finite,
    check_float,
    check_same_dtype,
    check_switches,
    finite_checks_enabled,
)


class Loss(SavesForBackward):
    """Base class of losses: ``forward(pred, target)`` keeps the gradient, ``backward()`` returns it.

    A loss is not a layer: it takes two arrays and has no parameters. Subclasses
    implement ``forward`` (validating with ``_check`` or their own checks) and
    keep d loss / d pred with ``save_for_backward``.
    """

    def _check(self, pred: Any, target: Any) -> Any:
        """Check prediction and target (kind, backend, dtype, shape, NaN and ±inf) before any work;
        returns the namespace."""
        where = self  # its repr names the loss in messages, built only on failure
        xp = check_float(pred, where)
        if not (type(target) is type(pred) and target.dtype == pred.dtype):  # else: same backend, a float
            _backend.check_backend(target, _backend.backend_of(pred), Where(self, " (the prediction)"))
            of_target = Where(self, " target")
            check_float(target, of_target)
            check_same_dtype(target, pred.dtype, of_target)
        _check_not_empty(pred, where)
        if tuple(pred.shape) != tuple(target.shape):
            raise ShapeError(
                f"{where} expected target of the prediction's shape {tuple(pred.shape)}, got "
                f"{tuple(target.shape)}; nnx never broadcasts a loss (a (4,) target against a "
                f"(4, 1) prediction would silently become a 4x4 matrix)"
            )
        if finite_checks_enabled() and not ops.all_finite(pred, target):
            check_finite(pred, xp, where, "prediction")
            check_finite(target, xp, where, "target")
        return xp

    def forward(self, pred: Any, target: Any) -> Any:
        """The loss as a 0-d array; keeps its gradient for :meth:`backward`."""
        raise NotImplementedError

    def __call__(self, pred: Any, target: Any) -> Any:
        return self.forward(pred, target)

    def backward(self, grad: Any = None) -> Any:
        """The gradient with respect to ``pred``, times ``grad`` (a scalar, default 1)."""
        (g,) = self.saved_tensors()
        return g if grad is None else g * grad

    def drop_saved(self) -> None:
        """Forget the gradient a forward kept (no backward will come)."""
        self._saved = None

    def config(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {}


_REDUCTIONS = ("mean", "sum")


def _check_not_empty(pred: Any, where: str) -> None:
    if math.prod(pred.shape) == 0:
        raise ShapeError(f"{where} expected a non-empty prediction, got shape {tuple(pred.shape)}: an empty batch "
                         f"has no loss; skip it before calling the loss")


class MSE(Loss):
    """Mean squared error (``reduction="mean"``) or sum of squares (``"sum"``)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"MSE reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self._check(pred, target)
        diff = pred - target
        total = xp.sum(diff * diff)
        scale = 2.0
        if self.reduction == "mean":
            n = math.prod(diff.shape)  # not .size: torch tensors have a size() method
            total = total / n
            scale = 2.0 / n
        self.save_for_backward(diff * scale)
        return total

    def config(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        return f"MSE(reduction={self.reduction!r})"


class SumSquaredError(Loss):
    """``sum((pred - target)**2)``, or half of it with ``half=True`` (gradient ``pred - target``)."""

    def __init__(self, half: bool = False) -> None:
        super().__init__()
        (self.half,) = check_switches("SumSquaredError", half=half)

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self._check(pred, target)
        diff = pred - target
        total = xp.sum(diff * diff)
        if self.half:
            self.save_for_backward(diff)
            return total / 2
        self.save_for_backward(2 * diff)
        return total

    def config(self) -> dict[str, Any]:
        return {"half": self.half}

    def __repr__(self) -> str:
        return f"SumSquaredError(half={self.half})"


SSE = SumSquaredError


def _check_reduction(owner: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner} reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class BinaryCrossEntropyWithLogits(Loss):
    """Binary cross-entropy from logits (no sigmoid layer before it), stable for any logit.

    ``reduction="mean"`` averages over all elements, ``"sum"`` adds them up.
    Targets are floats in [0, 1] of the prediction's shape (any shape) and dtype.
    ``forward(pred, target, weight)`` takes optional per-element weights of that
    shape (floats >= 0) that scale each element's loss; the mean still divides by
    the number of elements, as PyTorch's ``weight=`` does.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction("BinaryCrossEntropyWithLogits", reduction)
        self.reduction = reduction

    def forward(self, pred: Any, target: Any, weight: Any = None) -> Any:
        xp = self._check(pred, target)
        w = _weights(self, weight, pred, tuple(pred.shape), xp)
        # one device-to-host read, like the finiteness check; nnx.fit checks all targets once instead
        if finite_checks_enabled() and not bool(xp.all((target >= 0) & (target <= 1))):
            lo, hi = float(xp.min(target)), float(xp.max(target))
            raise TargetError(
                f"{self!r} expected targets in [0, 1] (the probability of the positive class), got values "
                f"from {lo:g} to {hi:g}; outside [0, 1] the loss is no cross-entropy (it can go negative): "
                f"check the labels (0/1 for two classes; SoftmaxCrossEntropy for more)"
            )
        # log(1 + exp(z)) - z t  ==  max(z, 0) - z t + log1p(exp(-|z|))
        per = xp.log1p(xp.exp(-xp.abs(pred)))
        per += xp.maximum(pred, 0.0)
        per -= pred * target
        g = ops.sigmoid(pred)
        g -= target
        if w is not None:
            w = xp.reshape(w, tuple(pred.shape))
            per *= w
            g *= w
        total = xp.sum(per)
        if self.reduction == "mean":
            n = math.prod(pred.shape)  # not .size: torch tensors have a size() method
            total = total / n
            g *= 1.0 / n
        self.save_for_backward(g)
        return total

    def __call__(self, pred: Any, target: Any, weight: Any = None) -> Any:
        return self.forward(pred, target, weight)

    def config(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        return f"BinaryCrossEntropyWithLogits(reduction={self.reduction!r})"


BCEWithLogits = BinaryCrossEntropyWithLogits


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, from logits, fused with its gradient.

    ``pred`` holds logits of shape ``(..., classes)``: ``(batch, classes)``, or
    ``(batch, time, classes)`` for a sequence model (every leading axis is a sample
    position). ``target`` is either an integer array of class indices of the
    leading shape ``(...)`` (each in ``[0, classes)``, or ``ignore_index``) or a
    float array of ``pred``'s shape (one-hot or probabilities, the prediction's
    dtype). ``label_smoothing=s`` trains against ``(1 - s) * target + s / classes``.

    ``ignore_index`` (default ``None``: off) is a class index whose positions count
    for nothing: padding, or the prompt of an answer-only loss. ``forward(pred,
    target, weight)`` takes optional per-position weights of the leading shape
    (floats >= 0 in the prediction's dtype, a 0/1 mask for instance).
    ``reduction="mean"`` divides the (weighted) sum by the number of counted
    positions (the sum of their weights), as PyTorch's ``cross_entropy`` does with
    ``ignore_index``; a batch in which nothing counts has loss 0 and gradient 0.
    ``"sum"`` adds the positions' (weighted) losses.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int | None = None) -> None:
        super().__init__()
        _check_reduction("SoftmaxCrossEntropy", reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"SoftmaxCrossEntropy label_smoothing must be in [0, 1), got {label_smoothing}")
        if ignore_index is not None:
            ignore_index = integer(ignore_index, "ignore_index", "SoftmaxCrossEntropy")
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = ignore_index

    def _targets(self, pred: Any, target: Any, xp: Any, where: Any) -> tuple[Any, Any, bool]:
        """The target as a float ``(rows, classes)`` array, the counted rows as a bool mask (or ``None``
        for all), and whether it came as class indices."""
        try:
            _backend.check_backend(target, _backend.backend_of(pred), Where(self, " (the prediction)"))
        except TypeError:
            raise DTypeError(f"{where} expected the target as an array, got {type(target).__name__}") from None
        lead, c = tuple(pred.shape[:-1]), pred.shape[-1]
        n = math.prod(lead)
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != lead:
                raise ShapeError(
                    f"{where} expected class indices of shape {lead} for logits of shape {tuple(pred.shape)}, "
                    f"got {tuple(target.shape)}"
                )
            target = xp.reshape(target, (n,))
            counted = None if self.ignore_index is None else target != self.ignore_index
            out_of_range = (target < 0) | (target >= c)
            if counted is not None:
                out_of_range &= counted
            # one device-to-host read; nnx.fit checks all labels once instead and turns this off
            if finite_checks_enabled() and bool(xp.any(out_of_range) | ~xp.all(xp.isfinite(pred))):
                check_finite(pred, xp, repr(self), "prediction")
                shown = target if counted is None else xp.where(counted, target, xp.zeros_like(target))
                lo, hi = int(xp.min(shown)), int(xp.max(shown))
                ignored = "" if self.ignore_index is None else f" (or ignore_index {self.ignore_index})"
                raise TargetError(
                    f"{where} expected class indices in [0, {c}) for {c} classes{ignored}, got values from "
                    f"{lo} to {hi}; check the labels or the number of output units"
                )
            classes = xp.arange(c, dtype=target.dtype)
            onehot = xp.astype(target[:, None] == classes, pred.dtype)
            return onehot, counted, True
        if not xp.isdtype(target.dtype, "real floating"):
            raise DTypeError(
                f"{where} expected integer class indices or float one-hot targets, got dtype "
                f"{_backend.dtype_name(target)}"
            )
        check_same_dtype(target, pred.dtype, Where(self, " target"))
        if tuple(target.shape) != tuple(pred.shape):
            raise ShapeError(
                f"{where} expected one-hot targets of the logits' shape {tuple(pred.shape)} (or integer class "
                f"indices of shape {lead}), got a float array of shape {tuple(target.shape)}"
            )
        if finite_checks_enabled() and not ops.all_finite(pred, target):
            check_finite(pred, xp, repr(self), "prediction")
            check_finite(target, xp, repr(self), "target")
        return xp.reshape(target, (n, c)), None, False

    def forward(self, pred: Any, target: Any, weight: Any = None) -> Any:
        where = Where(self)
        xp = check_float(pred, where)
        if pred.ndim < 2:
            raise ShapeError(f"{where} expected logits of shape (batch, classes) or (..., classes), "
                             f"got {tuple(pred.shape)}")
        _check_not_empty(pred, where)
        q, counted, indices = self._targets(pred, target, xp, where)
        shape, c = tuple(pred.shape), pred.shape[-1]
        n = q.shape[0]
        w = _weights(self, weight, pred, shape[:-1], xp)
        if counted is not None:
            mask = xp.astype(counted, pred.dtype)
            w = mask if w is None else w * mask
        logits = xp.reshape(pred, (n, c))
        s = self.label_smoothing
        if s:
            q = q * (1.0 - s)
            q += s / c
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        g = xp.exp(shifted)
        z = xp.sum(g, axis=1, keepdims=True)
        shifted -= xp.log(z)  # now log-softmax
        g /= z  # now softmax
        if indices:  # each row of q sums to 1
            g -= q
        else:
            g *= xp.sum(q, axis=1, keepdims=True)
            g -= q
        if w is None:
            total = -xp.sum(q * shifted)
            if self.reduction == "mean":
                total = total / n
                g *= 1.0 / n
        else:
            total = -xp.sum(w * xp.sum(q * shifted, axis=1))
            g *= w[:, None]
            if self.reduction == "mean":
                counts = xp.sum(w)
                counts = xp.where(counts > 0, counts, xp.ones_like(counts))  # nothing counted: 0, not NaN
                total = total / counts
                g /= counts
        self.save_for_backward(xp.reshape(g, shape))
        return total

    def __call__(self, pred: Any, target: Any, weight: Any = None) -> Any:
        return self.forward(pred, target, weight)

    def config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "label_smoothing": self.label_smoothing, "ignore_index": self.ignore_index}

    def __repr__(self) -> str:
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        extra += f", ignore_index={self.ignore_index}" if self.ignore_index is not None else ""
        return f"SoftmaxCrossEntropy(reduction={self.reduction!r}{extra})"


def _weights(loss: Loss, weight: Any, pred: Any, shape: tuple[int, ...], xp: Any) -> Any:
    """Per-position weights checked (backend, the prediction's dtype, ``shape``, finite and >= 0) and
    flattened, or ``None``."""
    if weight is None:
        return None
    of_weight = Where(loss, " weight")
    _backend.check_backend(weight, _backend.backend_of(pred), of_weight)
    check_float(weight, of_weight)
    check_same_dtype(weight, pred.dtype, of_weight)
    if tuple(weight.shape) != tuple(shape):
        raise ShapeError(f"{loss!r} expected weights of shape {tuple(shape)} (one per position), "
                         f"got {tuple(weight.shape)}")
    if finite_checks_enabled() and not bool(xp.all(xp.isfinite(weight) & (weight >= 0))):
        raise TargetError(f"{loss!r} expected finite weights >= 0, got values from {float(xp.min(weight)):g} "
                          f"to {float(xp.max(weight)):g}")
    return xp.reshape(weight, (math.prod(shape),))


__all__ = [
    "BCEWithLogits",
    "BinaryCrossEntropyWithLogits",
    "Loss",
    "MSE",
    "SSE",
    "SoftmaxCrossEntropy",
    "SumSquaredError",
]
