"""Normalisation of integer arguments, shared by every constructor and function that takes one.

An integer argument (a size, a kernel, a stride, a count of epochs) accepts every
integer type: Python's ``int``, NumPy's ``int64`` and friends, a 0-d integer
array — whatever ``operator.index`` accepts — and comes back as a plain ``int``
(so configs stay JSON). Bools, floats (even whole ones such as ``3.0``),
``None`` and strings are refused with the argument's name: a float where a size
belongs is a computation gone wrong, and ``True`` is no size at all.
"""

from __future__ import annotations

import operator
from typing import Any

from nnx.errors import ArgumentError


def _shown(value: Any) -> str:
    """``value`` as a message shows it: its repr, and its type when the repr does not say it."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = type(value).__name__
    return text if isinstance(value, int) and not isinstance(value, bool) else f"{text} of type {kind}"


def _as_int(value: Any) -> int | None:
    """``value`` as an ``int`` if it is of an integer type (not a bool), else ``None``."""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b":
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


def integer(value: Any, name: str, owner: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a plain ``int``, checked to be an integer (any integer type, not a bool) within bounds.

    Parameters
    ----------
    value : Any
        The argument as the caller passed it.
    name : str
        The argument's name, for the message.
    owner : str
        Who takes the argument (``"Conv2d"``, ``"fit"``), for the message.
    minimum, maximum : int or None
        Inclusive bounds (``None``: unbounded).

    Returns
    -------
    int

    Raises
    ------
    ArgumentError
        A bool, float, ``None`` or other non-integer, or an integer out of bounds.
    """
    n = _as_int(value)
    if n is None or (minimum is not None and n < minimum) or (maximum is not None and n > maximum):
        raise ArgumentError(
            f"{owner} {name} must be an integer{_bounds(minimum, maximum)}, got {_shown(value)}; "
            f"pass a whole number of an integer type (int, numpy.int64, ...), not a bool, float or None"
        )
    return n


def integers(value: Any, n: int, name: str, owner: str, minimum: int | None = None) -> tuple[int, ...]:
    """An integer or a list/tuple of ``n`` integers (each as :func:`integer` checks it) as ``n`` plain ints.

    Raises
    ------
    ArgumentError
        Anything else, a sequence of the wrong length, or a value below ``minimum``.
    """
    if isinstance(value, (list, tuple)):
        if len(value) == n and all(_as_int(v) is not None for v in value):
            return tuple(integer(v, name, owner, minimum) for v in value)
    elif _as_int(value) is not None:
        return (integer(value, name, owner, minimum),) * n
    raise ArgumentError(
        f"{owner} {name} must be an integer{_bounds(minimum, None)} or a list of {n} of them, got "
        f"{_shown(value)}; pass e.g. {name}=3 or {name}={(3,) * n}"
    )
