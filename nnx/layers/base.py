"""The pieces every layer shares: parameters, the forward/backward contract, checks.

A layer's ``forward(x)`` keeps what its ``backward`` needs; ``backward(grad)``
returns the gradient with respect to the input and *adds* into its parameters'
``grad``. Calling ``backward`` without a ``forward`` before it, or twice after
one, raises :class:`~nnx.errors.StateError`.
"""

from __future__ import annotations

from typing import Any, Iterator

from nnx import backend as _backend
from nnx.errors import DTypeError, NonFiniteError, ShapeError, StateError


class Parameter:
    """A trainable array and its accumulated gradient (``None`` until a backward)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str) -> None:
        self.data = data
        self.grad: Any = None
        self.name = name

    def accumulate(self, grad: Any) -> None:
        """Add ``grad`` into this parameter's gradient."""
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.data.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={self.shape}, dtype={_backend.dtype_name(self.data)})"


_IS_FLOAT: dict[tuple[type, Any], bool] = {}


def check_float(x: Any, where: str) -> Any:
    """Return the namespace of ``x`` after checking it is a real floating-point array."""
    try:
        xp = _backend.namespace_of(x)
    except TypeError:
        raise DTypeError(
            f"{where} expected an array, got {type(x).__name__}; "
            f"move data with nnx.to_device(x, dtype='float32')"
        ) from None
    key = (type(x.dtype), x.dtype)  # dtypes of different libraries must never be compared
    is_float = _IS_FLOAT.get(key)
    if is_float is None:
        is_float = _IS_FLOAT[key] = bool(xp.isdtype(x.dtype, "real floating"))
    if not is_float:
        raise DTypeError(
            f"{where} expected a floating-point array (float32 or float64), got dtype "
            f"{_backend.dtype_name(x)}; cast with nnx.to_device(x, dtype='float32')"
        )
    return xp


def check_same_dtype(x: Any, expected: Any, where: str) -> None:
    """Raise :class:`DTypeError` when ``x``'s dtype differs from ``expected`` (no silent upcast)."""
    if x.dtype != expected:
        raise DTypeError(
            f"{where} expected {_backend.dtype_name_of(expected)} input, got "
            f"{_backend.dtype_name(x)}; nnx never mixes dtypes silently: cast the input with "
            f"nnx.to_device(x, dtype={_backend.dtype_name_of(expected)!r}) "
            f"or build the layer with that dtype"
        )


_FINITE_CHECKS = [True]


def set_finite_checks(enabled: bool) -> bool:
    """Switch the NaN checks of losses and of ``Sequential``'s input on or off; returns the old setting.

    Each check costs one pass over the array and one device-to-host sync, so it
    runs only at the edges of a network (its input and the loss), never per layer.
    """
    old = _FINITE_CHECKS[0]
    _FINITE_CHECKS[0] = bool(enabled)
    return old


def finite_checks_enabled() -> bool:
    """Whether the NaN checks run (see :func:`set_finite_checks`)."""
    return _FINITE_CHECKS[0]


def check_no_nan(x: Any, xp: Any, where: str, what: str = "input") -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds a NaN (skipped when checks are off)."""
    if _FINITE_CHECKS[0] and bool(xp.any(xp.isnan(x))):
        count = int(xp.sum(xp.astype(xp.isnan(x), xp.int64)))
        raise NonFiniteError(
            f"{where} expected a finite {what}, got {count} NaN value(s) in an array of shape "
            f"{tuple(x.shape)}; find where they come from (data loading, a too large learning "
            f"rate) — nnx.set_finite_checks(False) turns this check off"
        )


def check_ndim(x: Any, ndim: int, where: str, meaning: str) -> None:
    """Raise :class:`ShapeError` unless ``x`` has ``ndim`` dimensions."""
    if x.ndim != ndim:
        raise ShapeError(f"{where} expected a {ndim}-D array {meaning}, got shape {tuple(x.shape)}")


class Layer:
    """Base class of layers: parameters, train/eval mode, backend moves, saved state."""

    def __init__(self) -> None:
        self.training = True
        self._saved: Any = None

    # the forward/backward contract ------------------------------------------------

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def _save(self, *values: Any) -> None:
        self._saved = values

    def _take(self) -> tuple[Any, ...]:
        saved = self._saved
        if saved is None:
            raise StateError(
                f"{self!r}.backward called without a forward before it "
                f"(or twice after one forward); call forward first"
            )
        self._saved = None
        return saved

    # parameters and modes ---------------------------------------------------------

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in a fixed order."""
        return [v for v in vars(self).values() if isinstance(v, Parameter)]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs; names are stable and used by save/load."""
        for p in self.parameters():
            yield prefix + p.name, p

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Layer":
        """Switch to training mode (or evaluation mode with ``mode=False``)."""
        self.training = mode
        return self

    def eval(self) -> "Layer":
        """Switch to evaluation mode."""
        return self.train(False)

    def to(self, name: str) -> "Layer":
        """Move every parameter and buffer onto backend ``name`` (an explicit copy); returns self."""
        for p in self.parameters():
            p.data = _backend.to_device(p.data, name)
            p.grad = None
        for key in self._buffer_names:
            setattr(self, key, _backend.to_device(getattr(self, key), name))
        self._saved = None
        return self

    # architecture and non-trainable state ------------------------------------------

    _buffer_names: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the architecture (JSON-serialisable)."""
        return {}

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(name, array)`` pairs of non-trainable state (running statistics); none by default."""
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)

    def set_buffer(self, name: str, value: Any) -> None:
        """Replace buffer ``name`` by ``value``: same shape, dtype and backend as the buffer it
        replaces (move it first with ``nnx.to_device(value, layer_backend, dtype)``)."""
        if name not in self._buffer_names:
            raise KeyError(f"{self!r} has no buffer {name!r}; it has {list(self._buffer_names)}")
        old = getattr(self, name)
        where = f"{self!r} buffer {name!r}"
        _backend.check_backend(value, _backend.backend_of(old), where)
        check_same_dtype(value, old.dtype, where)
        if tuple(value.shape) != tuple(old.shape):
            raise ShapeError(f"{where} must have shape {tuple(old.shape)}, got {tuple(value.shape)}")
        setattr(self, name, value)

    def children(self) -> list["Layer"]:
        """The layers this one contains (none for a plain layer)."""
        return []

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape ``forward`` returns for an input of ``input_shape`` (same shape by default)."""
        return tuple(input_shape)

    @property
    def backend(self) -> str | None:
        """The backend the parameters live on, or ``None`` for a layer without parameters."""
        params = self.parameters()
        return _backend.backend_of(params[0].data) if params else None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ParamLayer(Layer):
    """A layer with parameters: checks that inputs share their backend and dtype."""

    def _check_input(self, x: Any, where: str) -> Any:
        first = self.parameters()[0].data
        name = _backend.backend_of(first)
        _backend.check_backend(x, name, where)
        xp = check_float(x, where)
        check_same_dtype(x, first.dtype, where)
        return xp
