"""Sliding windows over the spatial axes of ``(batch, channels, *spatial)`` arrays, by slicing.

Convolutions and pooling see their input through the same windows: for each
offset inside the kernel, one strided slice of the (padded) input gives that
offset's value at every output position. Stacking the slices gives
``(batch, channels, kernel positions, *output)`` ("im2col") with the array API's
slicing alone; the backward adds each slice's gradient back in place.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

from nnx import backend as _backend
from nnx.errors import ShapeError

Pads = tuple[tuple[int, int], ...]


def as_tuple(value: Any, n: int, name: str, owner: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints, each at least ``minimum``, as a tuple of ``n`` ints."""
    values = [value] * n if isinstance(value, int) and not isinstance(value, bool) else list(value)
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        raise ValueError(f"{owner} {name} must be an int >= {minimum} or {n} of them, got {value!r}")
    return tuple(values)


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
        spatial = tuple(x.shape[2:])
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
