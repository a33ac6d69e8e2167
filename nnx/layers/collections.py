"""LayerList and LayerDict: sub-layers held by index or key, visible to the layer tree.

A plain Python list or dict of layers is not a child the tree walk finds (its
weights would be neither trained nor saved); these containers are. They wire
nothing: the layer that holds one calls its items' forwards and backwards.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from nnx.errors import StateError
from nnx.layers.base import Layer, holds_no_arrays
from nnx.layers.registry import register_layer


def _checked(layer: Any, where: str) -> Layer:
    if not isinstance(layer, Layer):
        raise TypeError(f"{where} must be an nnx layer, got {type(layer).__name__}")
    return layer


class _Holder(Layer):
    """What LayerList and LayerDict share: they hold layers and compute nothing themselves."""

    config_size = holds_no_arrays
    _child_lists = ("items",)

    def example_input(self, batch: int, rng: Any, fits: Any) -> Any:
        raise StateError(f"{type(self).__name__} takes no input of its own; the layer that holds it "
                         f"states its model's example input")

    def forward(self, x: Any) -> Any:
        raise StateError(f"{type(self).__name__} holds layers but wires none; call its items' forward "
                         f"from the layer that holds it")

    def backward(self, grad: Any) -> Any:
        raise StateError(f"{type(self).__name__} holds layers but wires none; call its items' backward "
                         f"from the layer that holds it")


@register_layer
class LayerList(_Holder):
    """Layers by index (``self.blocks = nnx.LayerList([...])``; state names ``blocks.0.weight``)."""

    def __init__(self, layers: Iterable[Layer] = ()) -> None:
        super().__init__()
        self.items = [_checked(layer, f"LayerList item {i}") for i, layer in enumerate(layers)]

    def append(self, layer: Layer) -> None:
        """Add ``layer`` at the end."""
        self.items.append(_checked(layer, f"LayerList item {len(self.items)}"))

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        for i, layer in enumerate(self.items):
            yield str(i), layer

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Mapping[str, Layer]) -> "LayerList":
        if config:
            raise TypeError(f"LayerList takes no config, got {sorted(config)}")
        return cls(children.values())

    def __getitem__(self, i: int) -> Layer:
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.items)


@register_layer
class LayerDict(_Holder):
    """Layers by string key (``self.heads = nnx.LayerDict({"a": ...})``; state names ``heads.a.weight``)."""

    def __init__(self, layers: Mapping[str, Layer] | None = None) -> None:
        super().__init__()
        self.items: dict[str, Layer] = {}
        for key, layer in (layers or {}).items():
            self[key] = layer

    def __setitem__(self, key: str, layer: Layer) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise TypeError(f"LayerDict keys must be non-empty strings without '.', got {key!r}")
        self.items[key] = _checked(layer, f"LayerDict item {key!r}")

    def __delitem__(self, key: str) -> None:
        del self.items[key]

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        yield from self.items.items()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Mapping[str, Layer]) -> "LayerDict":
        if config:
            raise TypeError(f"LayerDict takes no config, got {sorted(config)}")
        return cls(dict(children))

    def __getitem__(self, key: str) -> Layer:
        return self.items[key]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def keys(self) -> Any:
        return self.items.keys()

    def values(self) -> Any:
        return self.items.values()


__all__ = ["LayerDict", "LayerList"]
