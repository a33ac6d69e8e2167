"""Normalisation layers: LayerNorm and RMSNorm (per sample), BatchNorm1d and BatchNorm2d (per
feature or channel, over the batch and, for images, the spatial positions)."""

from __future__ import annotations

from typing import Any, Mapping

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import ShapeError
from nnx.layers.base import Layer, Parameter, count, takes_any_input
from nnx.arguments import number
from nnx.layers.checks import Where, check_arguments, check_float, check_same_dtype, check_switches
from nnx.layers.registry import register_layer


class _Norm(Layer):
    """What the norms share: optional affine ``weight``/``bias``, dtype and backend checks.

    Inputs are checked against the layer's first array (its dtype and backend follow ``to()``);
    only a norm without arrays keeps the backend and dtype it was built or moved with.
    """

    example_input = takes_any_input
    arguments: tuple[str, ...] = ("num_features", "eps", "affine", "dtype")
    #: the per-feature parameters ``affine=True`` adds (the first is ``weight``, starting at 1)
    affine_names: tuple[str, ...] = ("weight", "bias")

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        (num_features,) = check_arguments(owner, dtype, num_features=num_features)
        (affine,) = check_switches(owner, affine=affine)
        eps = number(eps, "eps", owner, above=0.0)
        self.num_features, self.eps, self.affine, self.dtype = num_features, eps, affine, dtype
        self._backend_name = backend or _backend.current()
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if affine:
            for name, value in zip(self.affine_names, (1.0, 0.0)):
                setattr(self, name, Parameter(self._full(value), name))

    def _full(self, value: float) -> Any:
        return _backend.to_device(_random.full((self.num_features,), value), self._backend_name, self.dtype)

    def _check_input(self, x: Any) -> Any:
        """Check backend, dtype and shape of an input."""
        xp = self._check_array(x, Where(self))  # named only in a message: a repr costs more than the check
        if x.ndim < 1 or x.shape[-1] != self.num_features:
            raise ShapeError(self._shape_message(x))
        return xp

    def _check_array(self, x: Any, where: Any) -> Any:
        """Check that ``x`` is a float array of this layer's backend and dtype."""
        arrays = [p.data for _, p in self._own_parameters()] + [getattr(self, n) for n in self.buffer_names]
        backend = _backend.backend_of(arrays[0]) if arrays else self._backend_name
        _backend.check_backend(x, backend, where)
        xp = check_float(x, where)
        check_same_dtype(x, arrays[0].dtype if arrays else getattr(_backend.namespace(backend), self.dtype), where)
        return xp

    def _shape_message(self, x: Any) -> str:
        return f"{self!r} expected input of shape (..., {self.num_features}), got {tuple(x.shape)}"

    def _view(self, v: Any) -> Any:
        """A per-feature vector shaped to broadcast against the input (features last by default)."""
        return v

    def _affine_backward(self, grad: Any, xhat: Any, xp: Any, axes: tuple[int, ...]) -> Any:
        """Accumulate ``weight``/``bias`` gradients; return d loss / d xhat."""
        if self.weight is None:
            return grad
        self.weight.accumulate(xp.sum(grad * xhat, axis=axes))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(grad, axis=axes))
        return grad * self._view(self.weight.data)

    def _to(self, name: str | None, dtype: str | None = None) -> None:
        super()._to(name, dtype)
        self._backend_name = name or self._backend_name

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        arrays = len(cls.buffer_names) + (len(cls.affine_names) if config.get("affine", True) else 0)
        return arrays * count(config.get("num_features"))


@register_layer
class LayerNorm(_Norm):
    """Normalise each sample over its last axis (``num_features`` values) to zero mean and
    unit variance, then scale by ``weight`` and shift by ``bias`` (``affine=True``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance;
    the same computation in training and evaluation mode.
    """

    def forward(self, x: Any) -> Any:
        xp = self._check_input(x)
        xc = x - xp.mean(x, axis=-1, keepdims=True)
        rstd = 1 / xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + self.eps)
        xc *= rstd  # now xhat
        self.save_for_backward(xc, rstd)
        if self.weight is None:
            return xc
        return xc * self.weight.data + self.bias.data

    def backward(self, grad: Any) -> Any:
        xhat, rstd = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        g = self._affine_backward(grad, xhat, xp, tuple(range(grad.ndim - 1)))
        # dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        dx = g - xp.mean(g, axis=-1, keepdims=True)
        dx -= xhat * xp.mean(g * xhat, axis=-1, keepdims=True)
        dx *= rstd
        return dx


