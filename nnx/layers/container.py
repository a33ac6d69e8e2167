"""Containers: Sequential (layers in order) and Residual (``x + f(x)``).

Sequential's ``forward`` checks once that the network's input is finite (see
:func:`nnx.set_finite_checks`); the layers inside do not, so a deep network
pays one check per step, not one per layer. Everything else a container
needs (parameters, modes, ``to()``, state dicts, summaries) comes from the
base class; a container only says how its children are wired.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from nnx.errors import ShapeError
from nnx.layers.base import Layer, holds_no_arrays
from nnx.layers.cache import check_positionwise
from nnx.layers.checks import check_finite, check_float
from nnx.layers.registry import register_layer


@register_layer
class Sequential(Layer):
    """A chain of layers: ``forward`` runs them in order, ``backward`` in reverse.

    ``forward(x, cache=...)`` decodes incrementally (see :class:`~nnx.KVCache`): the cache goes to
    every layer that takes one; every other layer must work position by position.
    """

    takes_cache = True

    _child_lists = ("layers",)

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} must be an nnx layer, got {type(layer).__name__}")
        self.layers: list[Layer] = list(layers)

    def forward(self, x: Any, *, cache: Any = None) -> Any:
        if self.layers and not getattr(self.layers[0], "takes_indices", False):
            xp = check_float(x, "Sequential (its input)")
            check_finite(x, xp, "Sequential (its input)")
        if cache is None:
            for layer in self.layers:
                x = layer.forward(x)
            return x
        for layer in self.layers:
            if getattr(layer, "takes_cache", False):
                x = layer.forward(x, cache=cache)
            else:
                check_positionwise(layer, "Sequential (cache)")
                x = layer.forward(x)
        return x

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        layers = self.layers
        for layer in reversed(layers[1:]):
            grad = layer.backward(grad)
        if not layers:
            return grad if input_grad else None
        return layers[0].backward(grad, input_grad=input_grad)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def fixed_input_shape(self) -> tuple[int | None, ...] | None:
        return self.layers[0].fixed_input_shape() if self.layers else None

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Mapping[str, Layer]) -> "Sequential":
        if config:
            raise TypeError(f"Sequential takes no config, got {sorted(config)}")
        return cls(*children.values())

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    config_size = holds_no_arrays

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """The example input of the first layer that states one."""
        return _first_example(self.layers, batch, rng, fits)


@register_layer
class Residual(Layer):
    """``body(x) + x``, or ``body(x) + shortcut(x)`` with a projection ``shortcut`` (a 1x1
    convolution, a Linear) where the body changes the shape; the backward adds both paths.

    ResNet-style blocks compose from it, e.g.
    ``Sequential(Residual(Sequential(Conv2d(c, c, 3, padding=1), BatchNorm2d(c), ReLU(),
    Conv2d(c, c, 3, padding=1), BatchNorm2d(c))), ReLU())``.
    """

    def __init__(self, body: Layer, shortcut: Layer | None = None) -> None:
        super().__init__()
        for name, layer in (("body", body), ("shortcut", shortcut)):
            if layer is not None and not isinstance(layer, Layer):
                raise TypeError(f"Residual {name} must be an nnx layer, got {type(layer).__name__}")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Any) -> Any:
        y = self.body.forward(x)
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        if tuple(y.shape) != tuple(skip.shape):
            raise ShapeError(
                f"Residual: the body's output has shape {tuple(y.shape)} but the "
                f"{'input' if self.shortcut is None else 'shortcut output'} has {tuple(skip.shape)}; "
                f"give a shortcut projection that maps the input to the body's output shape"
            )
        return y + skip

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        dx = self.body.backward(grad, input_grad=input_grad)
        skip = grad if self.shortcut is None else self.shortcut.backward(grad, input_grad=input_grad)
        return dx + skip if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.body.output_shape(input_shape)

    def fixed_input_shape(self) -> tuple[int | None, ...] | None:
        return self.body.fixed_input_shape()

    def __repr__(self) -> str:
        body = repr(self.body).replace("\n", "\n  ")
        if self.shortcut is None:
            return f"Residual(\n  (body): {body}\n)"
        shortcut = repr(self.shortcut).replace("\n", "\n  ")
        return f"Residual(\n  (body): {body}\n  (shortcut): {shortcut}\n)"

    config_size = holds_no_arrays

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """The body's example input."""
        return self.body.example_input(batch, rng, fits)


def _first_example(layers: list[Layer], batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
    """The example input of the first of ``layers`` that states one (``None`` if none does)."""
    for layer in layers:
        x = layer.example_input(batch, rng, fits)
        if x is not None:
            return x
    return None


__all__ = ["Residual", "Sequential"]
