"""The fully connected layer."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import random as _random
from nnx.errors import ShapeError
from nnx.layers.base import Parameter, ParamLayer, count, shared
from nnx.layers.checks import check_arguments, check_switches
from nnx.layers.registry import register_layer
from nnx.layers.sizes import reshape_sizes


def _initial(values: Any, shape: tuple[int, ...], what: str) -> Any:
    """User-given initial values as a host float64 array of exactly ``shape``."""
    arr = _random.asarray(_backend.to_host(values))
    if tuple(arr.shape) != shape:
        raise ShapeError(f"{what} must have shape {shape}, got {tuple(arr.shape)}")
    return arr


@register_layer
class Linear(ParamLayer):
    """``y = x @ W.T + b`` for ``x`` of shape ``(batch, in_features)``, or ``(..., in_features)``
    (a sequence of vectors, after an :class:`~nnx.Embedding`: every leading axis is kept).

    ``W`` has shape ``(out_features, in_features)``, as every nnx layer and PyTorch store it;
    ``b`` has shape ``(out_features,)``. Initial values come from ``init``/``bias_init``
    drawn from ``seed`` (an int, a NumPy ``Generator`` or legacy ``RandomState``; ``None``
    uses nnx's default generator), weight first, then bias. The weight is drawn as an
    ``(in_features, out_features)`` array, the tutorials' ``np.dot(X, syn0)`` order, and
    stored transposed, so a seed gives the tutorials' numbers. ``weight=`` gives the initial
    values directly ``(out_features, in_features)``, or is a :class:`Parameter` of that
    shape to share (tying a head to an embedding: ``Linear(E, V, weight=emb.weight)``);
    ``bias_value=`` gives the bias. ``dtype`` is ``"float32"`` (default) or ``"float64"``;
    ``backend`` defaults to the selected one.
    """

    arguments = ("in_features", "out_features", "bias", "dtype")
    optional_parameters = ("bias",)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str | _init.Initializer = "xavier_uniform",
        bias_init: str | _init.Initializer = "zeros",
        seed: Any = None,
        weight: Any = None,
        bias_value: Any = None,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        in_features, out_features = check_arguments("Linear", dtype, in_features=in_features,
                                                    out_features=out_features)
        (bias,) = check_switches("Linear", bias=bias)
        if bias_value is not None and not bias:
            raise ValueError("Linear got bias_value but bias=False")
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        rng = _random.make_rng(seed)
        shape = (in_features, out_features)
        name = backend or _backend.current()
        if isinstance(weight, Parameter):
            where = f"Linear({in_features}, {out_features}) weight"
            self.weight = shared(weight, (out_features, in_features), where, dtype)
        else:
            w = (_initial(weight, shape[::-1], "weight") if weight is not None
                 else _init.draw(init, shape, rng, shape).T.copy())
            self.weight = Parameter(_backend.to_device(w, name, dtype), "weight")
        self.bias: Parameter | None = None
        if bias:
            bshape = (out_features,)
            if bias_value is not None:
                b = _initial(bias_value, bshape, "bias_value")
            else:
                b = _init.draw(bias_init, bshape, rng, shape)
            self.bias = Parameter(_backend.to_device(b, name, dtype), "bias")

    def forward(self, x: Any) -> Any:
        self._check_input(x, self)  # messages say repr(self); built only on failure
        if x.ndim < 2:
            raise ShapeError(f"{self!r} expected a 2-D (or larger) array of shape (batch, {self.in_features}) "
                             f"or (..., {self.in_features}), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{self!r} expected input of shape (batch, {self.in_features}) or (..., {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        lead = tuple(x.shape[:-1])
        if lead.count(None) > 1:  # sizes unknown until run time (a traced graph): no flat matrix to make
            return self._broadcast_forward(x)
        if x.ndim > 2:  # (..., in) as one (rows, in) matrix
            x = _backend.namespace_of(x).reshape(x, (-1, self.in_features))
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data  # y is fresh: add in place, no second array
        self.save_for_backward(x, lead)
        return y if len(lead) == 1 else _backend.namespace_of(y).reshape(y, reshape_sizes((*lead, self.out_features)))

    def _broadcast_forward(self, x: Any) -> Any:
        """``x @ weight.T`` over all leading axes at once, for inputs with two or more sizes unknown (a
        traced dynamic batch and sequence, which no reshape to a matrix can name). Only a traced graph
        has such inputs, and it has no backward: nothing is kept."""
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        x, lead = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        if len(lead) > 1:
            grad = xp.reshape(grad, (-1, self.out_features))
        # one row: the outer product as a broadcast product, the same numbers as the matrix
        # product (one term each) but several times faster on BLAS libraries tuned for k > 1
        self.weight.accumulate(grad.T * x if x.shape[0] == 1 else grad.T @ x)
        if self.bias is not None:
            self.bias.accumulate(xp.sum(grad, axis=0))
        if not input_grad:
            return None
        dx = grad @ self.weight.data
        return dx if len(lead) == 1 else xp.reshape(dx, (*lead, self.in_features))

    def _reference(self) -> Parameter:
        return self.weight

    def fixed_input_shape(self) -> tuple[int | None, ...]:
        return (None, self.in_features)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) < 2 or input_shape[-1] != self.in_features:
            raise ShapeError(f"{self!r} expected input of shape (batch, {self.in_features}) or "
                             f"(..., {self.in_features}), got {tuple(input_shape)}")
        return (*input_shape[:-1], self.out_features)

    def __repr__(self) -> str:
        """``Linear(in, out)`` without the dtype the derived form adds: summaries and reports name it so."""
        extra = "" if self.bias is not None else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{extra})"

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        n_in, n_out = count(config.get("in_features")), count(config.get("out_features"))
        return n_in * n_out + (n_out if config.get("bias", True) else 0)

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal rows of ``in_features``."""
        return _random.normal(rng, (batch, self.in_features), 0.0, 1.0)


__all__ = ["Linear"]
