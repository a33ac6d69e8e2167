"""Activations: each is an op pair from :mod:`nnx.ops` and what its backward keeps.

One generic :class:`Elementwise` layer runs every activation; :func:`activation`
turns an op pair into a registered layer class (its name is part of the file
format) and enters it in :data:`ACTIVATIONS`, the one table the ``activation=``
arguments of :mod:`nnx.sklearn` read. Adding an activation is one entry here
(its ops in :mod:`nnx.ops`) plus its case in ``tests/gradcheck_cases.py``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

from nnx import ops
from nnx.arguments import integer
from nnx.errors import ShapeError
from nnx.layers.base import Layer, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_float
from nnx.layers.registry import register_layer

#: the hidden-layer activations by their lower-case name ("relu", "leaky_relu", ...)
ACTIVATIONS: dict[str, type["Elementwise"]] = {}


class Elementwise(Layer):
    """``y = forward_op(x, *arguments)``; backward is ``backward_op(kept, grad, *arguments)``, where
    ``kept`` is the input or the output, as ``keeps`` says (whichever the derivative needs)."""

    forward_op: ClassVar[Callable[..., Any]]
    backward_op: ClassVar[Callable[..., Any]]
    keeps: ClassVar[str] = "output"
    #: the names of :attr:`arguments` the ops take after the array
    op_arguments: ClassVar[tuple[str, ...]] = ()
    config_size = holds_no_arrays
    example_input = takes_any_input

    def _op_arguments(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.op_arguments)

    def check_input(self, x: Any) -> None:
        """Raise unless ``x`` is an input this activation takes (a floating-point array)."""
        check_float(x, self)

    def forward(self, x: Any) -> Any:
        self.check_input(x)
        y = type(self).forward_op(x, *self._op_arguments())
        self.save_for_backward(y if self.keeps == "output" else x)
        return y

    def backward(self, grad: Any) -> Any:
        (kept,) = self.saved_tensors()
        return type(self).backward_op(kept, grad, *self._op_arguments())


def activation(name: str, forward: Callable[..., Any], backward: Callable[..., Any], keeps: str, doc: str,
               base: type[Elementwise] = Elementwise, key: str | None = None) -> type[Elementwise]:
    """A registered activation class ``name`` computing ``forward`` with the derivative ``backward``
    from the kept ``"input"`` or ``"output"``, entered in :data:`ACTIVATIONS` under ``key`` (default:
    the name in lower case); ``base`` takes any constructor arguments."""
    if keeps not in ("input", "output"):
        raise ValueError(f"activation {name} keeps 'input' or 'output', got {keeps!r}")
    cls = type(name, (base,), {"__doc__": doc, "__module__": __name__, "keeps": keeps,
                               "forward_op": staticmethod(forward), "backward_op": staticmethod(backward)})
    register_layer(cls)
    ACTIVATIONS[key or name.lower()] = cls
    return cls


class _Sloped(Elementwise):
    """An activation with a finite ``negative_slope`` for ``x <= 0``."""

    arguments = op_arguments = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not math.isfinite(float(negative_slope)):
            raise ValueError(f"{type(self).__name__} negative_slope must be a finite number, got {negative_slope}")
        self.negative_slope = float(negative_slope)


class _TanhApproximated(Elementwise):
    """An activation only in the tanh form (the array API has no ``erf``)."""

    arguments = ("approximate",)

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate != "tanh":
            raise ValueError(f"{type(self).__name__} supports approximate='tanh' only (the array API has no erf), "
                             f"got {approximate!r}")
        self.approximate = approximate


ReLU = activation("ReLU", ops.relu, ops.relu_backward, "output",
                  "``max(x, 0)``; it keeps its output (``y > 0`` exactly where ``x > 0``), which the next "
                  "layer keeps anyway.")
Tanh = activation("Tanh", ops.tanh, ops.tanh_backward, "output", "The hyperbolic tangent.")
Sigmoid = activation("Sigmoid", ops.sigmoid, ops.sigmoid_backward, "output",
                     "``1/(1+exp(-x))``, stable for large ``|x|``.")
GELU = activation("GELU", ops.gelu, ops.gelu_backward, "input",
                  "Gaussian error linear unit, tanh form (within 1e-3 of the exact GELU on every backend).",
                  _TanhApproximated)
LeakyReLU = activation("LeakyReLU", ops.leaky_relu, ops.leaky_relu_backward, "input",
                       "``x`` where ``x > 0``, else ``negative_slope * x``.", _Sloped, "leaky_relu")
SiLU = activation("SiLU", ops.silu, ops.silu_backward, "input", "``x * sigmoid(x)`` (also called swish).")


@register_layer
class Softmax(Elementwise):
    """``exp(x) / sum(exp(x))`` along ``axis`` (max-shifted, so no overflow).

    For training a classifier prefer raw logits with
    :class:`nnx.losses.SoftmaxCrossEntropy`, which is fused and more accurate.
    """

    arguments = op_arguments = ("axis",)
    forward_op = staticmethod(ops.softmax)
    backward_op = staticmethod(ops.softmax_backward)

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = integer(axis, "axis", "Softmax")

    def check_input(self, x: Any) -> None:
        super().check_input(x)
        if not -x.ndim <= self.axis < x.ndim or x.shape[self.axis] == 0:
            raise ShapeError(f"{self!r} needs at least one value along axis {self.axis}, got shape {tuple(x.shape)}")


__all__ = ["Softmax", *(c.__name__ for c in ACTIVATIONS.values())]
