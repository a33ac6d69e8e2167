"""Opt-in fast paths: backend-specific kernels that stand in for a few generic operations.

The generic code stays the default and the reference. A layer or optimizer asks
:func:`op` for a named operation on an array; it gets ``None`` (then it runs
its generic code) unless :func:`enable` installed a kernel for that array's
type. Each installed kernel computes what the generic code computes, within
floating-point rounding, and tests compare the two.

Operations (arrays in, a new array out unless said otherwise):

* ``relu_forward(x) -> y``, ``relu_backward(y, g) -> dx``
* ``sigmoid_forward(x, cut) -> s``, ``sigmoid_backward(s, g) -> dx``
* ``tanh_backward(y, g) -> dx``
* ``sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov)``: in place on
  ``p`` and ``buf`` (``buf`` is ``None`` without momentum)
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from nnx.errors import BackendUnavailableError, UnknownBackendError

_MODULES = {"cupy": "nnx.backend.cupy_fast"}
_OPS: dict[tuple[str, type], Callable[..., Any]] = {}
_ENABLED: set[str] = set()


def names() -> list[str]:
    """The backends that have a fast path."""
    return list(_MODULES)


def enable(name: str) -> None:
    """Install backend ``name``'s kernels; raises if it has none or cannot run here."""
    from nnx import backend as _backend

    if name not in _MODULES:
        if name not in _backend.names():
            _backend.get(name)  # raises UnknownBackendError with the valid names
        raise UnknownBackendError(
            f"backend {name!r} has no fast path; backends with one: {', '.join(_MODULES)}"
        )
    _backend.get(name)  # raises BackendUnavailableError with the reason
    module = importlib.import_module(_MODULES[name])
    try:
        array_type, ops = module.kernels()
    except Exception as exc:  # a kernel that cannot compile is a reason, not a crash later
        raise BackendUnavailableError(f"the {name} fast path could not start: {exc}") from exc
    for op_name, fn in ops.items():
        _OPS[(op_name, array_type)] = fn
    _ENABLED.add(name)


def disable(name: str | None = None) -> None:
    """Remove backend ``name``'s kernels (every backend's with ``None``): the generic path again."""
    for key in [k for k in _OPS if name is None or _owner(k[1]) == name]:
        del _OPS[key]
    if name is None:
        _ENABLED.clear()
    else:
        _ENABLED.discard(name)


def enabled(name: str) -> bool:
    """Whether backend ``name``'s fast path is installed."""
    return name in _ENABLED


def _owner(array_type: type) -> str:
    module = array_type.__module__.split(".", 1)[0]
    return module


def op(name: str, x: Any) -> Callable[..., Any] | None:
    """The installed kernel ``name`` for arrays like ``x``, or ``None`` (use the generic code)."""
    if not _OPS:
        return None
    return _OPS.get((name, type(x)))


class enabled_for:
    """``with fastpath.enabled_for("cupy"): ...`` — the fast path inside the block only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._was = enabled(name)

    def __enter__(self) -> str:
        enable(self.name)
        return self.name

    def __exit__(self, *exc: object) -> None:
        if not self._was:
            disable(self.name)
