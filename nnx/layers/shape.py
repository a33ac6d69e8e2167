"""Layers that only change an array's shape."""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.errors import ShapeError
from nnx.layers.base import Layer


class Flatten(Layer):
    """``(batch, d1, d2, ...)`` → ``(batch, d1*d2*...)``; backward restores the shape."""

    def forward(self, x: Any) -> Any:
        xp = _backend.namespace_of(x)
        if x.ndim < 1:
            raise ShapeError(f"{self!r} expected an array with a batch axis, got shape {tuple(x.shape)}")
        self.save_for_backward(tuple(x.shape))
        return xp.reshape(x, self.output_shape(tuple(x.shape)))

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        return _backend.namespace_of(grad).reshape(grad, shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n = 1
        for d in input_shape[1:]:
            n *= d
        return (input_shape[0], n)

    def __repr__(self) -> str:
        return "Flatten()"
