"""Normalisation of integer arguments, shared by every constructor and function that takes one.

An integer argument (a size, a kernel, a stride, a count of epochs) accepts every
integer type: Python's ``int``, NumPy's ``int64`` and friends, a 0-d integer
array — whatever ``operator.index`` accepts — and comes back as a plain ``int``
(so configs stay JSON). Bools, floats (even whole ones such as ``3.0``),
``None`` and strings are refused with the argument's name: a float where a size
belongs is a computation gone wrong, and ``True`` is no size at all.
"""

from __future__ import annotations

import math
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


def boolean(value: Any, name: str, owner: str) -> bool:
    """``value`` as a plain ``bool``: Python's ``True``/``False`` or a NumPy/0-d boolean.

    A string (``'False'`` is truthy), a number or ``None`` is refused: a switch
    read from text or a config must be converted by the caller, not guessed.

    Raises
    ------
    ArgumentError
        Anything but a boolean.
    """
    if isinstance(value, bool):
        return value
    if getattr(getattr(value, "dtype", None), "kind", None) == "b" and getattr(value, "ndim", 1) == 0:
        return bool(value)
    raise ArgumentError(f"{owner} {name} must be True or False, got {_shown(value)}; "
                        f"pass a bool, not a string or a number ({name}=False, not {name}='False')")


def number(value: Any, name: str, owner: str, minimum: float | None = None, maximum: float | None = None,
           *, above: float | None = None) -> float:
    """``value`` as a finite plain ``float`` within bounds (``minimum``/``maximum`` inclusive, ``above``
    exclusive). Any real number type counts; a bool, string, ``None``, NaN or ±inf is refused.

    ``maximum`` is also how a caller states what its arithmetic can hold (a
    tolerance multiplied by a count of steps must stay a finite float).

    Raises
    ------
    ArgumentError
        Not a real number, not finite, or out of bounds.
    """
    real = not isinstance(value, (bool, str, bytes)) and getattr(getattr(value, "dtype", None), "kind", "f") in "iuf"
    try:
        x = float(value) if real and getattr(value, "ndim", 0) == 0 else None
    except (TypeError, ValueError):
        x = None
    bounds = [f"> {above:g}"] if above is not None else []
    bounds += [f">= {minimum:g}"] if minimum is not None else []
    bounds += [f"<= {maximum:g}"] if maximum is not None else []
    if (x is None or not math.isfinite(x) or (above is not None and not x > above)
            or (minimum is not None and x < minimum) or (maximum is not None and x > maximum)):
        wanted = " ".join(["a finite number", " and ".join(bounds)]).rstrip()
        raise ArgumentError(f"{owner} {name} must be {wanted}, got {_shown(value)}; pass a number in that range")
    return x
