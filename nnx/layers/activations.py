"""Elementwise activations. Each keeps what its backward needs; the math is in :mod:`nnx.ops`."""

from __future__ import annotations

import math

from typing import Any

from nnx import ops
from nnx.arguments import integer
from nnx.errors import ShapeError
from nnx.layers.base import Layer, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_float
from nnx.layers.registry import register_layer


@register_layer
class Sigmoid(Layer):
    """``1/(1+exp(-x))``, stable for large ``|x|``; backward uses the saved output."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        s = ops.sigmoid(x)
        self.save_for_backward(s)
        return s

    def backward(self, grad: Any) -> Any:
        (s,) = self.saved_tensors()
        return ops.sigmoid_backward(s, grad)

    def __repr__(self) -> str:
        return "Sigmoid()"


@register_layer
class Tanh(Layer):
    """Hyperbolic tangent; backward uses the saved output."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        y = ops.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad: Any) -> Any:
        (y,) = self.saved_tensors()
        return ops.tanh_backward(y, grad)

    def __repr__(self) -> str:
        return "Tanh()"


@register_layer
class ReLU(Layer):
    """``max(x, 0)``; the gradient is 1 where ``x > 0`` and 0 elsewhere.

    It keeps its output, not a mask: ``y > 0`` exactly where ``x > 0``, and the
    next layer keeps ``y`` anyway, so backward costs no extra memory.
    """

    config_size = holds_no_arrays
    example_input = takes_any_input

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        y = ops.relu(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad: Any) -> Any:
        (y,) = self.saved_tensors()
        return ops.relu_backward(y, grad)

    def __repr__(self) -> str:
        return "ReLU()"


@register_layer
class LeakyReLU(Layer):
    """``x`` where ``x > 0``, else ``negative_slope * x``."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not math.isfinite(float(negative_slope)):
            raise ValueError(f"LeakyReLU negative_slope must be a finite number, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        self.save_for_backward(x)
        return ops.leaky_relu(x, self.negative_slope)

    def backward(self, grad: Any) -> Any:
        (x,) = self.saved_tensors()
        return ops.leaky_relu_backward(x, grad, self.negative_slope)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


@register_layer
class GELU(Layer):
    """Gaussian error linear unit, tanh form: ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    The array API has no ``erf``, so nnx uses the tanh approximation of
    Hendrycks & Gimpel (2016) on every backend (``approximate="tanh"``); it is
    within 1e-3 of the exact GELU.
    """

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate != "tanh":
            raise ValueError(
                f"GELU supports approximate='tanh' only (the array API has no erf), got {approximate!r}"
            )
        self.approximate = approximate

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        self.save_for_backward(x)
        return ops.gelu(x)

    def backward(self, grad: Any) -> Any:
        (x,) = self.saved_tensors()
        return ops.gelu_backward(x, grad)

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def __repr__(self) -> str:
        return "GELU()"


@register_layer
class Softmax(Layer):
    """``exp(x) / sum(exp(x))`` along ``axis`` (max-shifted, so no overflow).

    For training a classifier prefer raw logits with
    :class:`nnx.losses.SoftmaxCrossEntropy`, which is fused and more accurate.
    """

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = integer(axis, "axis", "Softmax")

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        if not -x.ndim <= self.axis < x.ndim or x.shape[self.axis] == 0:
            raise ShapeError(f"{self!r} needs at least one value along axis {self.axis}, got shape {tuple(x.shape)}")
        y = ops.softmax(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, grad: Any) -> Any:
        (y,) = self.saved_tensors()
        return ops.softmax_backward(y, grad, self.axis)

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}
