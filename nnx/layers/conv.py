"""Convolutions over one (NCL) or two (NCHW) spatial axes, as matrix products over windows of the input.

Layout: inputs ``(batch, in_channels, *spatial)``, kernels
``(out_channels, in_channels // groups, *kernel_size)``, outputs
``(batch, out_channels, *output)`` — PyTorch's layout. The layout of the
windows (:mod:`nnx.layers.windows`) computes the products: with stride 1,
over contiguous runs of the flattened input (:class:`~nnx.layers.windows.Runs`:
one matrix product per kernel offset over a shifted view of the input, or, for
few channels, over the gathered windows; the input's gradient as a correlation
of the padded output gradient with the flipped kernel), else over strided
slices gathered into ``(batch, in_channels * kernel positions, positions)``
(:class:`~nnx.layers.windows.Slices`). The padded input, not its windows, is
kept between forward and backward (a 3x3 kernel's windows are nine times the
input).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import random as _random
from nnx.arguments import integers
from nnx.errors import ArgumentError, ShapeError
from nnx.layers.base import Parameter, ParamLayer, count, ints_product
from nnx.layers.checks import check_arguments, check_switches
from nnx.layers.registry import register_layer
from nnx.layers.windows import Pads, Runs, Slices, Window, Windowed


def _pads(padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
          owner: str) -> Pads:
    """(low, high) padding per axis from an int, a sequence, ``"valid"`` or ``"same"``."""
    n = len(kernel)
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise ArgumentError(f"{owner} padding must be an integer >= 0, a list of {n} of them, 'valid' or "
                            f"'same', got {padding!r}")
    if padding == "valid":
        return ((0, 0),) * n
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{owner} padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pads = integers(padding, n, "padding", owner, minimum=0)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p > s for p, s in zip(pads, spans)):
        # padding beyond a window's span only adds outputs that see nothing but zeros (and a file's
        # padding of 10**6 would allocate terabytes before anything else could object)
        raise ValueError(f"{owner} padding {padding!r} is out of range: each side may pad at most what the window "
                         f"spans (dilation * (kernel_size - 1) + 1 = {spans})")
    return tuple((p, p) for p in pads)


class _Conv(Windowed, ParamLayer):
    """What Conv1d and Conv2d share; ``spatial`` is the number of spatial axes."""

    spatial = 0
    arguments = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
                 "dtype")
    optional_parameters = ("bias",)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        init: str | _init.Initializer = "he_uniform",
        bias_init: str | _init.Initializer = "zeros",
        seed: Any = None,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        owner, n = type(self).__name__, self.spatial
        in_channels, out_channels, groups = check_arguments(
            owner, dtype, in_channels=in_channels, out_channels=out_channels, groups=groups)
        (bias,) = check_switches(owner, bias=bias)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{owner} groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        kernel = integers(kernel_size, n, "kernel_size", owner, 1)
        strides = integers(stride, n, "stride", owner, 1)
        dilations = integers(dilation, n, "dilation", owner, 1)
        self.window = Window(kernel, strides, dilations, _pads(padding, kernel, strides, dilations, owner))
        self.in_channels, self.out_channels, self.groups, self.dtype = in_channels, out_channels, groups, dtype
        self.padding = padding if isinstance(padding, str) else [lo for lo, _ in self.window.pads]
        rng = _random.make_rng(seed)
        name = backend or _backend.current()
        shape = (out_channels, in_channels // groups, *kernel)
        fans = (in_channels // groups * math.prod(kernel), out_channels * math.prod(kernel))
        self.weight = Parameter(_backend.to_device(_init.draw(init, shape, rng, fans), name, dtype), "weight")
        self.bias: Parameter | None = None
        if bias:
            b = _init.draw(bias_init, (out_channels,), rng, fans)
            self.bias = Parameter(_backend.to_device(b, name, dtype), "bias")

    def _layout(self) -> str:
        return "(batch, " + str(self.in_channels) + "".join(f", d{i + 1}" for i in range(self.spatial)) + ")"

    def _check(self, x: Any) -> tuple[int, ...]:
        self._check_input(x, self)
        if x.ndim != 2 + self.spatial or x.shape[1] != self.in_channels:
            raise ShapeError(f"{self!r} expected input of shape {self._layout()}, got {tuple(x.shape)}")
        return self.window.check(x, repr(self))

    def forward(self, x: Any) -> Any:
        out = self._check(x)
        xp = _backend.namespace_of(x)
        cols = self._windows(tuple(x.shape[2:]), out)
        padded = cols.pad(x)
        y = cols.forward(padded, self.weight.data, self.groups)
        if self.bias is not None:
            y += xp.reshape(self.bias.data, (1, self.out_channels) + (1,) * self.spatial)
        self.save_for_backward(padded, tuple(x.shape), cols)
        return y

    def _windows(self, spatial: tuple[int, ...], out: tuple[int, ...]) -> Slices | Runs:
        """How the windows of inputs of this spatial size are gathered (index arithmetic, kept per size)."""
        layouts = self.__dict__.setdefault("_layouts", {})
        layout = layouts.get(spatial)
        if layout is None:
            kind = Runs if all(s == 1 for s in self.window.stride) else Slices
            layout = layouts[spatial] = kind(self.window, spatial, out)
        return layout

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        padded, shape, cols = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        dw, dx = cols.backward(grad, padded, self.weight.data, self.groups, shape if input_grad else None)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(xp.sum(grad, axis=(0, *range(2, 2 + self.spatial))))
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2 + self.spatial or input_shape[1] != self.in_channels:
            raise ShapeError(f"{self!r} expected input of shape {self._layout()}, got {tuple(input_shape)}")
        return (input_shape[0], self.out_channels, *self.window.output(input_shape[2:], repr(self)))

    @property
    def dilation(self) -> tuple[int, ...]:
        return self.window.dilation

    def __repr__(self) -> str:
        """The kernel by name, the other sizes only where they differ from one (or zero) on every axis."""
        parts = [str(self.in_channels), str(self.out_channels), f"kernel_size={tuple(self.kernel_size)}"]
        for name, value, default in (("stride", tuple(self.stride), (1,) * self.spatial),
                                     ("dilation", tuple(self.dilation), (1,) * self.spatial)):
            if value != default:
                parts.append(f"{name}={value}")
        if self.padding not in ([0] * self.spatial, "valid"):
            parts.append(f"padding={self.padding!r}" if isinstance(self.padding, str)
                         else f"padding={tuple(self.padding)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        return f"{type(self).__name__}({', '.join(parts)})"

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        kernel = config.get("kernel_size")
        positions = ints_product([kernel]) if isinstance(kernel, list) else count(kernel) ** cls.spatial
        out, groups = count(config.get("out_channels")), count(config.get("groups", 1)) or 1
        weights = out * (count(config.get("in_channels")) // groups) * positions
        return weights + (out if config.get("bias", True) else 0)

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal inputs of ``in_channels`` and the smallest of a few square sizes that ``fits``."""
        for size in (8, 12, 16, 28, 32, 64, 128, 224):
            shape = (batch, self.in_channels, *(size,) * self.spatial)
            if fits(shape):
                return _random.normal(rng, shape, 0.0, 1.0)
        raise ShapeError(f"cannot size inputs: no square input up to 224 fits {self!r} and the layers after it")


@register_layer
class Conv1d(_Conv):
    """1-D convolution of ``(batch, in_channels, length)`` inputs (NCL), cross-correlation as in
    PyTorch. ``kernel_size``, ``stride``, ``padding`` (an int, ``"valid"`` or ``"same"``) and
    ``dilation`` are ints; ``groups`` splits the channels (``groups=in_channels``: depthwise).
    Initial weights ``init`` (He uniform by default, fan-in ``in_channels/groups * kernel``)."""

    spatial = 1


@register_layer
class Conv2d(_Conv):
    """2-D convolution of ``(batch, in_channels, height, width)`` inputs (NCHW), cross-correlation
    as in PyTorch. ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are ints or
    ``(height, width)`` pairs; ``padding`` may also be ``"valid"`` (none) or ``"same"`` (output
    as large as the input; stride 1). ``groups`` splits the channels into independent groups
    (``groups=in_channels``: depthwise). Initial weights ``init`` (He uniform by default, fan-in
    ``in_channels/groups * kh * kw``) and ``bias_init`` are drawn from ``seed``, weight first."""

    spatial = 2


__all__ = ["Conv1d", "Conv2d"]
