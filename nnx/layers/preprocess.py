"""Layers that carry preprocessing inside the model, so it is saved and loaded with it:
:class:`Standardize` (per-feature mean and standard deviation fitted on training data),
:class:`ClassLabels` (the original labels of a classifier's output classes) and
:class:`Destandardize` (a regression's outputs back in the target's units)."""

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

    arguments = ("num_features", "names", "dtype")

    def __init__(self, num_features: int, *, names: Sequence[str] | None = None, dtype: str = "float32",
                 backend: str | None = None) -> None:
        super().__init__()
        (num_features,) = check_arguments("Standardize", dtype, num_features=num_features)
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != num_features:
                raise ValueError(f"Standardize got {len(names)} names for {num_features} features")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"Standardize got repeated column names {repeated!r:.200}; each input's name "
                                 f"must be unique so that a file's columns can be matched by name")
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
        mean, std = _fitted_moments(self, x, self.num_features, "inputs", per_feature)
        xp = _backend.namespace_of(mean)
        self.mean, self.std = xp.astype(mean, getattr(xp, self.dtype)), xp.astype(std, getattr(xp, self.dtype))
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

    def check_arrays(self, arrays: Mapping[str, Any], where: str) -> None:
        """Finite values (see :meth:`Layer.check_arrays`), and every ``std`` above 0 as :meth:`fit` makes it."""
        super().check_arrays(arrays, where)
        std = arrays["std"]
        xp = _backend.namespace_of(std)
        if not bool(xp.all(std > 0)):
            raise ValueError(f"{where}: {self!r} 'std' holds values <= 0, which fit never makes (a constant "
                             f"feature gets std 1); dividing by them gives infinite or flipped inputs; the "
                             f"values are damaged or forged")

    def fixed_input_shape(self) -> tuple[int | None, ...]:
        return (None, self.num_features)

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

    arguments = ("labels", "name")

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

    def __repr__(self) -> str:
        shown = ", ".join(repr(v) for v in self.labels[:5]) + (", ..." if len(self.labels) > 5 else "")
        return f"ClassLabels([{shown}])"


def _fitted_moments(layer: Layer, values: Any, size: int, what: str,
                    per_column: bool = True) -> tuple[Any, Any]:
    """Per-column float64 mean and standard deviation (1 for a constant column) of the training
    ``what`` ``values`` ``(samples, size)``, on the backend of ``layer.mean``, checked for shape and finiteness;
    with ``per_column=False`` one mean and standard deviation over all columns, repeated for each.

    Computed on the values divided by a power of two near each column's largest magnitude (exact, so
    ordinary data gives the same bits as without it), so values near the float64 limit give finite
    statistics (squares of 1e300 would overflow); the data are then checked to be representable, and the
    standard deviation nonzero, in ``layer.dtype``, the dtype that holds them."""
    name = _backend.backend_of(layer.mean)
    data = _backend.to_device(_backend.to_host(values), name, "float64")
    if data.ndim != 2 or data.shape[1] != size or data.shape[0] < 1:
        raise ShapeError(f"{layer!r}.fit expected training {what} of shape (samples >= 1, {size}), "
                         f"got {tuple(data.shape)}")
    xp = _backend.namespace_of(data)
    if not bool(xp.all(xp.isfinite(data))):
        raise NonFiniteError(f"{layer!r}.fit: the training {what} hold NaN or infinite values")
    axis = 0 if per_column else None
    ones = xp.ones((size,), dtype=data.dtype, device=_backend.device_of(data))
    peak = xp.max(xp.abs(data), axis=axis) * ones
    peak = 2.0 ** xp.floor(xp.log2(xp.where(peak > 0, peak, ones)))  # a power of two: dividing by it is exact
    scaled = data / peak if per_column else data / peak[0]
    mean = xp.mean(scaled, axis=axis) * peak
    std = xp.std(scaled, axis=axis) * peak
    std = xp.where(std > 0, std, ones)
    _backend.check_representable(data, layer.dtype, f"{layer!r}.fit: the training {what}")
    tiny = xp.finfo(getattr(xp, layer.dtype)).smallest_normal
    if not bool(xp.all(std >= tiny)):
        raise NonFiniteError(f"{layer!r}.fit: the training {what} vary by as little as "
                             f"{float(xp.min(std)):.3g}, a standard deviation {layer.dtype} rounds to 0 (its "
                             f"smallest normal number is {tiny:.3g}); rescale them or use float64")
    return mean, std


@register_layer
class Destandardize(Layer):
    """``z * std + mean`` per output: a regression network's standardised outputs in the target's units.

    Put it last. :meth:`fit` takes the training targets (float64 on the host,
    population standard deviation; a constant target gets ``std = 1``);
    :meth:`standardize` turns targets into the units the network is trained
    in, so the network before this layer learns targets of mean 0 and
    standard deviation 1 whatever their scale, and the saved model answers in
    the target's own units. ``names`` keeps the target columns' names (from a
    CSV header). Input: ``(..., num_outputs)``.
    """

    buffer_names = ("mean", "std")
    example_input = takes_any_input

    arguments = ("num_outputs", "names", "dtype")

    def __init__(self, num_outputs: int, *, names: Sequence[str] | None = None, dtype: str = "float32",
                 backend: str | None = None) -> None:
        super().__init__()
        check_arguments("Destandardize", dtype, num_outputs=num_outputs)
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != num_outputs:
                raise ValueError(f"Destandardize got {len(names)} names for {num_outputs} outputs")
        self.num_outputs, self.names, self.dtype = num_outputs, names, dtype
        name = backend or _backend.current()
        self.mean = _backend.to_device(_random.full((num_outputs,), 0.0), name, dtype)
        self.std = _backend.to_device(_random.full((num_outputs,), 1.0), name, dtype)

    def fit(self, y: Any) -> "Destandardize":
        """Set ``mean`` and ``std`` from the training targets ``y`` (``(samples, num_outputs)``, or
        ``(samples,)`` for one output; any backend or a NumPy array)."""
        y = _backend.to_host(y)
        mean, std = _fitted_moments(self, y.reshape(-1, 1) if y.ndim == 1 else y, self.num_outputs, "targets")
        xp = _backend.namespace_of(mean)
        self.mean, self.std = xp.astype(mean, getattr(xp, self.dtype)), xp.astype(std, getattr(xp, self.dtype))
        return self

    def standardize(self, y: Any) -> Any:
        """Targets ``y`` (``(samples, num_outputs)``, host or device) in the network's units,
        ``(y - mean) / std``, as float64 on the host: what to train the layers before this one on."""
        mean, std = (_backend.to_host(a).astype("float64") for a in (self.mean, self.std))
        y = _backend.to_host(y).astype("float64")
        return ((y.reshape(-1, 1) if y.ndim == 1 else y) - mean) / std

    def forward(self, x: Any) -> Any:
        where = repr(self)
        _backend.check_backend(x, _backend.backend_of(self.mean), where)
        check_float(x, where)
        check_same_dtype(x, self.mean.dtype, where)
        if x.ndim < 1 or x.shape[-1] != self.num_outputs:
            raise ShapeError(f"{where} expected input of shape (..., {self.num_outputs}), got {tuple(x.shape)}")
        self.save_for_backward(self.std)
        return x * self.std + self.mean

    def backward(self, grad: Any) -> Any:
        (std,) = self.saved_tensors()
        return grad * std

    def __repr__(self) -> str:
        return f"Destandardize({self.num_outputs})"

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return 2 * count(config.get("num_outputs"))


__all__ = ["ClassLabels", "Destandardize", "Standardize"]
