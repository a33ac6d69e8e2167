"""Input checks shared by layers and losses: array kind, dtype, finiteness."""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx import ops
from nnx.arguments import boolean, integer
from nnx.errors import ArgumentError, DTypeError, NonFiniteError

def check_arguments(owner: str, dtype: Any = None, **counts: Any) -> tuple[int, ...]:
    """Constructor checks: each of ``counts`` a positive integer (any integer type, not a bool),
    ``dtype`` a float dtype name; returns the counts as plain ints, in order."""
    sizes = tuple(integer(n, name, owner, minimum=1) for name, n in counts.items())
    if dtype is not None and (not isinstance(dtype, str) or dtype not in _backend.FLOAT_DTYPES):
        label = _backend.dtype_label(dtype)
        shown = repr(dtype) if isinstance(dtype, str) else f"the {type(dtype).__name__} object for {label}"
        fix = label if label in _backend.FLOAT_DTYPES else "float32"
        raise ArgumentError(f"{owner} dtype must be the name 'float32' or 'float64', got {shown}; "
                            f"pass dtype={fix!r}")
    return sizes


def check_switches(owner: str, **switches: Any) -> tuple[bool, ...]:
    """Constructor checks: each of ``switches`` True or False (a string such as ``'False'`` is refused,
    not taken as truthy); returns them as plain bools, in order."""
    return tuple(boolean(value, name, owner) for name, value in switches.items())


class Where:
    """Names a caller in error messages, as ``repr(owner) + suffix``, built only when a message is."""

    __slots__ = ("owner", "suffix")

    def __init__(self, owner: Any, suffix: str = "") -> None:
        self.owner, self.suffix = owner, suffix

    def __str__(self) -> str:
        return f"{self.owner!r}{self.suffix}"


_IS_FLOAT: dict[tuple[type, Any], bool] = {}


def check_float(x: Any, where: Any) -> Any:
    """Return the namespace of ``x`` after checking it is a real floating-point array.

    ``where`` names the caller in messages: a string, or an object whose ``str``
    is one (hot paths pass such an object so the text is built only on failure).
    """
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


def check_same_dtype(x: Any, expected: Any, where: Any) -> None:
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
    """Switch the finiteness checks (NaN and ±inf) of losses and of ``Sequential``'s input on or off;
    returns the old setting.

    Each check costs one pass over the array and one device-to-host sync, so it
    runs only at the edges of a network (its input and the loss), never per layer.
    """
    old = _FINITE_CHECKS[0]
    _FINITE_CHECKS[0] = bool(enabled)
    return old


def finite_checks_enabled() -> bool:
    """Whether the finiteness checks run (see :func:`set_finite_checks`)."""
    return _FINITE_CHECKS[0]


def check_finite(x: Any, xp: Any, where: str, what: str = "input") -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds a NaN or an infinity (skipped when checks are off,
    and on arrays without values to read: a traced ndonnx array, see ``Backend.holds_values``)."""
    if _FINITE_CHECKS[0] and _backend.holds_values(x) and not ops.all_finite(x):
        count = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int64)))
        nans = int(xp.sum(xp.astype(xp.isnan(x), xp.int64)))
        raise NonFiniteError(
            f"{where} expected a finite {what}, got {count} non-finite value(s) ({nans} NaN, "
            f"{count - nans} infinite) in an array of shape {tuple(x.shape)}; find where they come from "
            f"(data loading, a too large learning rate) — nnx.set_finite_checks(False) turns this check off"
        )


__all__ = ["set_finite_checks"]
