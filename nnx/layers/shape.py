"""Layers that change an array's shape: Flatten, Reshape, and Mean over one axis."""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.arguments import integer
from nnx.errors import ArgumentError, ShapeError
from nnx.layers.base import Layer, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_float
from nnx.layers.registry import register_layer
from nnx.layers.sizes import reshape_sizes


@register_layer
class Flatten(Layer):
    """``(batch, d1, d2, ...)`` → ``(batch, d1*d2*...)``; backward restores the shape."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def forward(self, x: Any) -> Any:
        xp = _backend.namespace_of(x)
        if x.ndim < 1:
            raise ShapeError(f"{self!r} expected an array with a batch axis, got shape {tuple(x.shape)}")
        self.save_for_backward(tuple(x.shape))
        return xp.reshape(x, reshape_sizes(self.output_shape(tuple(x.shape))))

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        return _backend.namespace_of(grad).reshape(grad, shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n = 1
        for d in input_shape[1:]:
            n *= d
        return (input_shape[0], n)



@register_layer
class Reshape(Layer):
    """``(batch, n)`` → ``(batch, *shape)`` (any input whose per-sample size is ``prod(shape)``);
    backward restores the input's shape. Flat rows become images: ``Reshape((1, 28, 28))``."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    arguments = ("shape",)

    def __init__(self, shape: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ArgumentError(f"Reshape shape must be a non-empty tuple of integers >= 1, got {shape!r}")
        self.shape = tuple(integer(d, "shape", "Reshape", minimum=1) for d in shape)

    def forward(self, x: Any) -> Any:
        xp = _backend.namespace_of(x)
        size = 1
        for d in self.shape:
            size *= d
        per_sample = 1
        for d in x.shape[1:]:
            per_sample *= d
        if x.ndim < 1 or per_sample != size:
            raise ShapeError(f"{self!r} expected (batch, ...) with {size} values per sample, got {tuple(x.shape)}")
        self.save_for_backward(tuple(x.shape))
        return xp.reshape(x, reshape_sizes((x.shape[0], *self.shape)))

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        return _backend.namespace_of(grad).reshape(grad, shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], *self.shape)



@register_layer
class Mean(Layer):
    """The mean over one axis: by default the positions of a ``(batch, length, dim)`` sequence,
    giving ``(batch, dim)`` (after an :class:`~nnx.Embedding`, a bag-of-words text encoder)."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    arguments = ("axis",)

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = integer(axis, "axis", "Mean")
        if self.axis == 0:
            raise ArgumentError("Mean axis must be an integer other than 0 (the batch axis), got 0")

    def forward(self, x: Any) -> Any:
        xp = check_float(x, self)
        if not -x.ndim < self.axis < x.ndim or self.axis % x.ndim == 0 or x.shape[self.axis] == 0:
            raise ShapeError(f"{self!r} needs an input with a batch axis and at least one value along axis "
                             f"{self.axis}, got shape {tuple(x.shape)}")
        self.save_for_backward(tuple(x.shape))
        return xp.mean(x, axis=self.axis)

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        axis = self.axis % len(shape)
        share = xp.expand_dims(grad * (1.0 / shape[axis]), axis=axis)
        return xp.asarray(xp.broadcast_to(share, shape), copy=True)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        axis = self.axis % len(input_shape)
        return tuple(n for i, n in enumerate(input_shape) if i != axis)


__all__ = ["Flatten", "Mean", "Reshape"]
