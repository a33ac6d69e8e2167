"""Sequential: layers applied in order, backpropagated in reverse.

Its ``forward`` checks the network's input for NaN once (see
:func:`nnx.set_finite_checks`); the layers inside do not, so a deep network
pays one check per step, not one per layer. Everything else a container
needs (parameters, modes, ``to()``, state dicts, summaries) comes from the
base class; Sequential only says how its children are wired.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from nnx.layers.base import Layer
from nnx.layers.checks import check_float, check_no_nan


class Sequential(Layer):
    """A chain of layers: ``forward`` runs them in order, ``backward`` in reverse."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} must be an nnx layer, got {type(layer).__name__}")
        self.layers: list[Layer] = list(layers)

    def forward(self, x: Any) -> Any:
        if self.layers:
            xp = check_float(x, "Sequential (its input)")
            check_no_nan(x, xp, "Sequential (its input)")
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: Any) -> Any:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def backward_params(self, grad: Any) -> None:
        layers = self.layers
        for layer in reversed(layers[1:]):
            grad = layer.backward(grad)
        if layers:
            layers[0].backward_params(grad)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

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
