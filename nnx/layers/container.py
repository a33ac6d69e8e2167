"""Sequential: layers applied in order, backpropagated in reverse."""

from __future__ import annotations

from typing import Any, Iterator

from nnx.layers.base import Layer, Parameter


class Sequential(Layer):
    """A chain of layers: ``forward`` runs them in order, ``backward`` in reverse."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} must be an nnx layer, got {type(layer).__name__}")
        self.layers: list[Layer] = list(layers)

    def forward(self, x: Any) -> Any:
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

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{prefix}{i}.")

    def train(self, mode: bool = True) -> "Sequential":
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def to(self, name: str) -> "Sequential":
        for layer in self.layers:
            layer.to(name)
        return self

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
