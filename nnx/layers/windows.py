"""Sliding windows over the spatial axes of ``(batch, channels, *spatial)`` arrays, by slicing.

Convolutions and pooling see their input through the same windows: for each
offset inside the kernel, one strided slice of the (padded) input gives that
offset's value at every output position. Stacking the slices gives
``(batch, channels, kernel positions, *output)`` ("im2col") with the array API's
slicing alone; the backward adds each slice's gradient back in place.

A convolution computes through one of two layouts (same interface: ``pad``,
``forward``, ``backward``), chosen by its stride:

* :class:`Slices`, any stride: the strided slices above, one column per output
  position, gathered and multiplied by the kernel matrix in chunks of samples
  (at most :data:`WINDOW_ELEMENTS` values of windows at once); the input's
  gradient multiplies back and adds each window's gradient where it came from.
* :class:`Runs`, stride 1: in the flattened padded input, the values a kernel
  offset sees at consecutive output positions of one row, and then of the next
  rows, lie at consecutive addresses if each output row is computed over the
  padded row's full width. So each offset's view of every channel is one
  contiguous run, at the price of ``padded width - output width`` extra columns
  per row whose results are dropped (6% for a 3x3 kernel on 32x32 with padding
  1). With at least :data:`SHIFTED_MIN_CHANNELS` channels per group the output is
  a sum of one matrix product per kernel offset with that shifted view
  (:func:`nnx.ops.shifted_matmul`): nothing is gathered, the matrix product
  reads the runs in place. With fewer channels those products are too small to
  pay for their calls, and the runs are gathered into windows as for :class:`Slices`. The weight's
  gradient is the same products with the output's gradient; the input's
  gradient is the correlation of the zero-padded output gradient with the
  kernel flipped and transposed, computed the same way as the forward, so
  nothing is ever added back window by window.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Sequence

from nnx import backend as _backend
from nnx import ops
from nnx.errors import ShapeError
from nnx.layers.sizes import full_like_axes, reshape_sizes

Pads = tuple[tuple[int, int], ...]

# Windows are gathered in chunks of samples holding at most this many values (16 MiB in float32),
# so a large batch of large images does not need its whole im2col at once.
WINDOW_ELEMENTS = 2**22
# From this many channels per group on, a stride-1 correlation is one matrix product per kernel
# offset over shifted views (no gathered windows). With fewer, each of those products (one per
# sample and offset) is so small that the calls cost more than gathering the windows into one
# product per sample (on NumPy, 1 to 3 channels: 1.3x to 10x; from 4 on the shifted products win).
SHIFTED_MIN_CHANNELS = 4


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
        shape = (*x.shape[:2], *(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], self.pads)))
        padded = full_like_axes(x, shape, value)
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


def chunks(n: int | None, per_sample: int) -> list[slice]:
    """Slices of a batch of ``n`` whose windows, ``per_sample`` values each, hold at most
    :data:`WINDOW_ELEMENTS` values; a batch of unknown size (``None``: a traced graph's) is one chunk."""
    if n is None:
        return [slice(None)]
    step = max(1, WINDOW_ELEMENTS // max(per_sample, 1))
    return [slice(start, min(start + step, n)) for start in range(0, max(n, 1), step)]  # 0 rows: one empty chunk


def _gathered_products(w: Any, gather: Callable[[slice], Any], n: int, per_sample: int) -> Any:
    """``w @ gather(chunk)`` over chunks of the batch, concatenated along it."""
    parts = [w @ gather(chunk) for chunk in chunks(n, per_sample)]
    return parts[0] if len(parts) == 1 else _backend.namespace_of(parts[0]).concat(parts, axis=0)


def _gathered_weight_grad(g: Any, gather: Callable[[slice], Any], n: int, per_sample: int) -> Any:
    """The sum over the batch of ``g @ gather(chunk)^T``, chunk by chunk."""
    xp = _backend.namespace_of(g)
    total = None
    for chunk in chunks(n, per_sample):
        part = xp.sum(g[chunk, ...] @ xp.matrix_transpose(gather(chunk)), axis=0)
        total = part if total is None else total + part
    return total


def _grouped(weight: Any, groups: int) -> Any:
    """A kernel ``(out_channels, in_channels / groups, *kernel)`` as ``(groups, out / groups, in / groups,
    kernel positions)``."""
    o, c = weight.shape[:2]
    return _backend.namespace_of(weight).reshape(weight, (groups, o // groups, c, -1))


def _runs(x: Any, offsets: Sequence[int], n: int) -> Callable[[slice], Any]:
    """A chunk's runs of ``x`` ``(batch, groups, C, length)`` gathered as ``(chunk, groups, C * offsets, n)``."""
    xp = _backend.namespace_of(x)

    def gather(chunk: slice) -> Any:
        cols = xp.stack([x[chunk, :, :, o:o + n] for o in offsets], axis=3)
        return xp.reshape(cols, reshape_sizes((cols.shape[0], x.shape[1], x.shape[2] * len(offsets), n)))

    return gather


def correlate(kernel: Any, x: Any, offsets: Sequence[int], n: int) -> Any:
    """``y[b, g, m, p] = sum over c, k of kernel[g, m, c, k] * x[b, g, c, p + offsets[k]]`` for ``p < n``.

    ``kernel`` is ``(groups, M, C, kernel positions)`` and ``x`` ``(batch, groups, C, length)``.
    One matrix product per offset over shifted views of ``x`` when ``C`` is at least
    :data:`SHIFTED_MIN_CHANNELS`, else the windows gathered and one product per chunk of the batch.
    """
    xp = _backend.namespace_of(x)
    g, m, c, k = kernel.shape
    if c >= SHIFTED_MIN_CHANNELS:
        return ops.shifted_matmul(xp.permute_dims(kernel, (3, 0, 1, 2)), x, tuple(offsets), n)
    return _gathered_products(xp.reshape(kernel, (g, m, c * k)), _runs(x, offsets, n), x.shape[0], g * c * k * n)


def correlate_weight_grad(grad: Any, x: Any, offsets: Sequence[int], n: int) -> Any:
    """The gradient of :func:`correlate`'s kernel, ``(groups, M, C, kernel positions)``, from the
    gradient ``(batch, groups, M, n)`` of its result."""
    xp = _backend.namespace_of(x)
    g, c = x.shape[1:3]
    if c >= SHIFTED_MIN_CHANNELS:
        parts = [xp.sum(grad @ xp.matrix_transpose(x[..., o:o + n]), axis=0) for o in offsets]
        return xp.stack(parts, axis=-1)
    dw = _gathered_weight_grad(grad, _runs(x, offsets, n), x.shape[0], g * c * len(offsets) * n)
    return xp.reshape(dw, (g, grad.shape[2], c, len(offsets)))


class Windowed:
    """A layer with a ``window``: its ``kernel_size`` and ``stride`` arguments read from it (tuples)."""

    window: Window

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.window.kernel

    @property
    def stride(self) -> tuple[int, ...]:
        return self.window.stride


class Slices:
    """Columns from strided slices (any stride): one column per output position."""

    def __init__(self, window: Window, spatial: Sequence[int], out: Sequence[int]) -> None:
        self.window, self.out = window, tuple(out)
        self.positions = math.prod(self.out)

    def pad(self, x: Any) -> Any:
        return self.window.pad(x, 0.0)

    def _gather(self, padded: Any, groups: int) -> Callable[[slice], Any]:
        """A chunk's windows as ``(chunk, groups, in_channels / groups * kernel positions, positions)``."""
        xp = _backend.namespace_of(padded)
        rows = padded.shape[1] // groups * self.window.size

        def gather(chunk: slice) -> Any:
            cols = self.window.gather(padded[chunk, ...], self.out)
            return xp.reshape(cols, reshape_sizes((cols.shape[0], groups, rows, self.positions)))

        return gather

    def forward(self, padded: Any, weight: Any, groups: int) -> Any:
        """The convolution ``(batch, out_channels, *out)`` of ``padded`` with ``weight`` (no bias)."""
        xp = _backend.namespace_of(padded)
        n, c = padded.shape[:2]
        w = xp.reshape(weight, (groups, weight.shape[0] // groups, -1))
        y = _gathered_products(w, self._gather(padded, groups), n, c * self.window.size * self.positions)
        return xp.reshape(y, reshape_sizes((n, weight.shape[0], *self.out)))

    def backward(self, grad: Any, padded: Any, weight: Any, groups: int, input_shape: Sequence[int] | None
                 ) -> tuple[Any, Any]:
        """The weight's gradient and the gradient of the input of ``input_shape`` (``None``: not wanted)."""
        xp = _backend.namespace_of(grad)
        n, c = padded.shape[:2]
        per_sample = c * self.window.size * self.positions
        gr = xp.reshape(grad, (n, groups, weight.shape[0] // groups, self.positions))
        dw = _gathered_weight_grad(gr, self._gather(padded, groups), n, per_sample)
        if input_shape is None:
            return xp.reshape(dw, tuple(weight.shape)), None
        wt = xp.matrix_transpose(xp.reshape(weight, (groups, weight.shape[0] // groups, -1)))
        dx = []
        for chunk in chunks(n, per_sample):
            dcols = xp.reshape(wt @ gr[chunk, ...], (-1, c, self.window.size, *self.out))
            dx.append(self.window.scatter(dcols, (dcols.shape[0], *input_shape[1:]), self.out))
        return xp.reshape(dw, tuple(weight.shape)), dx[0] if len(dx) == 1 else xp.concat(dx, axis=0)


class Runs:
    """Stride-1 correlation over contiguous runs of the flattened padded input (see the module notes).

    The padded input gets one spare row at the end of its first spatial axis, so
    the last offset's run stays inside it; results are computed on the grid
    ``(out[0], *padded[1:])`` and cropped to ``out``. The input's gradient is computed
    for the input's rows over the padded row width and cropped to the input.
    """

    def __init__(self, window: Window, spatial: Sequence[int], out: Sequence[int]) -> None:
        padded = [n + lo + hi for n, (lo, hi) in zip(spatial, window.pads)]
        self.shape = (padded[0] + 1, *padded[1:])
        steps = [math.prod(self.shape[a + 1:]) for a in range(len(self.shape))]
        self.grid = (out[0], *padded[1:])
        self.positions = math.prod(self.grid)
        self.offsets = tuple(sum(k * d * s for k, d, s in zip(combo, window.dilation, steps))
                             for combo in itertools.product(*(range(k) for k in window.kernel)))
        self.interior = window.interior((0, 0, *spatial))
        self.crop = (slice(None), slice(None), *(slice(0, o) for o in out))
        # The output's gradient, zero-padded in front by whole rows covering the largest offset:
        # the input's row r (of the padded input) at column j gets, through offset k, the gradient of
        # position r * row + j - offsets[k], which lies at that address plus the front padding.
        row = steps[0]
        front = -(-max(self.offsets) // row)
        low = window.pads[0][0]
        self.grad_grid = (front + max(out[0], low + spatial[0]), *padded[1:])
        self.grad_at = (slice(None), slice(None), slice(front, front + out[0]),
                        *(slice(0, o) for o in out[1:]))
        self.grad_start = front * row
        self.back_offsets = tuple((front + low) * row - o for o in self.offsets)
        self.back_positions = spatial[0] * row
        self.back_shape = (spatial[0], *padded[1:])
        self.back_crop = (slice(None), slice(None), slice(None),
                          *(slice(lo, lo + n) for n, (lo, _) in zip(spatial[1:], window.pads[1:])))

    def pad(self, x: Any) -> Any:
        padded = full_like_axes(x, (*x.shape[:2], *self.shape), 0.0)
        padded[self.interior] = x
        return padded

    def forward(self, padded: Any, weight: Any, groups: int) -> Any:
        """The convolution ``(batch, out_channels, *out)`` of ``padded`` with ``weight`` (no bias)."""
        xp = _backend.namespace_of(padded)
        n, c = padded.shape[:2]
        # n, not -1, wherever it is known: a 0-row batch
        flat = xp.reshape(padded, reshape_sizes((n, groups, c // groups, math.prod(padded.shape[2:]))))
        y = correlate(_grouped(weight, groups), flat, self.offsets, self.positions)
        return xp.reshape(y, reshape_sizes((n, weight.shape[0], *self.grid)))[self.crop]

    def backward(self, grad: Any, padded: Any, weight: Any, groups: int, input_shape: Sequence[int] | None
                 ) -> tuple[Any, Any]:
        """The weight's gradient and the gradient of the input of ``input_shape`` (``None``: not wanted)."""
        xp = _backend.namespace_of(grad)
        n, c = padded.shape[:2]
        o = weight.shape[0]
        full = xp.zeros((n, o, *self.grad_grid), dtype=grad.dtype, device=_backend.device_of(grad))
        full[self.grad_at] = grad
        flat = xp.reshape(full, (n, groups, o // groups, math.prod(full.shape[2:])))
        grid = flat[..., self.grad_start:self.grad_start + self.positions]
        x = xp.reshape(padded, (n, groups, c // groups, math.prod(padded.shape[2:])))
        dw = xp.reshape(correlate_weight_grad(grid, x, self.offsets, self.positions), tuple(weight.shape))
        if input_shape is None:
            return dw, None
        flipped = xp.permute_dims(_grouped(weight, groups), (0, 2, 1, 3))
        dx = correlate(flipped, flat, self.back_offsets, self.back_positions)
        return dw, xp.reshape(dx, (n, c, *self.back_shape))[self.back_crop]
