"""Sliding windows over the spatial axes of ``(batch, channels, *spatial)`` arrays, by slicing.

Convolutions and pooling see their input through the same windows: for each
offset inside the kernel, one strided slice of the (padded) input gives that
offset's value at every output position. Stacking the slices gives
``(batch, channels, kernel positions, *output)`` ("im2col") with the array API's
slicing alone; the backward adds each slice's gradient back in place.

A convolution's columns come in one of two layouts (same interface: ``pad``,
``gather``, ``output``, ``grid_grad``, ``scatter``):

* :class:`Slices`, any stride: the strided slices above, one column per output
  position. A slice's rows are as short as an output row (32 values for a 32x32
  image), and they are copied and added back one short row at a time.
* :class:`Runs`, stride 1: in the flattened padded input, the values a kernel
  offset sees at consecutive output positions of one row, and then of the next
  rows, lie at consecutive addresses if each output row is computed over the
  padded row's full width. So each offset's columns are one contiguous run per
  channel (a copy at memory speed), at the price of ``padded width - output
  width`` extra columns per row whose results are dropped (6% for a 3x3 kernel
  on 32x32 with padding 1). The gradient enters those columns as zeros.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

from nnx import backend as _backend
from nnx.errors import ShapeError

Pads = tuple[tuple[int, int], ...]


class Window:
    """Kernel size, stride, dilation and padding (low, high) per spatial axis, and what follows from them."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], pads: Pads) -> None:
        self.kernel, self.stride, self.dilation, self.pads = tuple(kernel), tuple(stride), tuple(dilation), pads
        self.size = math.prod(self.kernel)

    def span(self, axis: int) -> int:
        """How many input positions one window covers along ``axis``."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def check(self, x: Any, where: str) -> tuple[int, ...]:
        """The output's spatial shape for input ``x``; a ShapeError when the input is smaller than a window."""
        return self.output(tuple(x.shape[2:]), where)

    def output(self, spatial: Sequence[int], where: str) -> tuple[int, ...]:
        """The output's spatial shape for inputs of spatial shape ``spatial``; a ShapeError when they are
        smaller than a window (so a summary never shows a negative size)."""
        spatial = tuple(spatial)
        padded = [n + lo + hi for n, (lo, hi) in zip(spatial, self.pads)]
        if any(p < self.span(a) for a, p in enumerate(padded)):
            shown = "x".join(str(n) for n in spatial)
            kernel = "x".join(str(self.span(a)) for a in range(len(spatial)))
            pads = ", ".join(f"{lo}" if lo == hi else f"{lo}+{hi}" for lo, hi in self.pads)
            raise ShapeError(f"{where}: input {shown} is smaller than kernel {kernel} with padding {pads}; "
                             f"use a smaller kernel, more padding or a larger input")
        return tuple((p - self.span(a)) // self.stride[a] + 1 for a, p in enumerate(padded))

    def slices(self, out: Sequence[int]) -> list[tuple[Any, ...]]:
        """For each kernel offset (row-major), the slice of the padded input it sees at every output position."""
        per_axis = [
            [slice(k * d, k * d + s * (o - 1) + 1, s) for k in range(kk)]
            for kk, s, d, o in zip(self.kernel, self.stride, self.dilation, out)
        ]
        return [(slice(None), slice(None), *combo) for combo in itertools.product(*per_axis)]

    def pad(self, x: Any, value: float) -> Any:
        """``x`` with ``value`` around its spatial axes (``x`` itself when there is no padding)."""
        if not any(lo or hi for lo, hi in self.pads):
            return x
        xp = _backend.namespace_of(x)
        shape = (*x.shape[:2], *(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], self.pads)))
        padded = xp.full(shape, value, dtype=x.dtype, device=_backend.device_of(x))
        padded[self.interior(x.shape)] = x
        return padded

    def interior(self, shape: Sequence[int]) -> tuple[Any, ...]:
        """The slice of the padded array that holds the unpadded input of ``shape``."""
        return (slice(None), slice(None), *(slice(lo, lo + n) for n, (lo, _) in zip(shape[2:], self.pads)))

    def gather(self, padded: Any, out: Sequence[int]) -> Any:
        """``(batch, channels, kernel positions, *out)``: every window of ``padded``."""
        return _backend.namespace_of(padded).stack([padded[s] for s in self.slices(out)], axis=2)

    def scatter(self, cols: Any, input_shape: Sequence[int], out: Sequence[int]) -> Any:
        """The gradient of :meth:`gather` (after :meth:`pad`): each window's values added back
        where they came from, cropped to ``input_shape``."""
        xp = _backend.namespace_of(cols)
        shape = (*input_shape[:2], *(n + lo + hi for n, (lo, hi) in zip(input_shape[2:], self.pads)))
        dx = xp.zeros(shape, dtype=cols.dtype, device=_backend.device_of(cols))
        for k, s in enumerate(self.slices(out)):
            dx[s] += cols[:, :, k, ...]
        return dx[self.interior(input_shape)] if shape != tuple(input_shape) else dx