@register_layer
class RMSNorm(_Norm):
    """Scale each sample by the root mean square of its last axis (``num_features`` values), then
    by ``weight`` (``affine=True``): ``y = x / sqrt(mean(x^2) + eps) * weight``. No centring, no bias.
    """

    affine_names = ("weight",)

    def forward(self, x: Any) -> Any:
        xp = self._check_input(x)
        rrms = 1 / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        xhat = x * rrms
        self.save_for_backward(xhat, rrms)
        return xhat if self.weight is None else xhat * self.weight.data

    def backward(self, grad: Any) -> Any:
        xhat, rrms = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        g = self._affine_backward(grad, xhat, xp, tuple(range(grad.ndim - 1)))
        # dx = rrms * (g - xhat * mean(g * xhat))
        dx = g - xhat * xp.mean(g * xhat, axis=-1, keepdims=True)
        dx *= rrms
        return dx


@register_layer
class BatchNorm1d(_Norm):
    """Normalise each of ``num_features`` features over the batch of a ``(batch, features)`` input.

    Training mode uses the batch's mean and biased variance, and updates the
    running statistics ``running = (1 - momentum) * running + momentum * batch``
    (the running variance takes the unbiased batch variance, as PyTorch does).
    Evaluation mode (``eval()``) normalises with the running statistics. The
    running statistics are buffers (``named_buffers``), saved with the model.
    """

    buffer_names = ("running_mean", "running_var")
    arguments = ("num_features", "momentum", "eps", "affine", "dtype")
    _spatial = 0  # spatial axes after (batch, features)

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__(num_features, eps, affine, dtype=dtype, backend=backend)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__} momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.running_mean = self._full(0.0)
        self.running_var = self._full(1.0)

    def _layout(self) -> str:
        return "(batch, " + str(self.num_features) + "".join(f", d{i + 1}" for i in range(self._spatial)) + ")"

    def _shape_message(self, x: Any) -> str:
        return f"{self!r} expected input of shape {self._layout()}, got {tuple(x.shape)}"

    def _check_input(self, x: Any) -> Any:
        xp = super()._check_input(x) if not self._spatial else self._check_channels(x)
        if x.ndim != 2 + self._spatial:
            raise ShapeError(self._shape_message(x))
        return xp

    def _check_channels(self, x: Any) -> Any:
        xp = self._check_array(x, repr(self))
        if x.ndim != 2 + self._spatial or x.shape[1] != self.num_features:
            raise ShapeError(self._shape_message(x))
        return xp

    def _axes(self) -> tuple[int, ...]:
        return (0, *range(2, 2 + self._spatial))

    def forward(self, x: Any) -> Any:
        xp = self._check_input(x)
        axes = self._axes()
        if self.training:
            n = 1
            for a in axes:
                n *= x.shape[a]
            if n < 2:
                raise ShapeError(
                    f"{self!r} in training mode needs at least 2 samples (batch times positions) to "
                    f"estimate a variance, got shape {tuple(x.shape)}; use a larger batch or call eval()"
                )
            mean = xp.mean(x, axis=axes)
            xc = x - self._view(mean)
            var = xp.mean(xc * xc, axis=axes)
            m = self.momentum
            self.running_mean *= 1.0 - m
            self.running_mean += m * mean
            self.running_var *= 1.0 - m
            self.running_var += (m * n / (n - 1)) * var
            rstd = self._view(1 / xp.sqrt(var + self.eps))
        else:
            xc = x - self._view(self.running_mean)
            rstd = self._view(1 / xp.sqrt(self.running_var + self.eps))
        xc *= rstd  # now xhat
        self.save_for_backward(xc, rstd, self.training)
        if self.weight is None:
            return xc
        return xc * self._view(self.weight.data) + self._view(self.bias.data)

    def backward(self, grad: Any) -> Any:
        xhat, rstd, training = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        axes = self._axes()
        g = self._affine_backward(grad, xhat, xp, axes)
        if not training:  # the statistics are constants in evaluation mode
            return g * rstd
        dx = g - xp.mean(g, axis=axes, keepdims=True)
        dx -= xhat * xp.mean(g * xhat, axis=axes, keepdims=True)
        dx *= rstd
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def check_arrays(self, arrays: Mapping[str, Any], where: str) -> None:
        """Finite values (see :meth:`Layer.check_arrays`), and a ``running_var`` of no negative value."""
        super().check_arrays(arrays, where)
        var = arrays["running_var"]
        xp = _backend.namespace_of(var)
        if not bool(xp.all(var >= 0)):
            raise ValueError(f"{where}: {self!r} 'running_var' holds negative values, which no variance has; "
                             f"the values are damaged or forged")



@register_layer
class BatchNorm2d(BatchNorm1d):
    """:class:`BatchNorm1d` for images: each of ``num_features`` channels of an NCHW input
    ``(batch, channels, height, width)`` is normalised over the batch and all positions."""

    _spatial = 2

    def _view(self, v: Any) -> Any:
        return _backend.namespace_of(v).reshape(v, (1, self.num_features, 1, 1))


__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "RMSNorm"]
