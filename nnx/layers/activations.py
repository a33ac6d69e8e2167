"""Elementwise activations. Each keeps what its backward needs in forward."""

from __future__ import annotations

from typing import Any

from nnx.errors import ShapeError
from nnx.layers.base import Layer, check_float

# exp(-x) overflows for x below about -709 (float64) or -88.7 (float32). Clamping
# x at these cuts keeps the textbook 1/(1+exp(-x)) bit-exact above them and, below
# them, returns 1/(1+exp(cut)), which is within the smallest normal number of the
# true value (whose magnitude is already below it).
_SIGMOID_CUT = {4: 88.0, 8: 709.0}


def _check_grad(layer: Layer, grad: Any, like: Any) -> Any:
    xp = check_float(grad, f"{layer!r}.backward")
    if tuple(grad.shape) != tuple(like.shape):
        raise ShapeError(
            f"{layer!r}.backward expected a gradient of shape {tuple(like.shape)}, "
            f"got {tuple(grad.shape)}"
        )
    return xp


def sigmoid(x: Any) -> Any:
    """The logistic function ``1/(1+exp(-x))`` without overflow for any ``x``."""
    xp = check_float(x, "sigmoid")
    cut = _SIGMOID_CUT[xp.finfo(x.dtype).bits // 8]
    return 1 / (1 + xp.exp(-xp.maximum(x, -cut)))


class Sigmoid(Layer):
    """``1/(1+exp(-x))``, stable for large ``|x|``; backward uses the saved output."""

    def forward(self, x: Any) -> Any:
        s = sigmoid(x)
        self._save(s)
        return s

    def backward(self, grad: Any) -> Any:
        (s,) = self._take()
        _check_grad(self, grad, s)
        return grad * (s * (1 - s))

    def __repr__(self) -> str:
        return "Sigmoid()"


class Tanh(Layer):
    """Hyperbolic tangent; backward uses the saved output."""

    def forward(self, x: Any) -> Any:
        xp = check_float(x, repr(self))
        y = xp.tanh(x)
        self._save(y)
        return y

    def backward(self, grad: Any) -> Any:
        (y,) = self._take()
        _check_grad(self, grad, y)
        return grad * (1 - y * y)

    def __repr__(self) -> str:
        return "Tanh()"


class ReLU(Layer):
    """``max(x, 0)``; the gradient is 1 where ``x > 0`` and 0 elsewhere."""

    def forward(self, x: Any) -> Any:
        xp = check_float(x, repr(self))
        mask = x > 0
        self._save(mask)
        return xp.where(mask, x, xp.zeros_like(x))

    def backward(self, grad: Any) -> Any:
        (mask,) = self._take()
        xp = _check_grad(self, grad, mask)
        return xp.where(mask, grad, xp.zeros_like(grad))

    def __repr__(self) -> str:
        return "ReLU()"
