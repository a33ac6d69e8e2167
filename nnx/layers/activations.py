"""Elementwise activations. Each keeps what its backward needs in forward."""

from __future__ import annotations

import math
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


class LeakyReLU(Layer):
    """``x`` where ``x > 0``, else ``negative_slope * x``."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Any) -> Any:
        xp = check_float(x, repr(self))
        mask = x > 0
        self._save(mask)
        return xp.where(mask, x, x * self.negative_slope)

    def backward(self, grad: Any) -> Any:
        (mask,) = self._take()
        xp = _check_grad(self, grad, mask)
        return xp.where(mask, grad, grad * self.negative_slope)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


class GELU(Layer):
    """Gaussian error linear unit, tanh form: ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    The array API has no ``erf``, so nnx uses the tanh approximation of
    Hendrycks & Gimpel (2016) on every backend (``approximate="tanh"``); it is
    within 1e-3 of the exact GELU.
    """

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate != "tanh":
            raise ValueError(
                f"GELU supports approximate='tanh' only (the array API has no erf), got {approximate!r}"
            )
        self.approximate = approximate

    def forward(self, x: Any) -> Any:
        xp = check_float(x, repr(self))
        # beyond |x| = 10 the tanh is exactly +-1 in float64 and float32 and its derivative
        # exactly 0; clamping there keeps x^3 from overflowing for huge inputs.
        xc = xp.clip(x, -10.0, 10.0)
        x2 = xc * xc
        t = xp.tanh(_GELU_C * xc * (1 + _GELU_A * x2))
        self._save(x, x2, t)
        return 0.5 * x * (1 + t)

    def backward(self, grad: Any) -> Any:
        x, x2, t = self._take()
        _check_grad(self, grad, x)
        # d/dx = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3a x^2)
        inner = (1 - t * t) * (_GELU_C * (1 + 3 * _GELU_A * x2))
        inner *= x
        inner += 1 + t
        inner *= 0.5
        return grad * inner

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def __repr__(self) -> str:
        return "GELU()"


class Softmax(Layer):
    """``exp(x) / sum(exp(x))`` along ``axis`` (max-shifted, so no overflow).

    For training a classifier prefer raw logits with
    :class:`nnx.losses.SoftmaxCrossEntropy`, which is fused and more accurate.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = int(axis)

    def forward(self, x: Any) -> Any:
        xp = check_float(x, repr(self))
        e = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))
        e /= xp.sum(e, axis=self.axis, keepdims=True)
        self._save(e)
        return e

    def backward(self, grad: Any) -> Any:
        (y,) = self._take()
        xp = _check_grad(self, grad, y)
        g = grad - xp.sum(grad * y, axis=self.axis, keepdims=True)
        g *= y
        return g

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def __repr__(self) -> str:
        return f"Softmax(axis={self.axis})"
