"""Layers that carry preprocessing inside the model, so it is saved and loaded with it:
:class:`Standardize` (per-feature mean and standard deviation fitted on training data) and
:class:`ClassLabels` (the original labels of a classifier's output classes)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import NonFiniteError, ShapeError
from nnx.layers.base import Layer, count, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_arguments, check_float, check_same_dtype
from nnx.layers.registry import register_layer


@register_layer
class Standardize(Layer):
    """``(x - mean) / std`` per feature, with ``mean`` and ``std`` fitted on training data.

    :meth:`fit` computes both (in float64 on the host, population standard
    deviation; a constant feature gets ``std = 1``, so it becomes 0) from the
    training split only; they are buffers, saved and loaded with the model,
    so the model applies the same scaling to new data. ``names`` keeps the
    input columns' names (from a CSV header) so that the columns of a new
    file can be matched by name. Input: ``(..., num_features)``.
    """

    buffer_names = ("mean", "std")

    def __init__(self, num_features: int, *, names: Sequence[str] | None = None, dtype: str = "float32",
                 backend: str | None = None) -> None:
        super().__init__()
        (num_features,) = check_arguments("Standardize", dtype, num_features=num_features)
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != num_features:
                raise ValueError(f"Standardize got {len(names)} names for {num_features} features")
        self.num_features, self.names, self.dtype = num_features, names, dtype
        name = backend or _backend.current()
        self.mean = _backend.to_device(_random.full((num_features,), 0.0), name, dtype)
        self.std = _backend.to_device(_random.full((num_features,), 1.0), name, dtype)

    def fit(self, x: Any, *, per_feature: bool = True) -> "Standardize":
        """Set ``mean`` and ``std`` from the training inputs ``x`` (``(samples, num_features)``, any
        backend or a NumPy array), computed in float64 on the layer's backend.

        ``per_feature=False`` fits one mean and one standard deviation over all
        features (repeated for each): for the pixels of images, where a pixel
        that is almost always blank would otherwise be scaled up by its tiny
        standard deviation and turn a stroke there in new data into a huge value.
        """
        name = _backend.backend_of(self.mean)
        data = _backend.to_device(_backend.to_host(x), name, "float64")
        if data.ndim != 2 or data.shape[1] != self.num_features or data.shape[0] < 1:
            raise ShapeError(f"{self!r}.fit expected training inputs of shape (samples >= 1, "
                             f"{self.num_features}), got {tuple(data.shape)}")
        xp = _backend.namespace_of(data)
        if not bool(xp.all(xp.isfinite(data))):
            raise NonFiniteError(f"{self!r}.fit: the training inputs hold NaN or infinite values")
        axis = 0 if per_feature else None
        ones = xp.ones((self.num_features,), dtype=data.dtype, device=_backend.device_of(data))
        std = xp.std(data, axis=axis) * ones
        std = xp.where(std > 0, std, ones)
        dtype = getattr(xp, self.dtype)
        self.mean = xp.astype(xp.mean(data, axis=axis) * ones, dtype)
        self.std = xp.astype(std, dtype)
        return self

    def forward(self, x: Any) -> Any:
        where = repr(self)
        _backend.check_backend(x, _backend.backend_of(self.mean), where)
        check_float(x, where)
        check_same_dtype(x, self.mean.dtype, where)
        if x.ndim < 1 or x.shape[-1] != self.num_features:
            raise ShapeError(f"{where} expected input of shape (..., {self.num_features}), got {tuple(x.shape)}")
        self.save_for_backward(self.std)
        return (x - self.mean) / self.std

    def backward(self, grad: Any) -> Any:
        (std,) = self.saved_tensors()
        return grad / std

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "names": self.names, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"Standardize({self.num_features})"

    example_input = takes_any_input

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return 2 * count(config.get("num_features"))


def _json_label(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (int, str)):  # a NumPy integer or string scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"class labels must be ints or strings, got {value!r} ({type(value).__name__})")
    return value


@register_layer
class ClassLabels(Layer):
    """The original labels of a classifier's ``len(labels)`` output classes; passes its input through.

    Put it last: :func:`nnx.predict_classes` returns these labels instead of
    class numbers, and the labels are saved and loaded with the model. It
    checks that the network gives one output per class. ``name`` is the
    label column's name, if the data had one.
    """

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, labels: Sequence[Any], *, name: str | None = None) -> None:
        super().__init__()
        labels = [_json_label(v) for v in labels]
        if not labels:
            raise ValueError("ClassLabels needs at least one label")
        if len({json.dumps(v) for v in labels}) != len(labels):
            raise ValueError(f"ClassLabels got repeated labels: {labels!r:.200}")
        self.labels, self.name = labels, None if name is None else str(name)

    def forward(self, x: Any) -> Any:
        if x.ndim < 1 or x.shape[-1] != len(self.labels):
            raise ShapeError(f"{self!r} expected one output per class, shape (..., {len(self.labels)}), "
                             f"got {tuple(x.shape)}")
        self.save_for_backward()
        return x

    def backward(self, grad: Any) -> Any:
        self.saved_tensors()
        return grad

    def decode(self, classes: Any) -> list[Any]:
        """Class numbers (an array of any backend) as a list of the original labels."""
        return [self.labels[int(i)] for i in _backend.to_host(classes).reshape(-1).tolist()]

    def config(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "name": self.name}

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self.labels[:5]) + (", ..." if len(self.labels) > 5 else "")
        return f"ClassLabels([{shown}])"


__all__ = ["ClassLabels", "Standardize"]
