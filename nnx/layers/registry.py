"""The allow-list of layer classes that model files may name.

Built-in layers register here with the same ``@register_layer`` a user's own
layer uses, in their own files; :mod:`nnx.io` saves a layer under its
registered name and, on load, builds only classes found here (it never
imports code a file names). The names of the built-in layers are their class
names and are part of the file format: they must not change.
"""

from __future__ import annotations

from typing import Any

from nnx.layers.base import Layer

_LAYERS: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer] | None = None, name: str | None = None) -> Any:
    """Allow ``cls`` in model files under ``name`` (default: the class name).

    Only registered classes are saved and built on load; a file cannot name
    anything else. The class is rebuilt with ``cls.from_config(config, children)``
    (by default ``cls(**layer.config(), **children)``), after the loader checked
    ``cls.config_size(config)`` against the file's size. Usable as a decorator:
    ``@nnx.register_layer`` or ``@nnx.register_layer(name="mylib.Block")``.
    """
    if cls is None:
        return lambda c: register_layer(c, name)  # type: ignore[return-value]
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer expects an nnx Layer subclass, got {cls!r}")
    key = name or cls.__name__
    if _LAYERS.get(key, cls) is not cls:
        raise ValueError(f"layer name {key!r} is already registered for {_LAYERS[key].__name__}")
    _LAYERS[key] = cls
    return cls


def registered_layers() -> dict[str, type[Layer]]:
    """The allow-list: layer type name → class."""
    return dict(_LAYERS)


def layer_class(name: str) -> type[Layer] | None:
    """The class registered under ``name``, or ``None``."""
    return _LAYERS.get(name)


def type_name(cls: type) -> str | None:
    """The name ``cls`` is registered under, or ``None``."""
    return next((key for key, value in _LAYERS.items() if value is cls), None)


__all__ = ["layer_class", "register_layer", "registered_layers", "type_name"]
