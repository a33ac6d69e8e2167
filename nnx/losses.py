"""Losses: ``forward(pred, target)`` returns a 0-d array; ``backward()`` returns d loss / d pred.

Conventions (``N`` is the number of elements of ``pred``):

* :class:`MSE` — ``mean((pred - target)**2)``; gradient ``2 (pred - target) / N``.
  With ``reduction="sum"`` it is the sum of squares.
* :class:`SumSquaredError` — ``sum((pred - target)**2)``; gradient
  ``2 (pred - target)``. With ``half=True`` it is ``1/2 sum((pred - target)**2)``
  and the gradient is exactly ``pred - target``: the loss the single-neuron and
  iamtrask tutorials train on implicitly when they use ``error = y - output``
  as the output delta.
"""

from __future__ import annotations

import math
from typing import Any

from nnx import backend as _backend
from nnx.errors import ShapeError
from nnx.layers.base import Layer, check_float, check_same_dtype


class Loss(Layer):
    """Base class of losses: checks, saved state and the ``backward`` contract."""

    def _check(self, pred: Any, target: Any) -> Any:
        where = repr(self)
        xp = check_float(pred, where)
        _backend.check_backend(target, _backend.backend_of(pred), f"{where} (the prediction)")
        check_float(target, f"{where} target")
        check_same_dtype(target, pred.dtype, f"{where} target")
        if tuple(pred.shape) != tuple(target.shape):
            raise ShapeError(
                f"{where} expected target of the prediction's shape {tuple(pred.shape)}, got "
                f"{tuple(target.shape)}; nnx never broadcasts a loss (a (4,) target against a "
                f"(4, 1) prediction would silently become a 4x4 matrix)"
            )
        return xp

    def forward(self, pred: Any, target: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError

    def __call__(self, pred: Any, target: Any) -> Any:  # type: ignore[override]
        return self.forward(pred, target)

    def backward(self, grad: Any = None) -> Any:
        """The gradient with respect to ``pred``, times ``grad`` (a scalar, default 1)."""
        (g,) = self._take()
        return g if grad is None else g * grad


_REDUCTIONS = ("mean", "sum")


class MSE(Loss):
    """Mean squared error (``reduction="mean"``) or sum of squares (``"sum"``)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"MSE reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, pred: Any, target: Any) -> Any:  # type: ignore[override]
        xp = self._check(pred, target)
        diff = pred - target
        total = xp.sum(diff * diff)
        scale = 2.0
        if self.reduction == "mean":
            n = math.prod(diff.shape)  # not .size: torch tensors have a size() method
            total = total / n
            scale = 2.0 / n
        self._save(diff * scale)
        return total

    def __repr__(self) -> str:
        return f"MSE(reduction={self.reduction!r})"


class SumSquaredError(Loss):
    """``sum((pred - target)**2)``, or half of it with ``half=True`` (gradient ``pred - target``)."""

    def __init__(self, half: bool = False) -> None:
        super().__init__()
        self.half = bool(half)

    def forward(self, pred: Any, target: Any) -> Any:  # type: ignore[override]
        xp = self._check(pred, target)
        diff = pred - target
        total = xp.sum(diff * diff)
        if self.half:
            self._save(diff)
            return total / 2
        self._save(2 * diff)
        return total

    def __repr__(self) -> str:
        return f"SumSquaredError(half={self.half})"


SSE = SumSquaredError

__all__ = ["Loss", "MSE", "SSE", "SumSquaredError"]