class Slices:
    """Columns from strided slices (any stride): one column per output position."""

    def __init__(self, window: Window, spatial: Sequence[int], out: Sequence[int]) -> None:
        self.window, self.out = window, tuple(out)
        self.positions = math.prod(self.out)

    def pad(self, x: Any) -> Any:
        return self.window.pad(x, 0.0)

    def gather(self, padded: Any) -> Any:
        """``(batch, channels, kernel positions, positions)``."""
        cols = self.window.gather(padded, self.out)
        return _backend.namespace_of(cols).reshape(cols, (*cols.shape[:3], self.positions))

    def output(self, y: Any) -> Any:
        """``(batch, channels, positions)`` results as ``(batch, channels, *out)``."""
        return _backend.namespace_of(y).reshape(y, (*y.shape[:2], *self.out))

    def grid_grad(self, grad: Any) -> Any:
        """The output's gradient as ``(batch, channels, positions)``."""
        return _backend.namespace_of(grad).reshape(grad, (*grad.shape[:2], self.positions))

    def scatter(self, cols: Any, input_shape: Sequence[int]) -> Any:
        """The input's gradient from the columns' ``(batch, channels, kernel positions, positions)``."""
        xp = _backend.namespace_of(cols)
        return self.window.scatter(xp.reshape(cols, (*cols.shape[:3], *self.out)), input_shape, self.out)


class Runs:
    """Columns from contiguous runs of the flattened padded input (stride 1; see the module notes).

    The padded input gets one spare row at the end of its first spatial axis, so
    the last offset's run stays inside it; results are computed on the grid
    ``(out[0], *padded[1:])`` and cropped to ``out``.
    """

    def __init__(self, window: Window, spatial: Sequence[int], out: Sequence[int]) -> None:
        padded = [n + lo + hi for n, (lo, hi) in zip(spatial, window.pads)]
        self.shape = (padded[0] + 1, *padded[1:])
        steps = [math.prod(self.shape[a + 1:]) for a in range(len(self.shape))]
        self.grid = (out[0], *padded[1:])
        self.positions = math.prod(self.grid)
        self.offsets = [sum(k * d * s for k, d, s in zip(combo, window.dilation, steps))
                        for combo in itertools.product(*(range(k) for k in window.kernel))]
        self.interior = window.interior((0, 0, *spatial))
        self.crop = (slice(None), slice(None), *(slice(0, o) for o in out))

    def pad(self, x: Any) -> Any:
        xp = _backend.namespace_of(x)
        padded = xp.zeros((*x.shape[:2], *self.shape), dtype=x.dtype, device=_backend.device_of(x))
        padded[self.interior] = x
        return padded

    def gather(self, padded: Any) -> Any:
        xp = _backend.namespace_of(padded)
        flat = xp.reshape(padded, (*padded.shape[:2], math.prod(padded.shape[2:])))  # no -1: a 0-row batch
        n = self.positions
        return xp.stack([flat[:, :, o:o + n] for o in self.offsets], axis=2)

    def output(self, y: Any) -> Any:
        return _backend.namespace_of(y).reshape(y, (*y.shape[:2], *self.grid))[self.crop]

    def grid_grad(self, grad: Any) -> Any:
        xp = _backend.namespace_of(grad)
        full = xp.zeros((*grad.shape[:2], *self.grid), dtype=grad.dtype, device=_backend.device_of(grad))
        full[self.crop] = grad
        return xp.reshape(full, (*grad.shape[:2], self.positions))

    def scatter(self, cols: Any, input_shape: Sequence[int]) -> Any:
        xp = _backend.namespace_of(cols)
        n = self.positions
        flat = xp.zeros((*input_shape[:2], math.prod(self.shape)), dtype=cols.dtype,
                        device=_backend.device_of(cols))
        for k, o in enumerate(self.offsets):
            flat[:, :, o:o + n] += cols[:, :, k, :]
        return xp.reshape(flat, (*input_shape[:2], *self.shape))[self.interior]
