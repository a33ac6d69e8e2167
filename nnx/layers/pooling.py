"""Pooling of NCHW images: the maximum or the mean of each window, and the mean over all positions."""

from __future__ import annotations

import math
from typing import Any

from nnx import backend as _backend
from nnx.arguments import integers
from nnx.errors import ShapeError
from nnx.layers.base import Layer, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_float
from nnx.layers.registry import register_layer
from nnx.layers.windows import Window, Windowed


class _Pool2d(Windowed, Layer):
    """What the window pools share: kernel, stride (default: the kernel) and padding, checks."""

    config_size = holds_no_arrays
    example_input = takes_any_input
    arguments = ("kernel_size", "stride", "padding")

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        owner = type(self).__name__
        kernel = integers(kernel_size, 2, "kernel_size", owner, 1)
        strides = kernel if stride is None else integers(stride, 2, "stride", owner, 1)
        pads = integers(padding, 2, "padding", owner, minimum=0)
        if any(2 * p > k for p, k in zip(pads, kernel)):
            raise ValueError(f"{owner} padding {pads} must be at most half the kernel {kernel}")
        self.window = Window(kernel, strides, (1, 1), tuple((p, p) for p in pads))

    def _windows(self, x: Any, fill: float) -> tuple[Any, tuple[int, ...]]:
        check_float(x, self)
        if x.ndim != 4:
            raise ShapeError(f"{self!r} expected input of shape (batch, channels, height, width), "
                             f"got {tuple(x.shape)}")
        out = self.window.check(x, repr(self))
        return self.window.gather(self.window.pad(x, fill), out), out

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 4:
            raise ShapeError(f"{self!r} expected input of shape (batch, channels, height, width), "
                             f"got {tuple(input_shape)}")
        return (*input_shape[:2], *self.window.output(input_shape[2:], repr(self)))

    @property
    def padding(self) -> tuple[int, ...]:
        return tuple(low for low, _ in self.window.pads)

    def __repr__(self) -> str:
        """Stride and padding shown only where they differ from the kernel and zero (the derived form
        would show both always: the stride's default is the kernel)."""
        extra = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        extra += f", padding={self.padding}" if any(self.padding) else ""
        return f"{type(self).__name__}({self.kernel_size}{extra})"


@register_layer
class MaxPool2d(_Pool2d):
    """The maximum of each ``kernel_size`` window (padding counts as -inf); the gradient goes to
    the first position, in row-major order within the window, holding the maximum."""

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        if x.ndim != 4:
            raise ShapeError(f"{self!r} expected input of shape (batch, channels, height, width), "
                             f"got {tuple(x.shape)}")
        out = self.window.check(x, repr(self))
        xp = _backend.namespace_of(x)
        padded = self.window.pad(x, -math.inf)
        slices = self.window.slices(out)
        y = padded[slices[0]]
        for s in slices[1:]:
            y = xp.maximum(y, padded[s])
        self.save_for_backward(padded, y, tuple(x.shape), out)
        return y

    def backward(self, grad: Any) -> Any:
        padded, y, shape, out = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        dx = xp.zeros(tuple(padded.shape), dtype=grad.dtype, device=_backend.device_of(grad))
        open_ = xp.ones(tuple(y.shape), dtype=xp.bool, device=_backend.device_of(grad))
        for s in self.window.slices(out):
            first = open_ & (padded[s] == y)
            dx[s] += xp.where(first, grad, 0.0)
            open_ = open_ & ~first
        return dx[self.window.interior(shape)] if tuple(dx.shape) != shape else dx


@register_layer
class AvgPool2d(_Pool2d):
    """The mean of each ``kernel_size`` window; padding counts as zeros in the mean (as PyTorch's default)."""

    def forward(self, x: Any) -> Any:
        cols, out = self._windows(x, 0.0)
        self.save_for_backward(tuple(x.shape), out)
        return _backend.namespace_of(x).mean(cols, axis=2)

    def backward(self, grad: Any) -> Any:
        shape, out = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        share = grad[:, :, None, ...] * (1.0 / self.window.size)
        cols = xp.broadcast_to(share, (*share.shape[:2], self.window.size, *share.shape[3:]))
        return self.window.scatter(cols, shape, out)


@register_layer
class GlobalAvgPool2d(Layer):
    """The mean over all positions of each channel: ``(batch, channels, height, width)`` → ``(batch, channels)``."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def forward(self, x: Any) -> Any:
        xp = check_float(x, self)
        if x.ndim != 4 or x.shape[2] * x.shape[3] == 0:
            raise ShapeError(f"{self!r} expected input of shape (batch, channels, height, width) with at least "
                             f"one position, got {tuple(x.shape)}")
        self.save_for_backward(tuple(x.shape))
        return xp.mean(x, axis=(2, 3))

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        share = xp.broadcast_to(grad[:, :, None, None] * (1.0 / (shape[2] * shape[3])), shape)
        return xp.asarray(share, copy=True)  # a writable array, as every other backward returns

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape[:2])


__all__ = ["AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]
