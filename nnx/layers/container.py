"""Sequential: layers applied in order, backpropagated in reverse.

Its ``forward`` checks the network's input for NaN once (see
:func:`nnx.set_finite_checks`); the layers inside do not, so a deep network
pays one check per step, not one per layer.
"""

from __future__ import annotations

from typing import Any, Iterator

from nnx.layers.base import Layer, Parameter, check_float, check_no_nan


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

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{prefix}{i}.")

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for i, layer in enumerate(self.layers):
            yield from layer.named_buffers(f"{prefix}{i}.")

    def set_buffer(self, name: str, value: Any) -> None:
        index, _, rest = name.partition(".")
        if not index.isdigit() or not rest or int(index) >= len(self.layers):
            raise KeyError(f"Sequential has no buffer {name!r}; names look like '0.running_mean'")
        self.layers[int(index)].set_buffer(rest, value)

    def children(self) -> list[Layer]:
        return list(self.layers)

    def config(self) -> dict[str, Any]:
        """The layers' types and configs, in order."""
        return {"layers": [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def summary(self, input_shape: tuple[int, ...]) -> str:
        """A table of each layer, its output shape for ``input_shape`` (batch axis included)
        and its parameter count, with the total. Computes shapes only; runs no forward."""
        rows = [("layer", "output shape", "params")]
        shape = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            shape = layer.output_shape(shape)
            rows.append((f"({i}) {layer!r}".replace("\n", " "), str(shape), f"{layer.num_parameters():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 4)
        out = [f"{rows[0][0]:<{widths[0]}}  {rows[0][1]:<{widths[1]}}  {rows[0][2]:>{widths[2]}}", line]
        out += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows[1:]]
        out += [line, f"total parameters: {self.num_parameters():,}"]
        return "\n".join(out)

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
