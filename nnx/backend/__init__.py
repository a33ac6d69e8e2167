"""Choosing where nnx computes, and the only explicit ways to move data there.

``nnx.use(name)`` selects a backend (also as a context manager); without it the
environment variable ``NNX_BACKEND`` decides, and without that, ``numpy``.
Arrays never move implicitly: :func:`to_device` and :func:`to_host` are the
moves, and a computation that meets arrays of two backends raises
:class:`~nnx.errors.BackendMismatchError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from contextvars import ContextVar
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as _device

from nnx.backend.registry import BACKENDS, Backend
from nnx.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    ConfigError,
    DTypeError,
    NonFiniteError,
    UnknownBackendError,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "available",
    "backend_of",
    "backend_of_type",
    "current",
    "device_name",
    "device_of",
    "disable_fast_path",
    "enable_fast_path",
    "fast_path",
    "fast_path_enabled",
    "get",
    "holds_values",
    "lookup",
    "low_dtype",
    "overflow_expected",
    "matmul_precision",
    "names",
    "namespace",
    "namespace_of",
    "register",
    "set_matmul_precision",
    "unregister",
    "to_device",
    "to_host",
    "use",
]

ENV_VAR = "NNX_BACKEND"
DEFAULT = "numpy"
HOST = "numpy"  # the backend of host data: what to_host returns, where lists and NumPy arrays belong
FLOAT_DTYPES = ("float32", "float64")
LOW_DTYPES = ("float16", "bfloat16")  # compute dtypes of a mixed-precision policy (nnx.precision)

_selected: ContextVar[str | None] = ContextVar("nnx_backend", default=None)
_process_choice: list[str | None] = [None]  # the last plain nnx.use(name), seen by every thread


def names() -> list[str]:
    """Every backend name nnx knows, available here or not."""
    return list(BACKENDS)


def lookup(name: str) -> Backend:
    """The record of backend ``name``, whether or not it can run here (:func:`get` also probes it)."""
    try:
        return BACKENDS[name]
    except KeyError:
        valid = ", ".join(BACKENDS)
        raise UnknownBackendError(
            f"unknown backend {name!r}; valid names are: {valid}"
        ) from None


@lru_cache(maxsize=None)
def _probe(name: str) -> str | None:
    return lookup(name).probe()


def available(refresh: bool = False) -> dict[str, str | None]:
    """Map each backend name to ``None`` if it can run here, else the reason it cannot.

    Probes are cached; ``refresh=True`` probes again.
    """
    if refresh:
        _probe.cache_clear()
    return {name: _probe(name) for name in BACKENDS}


def get(name: str) -> Backend:
    """The record of backend ``name``; raises if it is unknown or cannot run here."""
    record = lookup(name)
    reason = _probe(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return record


def current() -> str:
    """The name of the selected backend: the innermost ``with nnx.use(...)`` block of this thread
    or task, else the last plain ``nnx.use(...)`` call of the process, else ``$NNX_BACKEND``,
    else ``numpy``."""
    name = _selected.get() or _process_choice[0]
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or DEFAULT
        lookup(name)
    return name


class use:
    """Select the backend ``name``.

    ``nnx.use("cupy")`` selects it from now on, for the whole process: threads
    started before or after see it too. ``with nnx.use("cupy"): ...`` selects it
    inside the block only, and only for the thread (or asyncio task) running the
    block; the previous choice is back after it.
    """

    def __init__(self, name: str) -> None:
        get(name)
        self.name = name
        self._previous = _process_choice[0]
        _process_choice[0] = name
        self._token = _selected.set(name)

    def __enter__(self) -> str:
        _process_choice[0] = self._previous  # a block selects for its own context only
        return self.name

    def __exit__(self, *exc: object) -> None:
        _selected.reset(self._token)

    def __repr__(self) -> str:
        return f"nnx.use({self.name!r})"


def namespace(name: str | None = None) -> ModuleType:
    """The array-API namespace of backend ``name`` (default: the selected one)."""
    return get(name or current()).namespace()


# Array types map to their backend and namespace once; lookups are then one dict access. The
# namespace cache stays beside array-api-compat's own (an lru_cache by type inside array_namespace):
# array_namespace(x) costs 1.4 us per call on a NumPy array, this cache 0.19 us (Python 3.11,
# array-api-compat 1.16), and layers and ops ask several times per step.
_OWNER_BY_TYPE: dict[type, str] = {}
_NAMESPACE_BY_TYPE: dict[type, ModuleType] = {}


def backend_of(x: Any) -> str:
    """The name of the backend an array belongs to; raises ``TypeError`` for non-arrays."""
    kind = type(x)
    name = _OWNER_BY_TYPE.get(kind)
    if name is not None:
        return name
    # Newest record first, so a registered record may claim a subclass of another's arrays.
    for record in reversed(list(BACKENDS.values())):
        try:
            owned = record.owns(x)
        except Exception:
            owned = False
        if owned:
            _OWNER_BY_TYPE[kind] = record.name
            return record.name
    raise BackendMismatchError(
        f"expected an array of one of the backends {', '.join(BACKENDS)}, got {type(x).__name__}"
    )


def backend_of_type(kind: type) -> str | None:
    """The backend whose arrays have type ``kind``, if an array of it was seen (else ``None``)."""
    return _OWNER_BY_TYPE.get(kind)


_HOLDS_VALUES_BY_TYPE: dict[type, bool] = {}


def holds_values(x: Any) -> bool:
    """Whether ``x`` holds numbers the host can read (``False`` for an array of a record with
    ``holds_values=False``, such as ndonnx's, which records a graph); checks that read values ask it."""
    kind = type(x)
    known = _HOLDS_VALUES_BY_TYPE.get(kind)
    if known is None:
        try:
            known = BACKENDS[backend_of(x)].holds_values
        except BackendMismatchError:
            known = True  # host data (a number, a list): values
        _HOLDS_VALUES_BY_TYPE[kind] = known
    return known


def namespace_of(x: Any) -> ModuleType:
    """The array-API namespace of an array (``array_api_compat.array_namespace``, cached by type);
    :class:`~nnx.errors.DTypeError` for anything that is no array (a list, a number)."""
    kind = type(x)
    xp = _NAMESPACE_BY_TYPE.get(kind)
    if xp is None:
        try:
            xp = array_namespace(x)
        except TypeError:
            raise DTypeError(
                f"expected an array, got {kind.__name__}; layers and losses take arrays of a backend: "
                f"pass nnx.to_device(numpy.asarray(x, dtype='float32')) (nnx.fit, evaluate and predict "
                f"also take NumPy arrays and nested lists)"
            ) from None
        _NAMESPACE_BY_TYPE[kind] = xp
    return xp


def device_of(x: Any) -> Any:
    """The device an array lives on, to create new arrays beside it (``xp.zeros(..., device=...)``)."""
    return _device(x)


def check_backend(x: Any, expected: str, where: str) -> None:
    """Raise :class:`BackendMismatchError` unless ``x`` lives on backend ``expected``."""
    got = backend_of(x)
    if got != expected:
        raise BackendMismatchError(
            f"{where} lives on backend {expected!r} but got an array on {got!r}; "
            f"nnx never moves data implicitly: call nnx.to_device(x, {expected!r}) "
            f"or move the model with model.to({got!r})"
        )


def _is_bfloat16(dtype: Any) -> bool:
    """bfloat16 of any library (NumPy knows none of its own, so it is told by name)."""
    return (dtype if isinstance(dtype, str) else str(dtype)).rsplit(".", 1)[-1] == "bfloat16"


def _host_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, np.dtype):
        return dtype
    if isinstance(dtype, type) and issubclass(dtype, np.generic):  # numpy.float32, the class
        return np.dtype(dtype)
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None)
    name = str(name if isinstance(name, str) else dtype).rsplit(".", 1)[-1]  # "torch.float32": "float32"
    try:
        return np.dtype(name)
    except TypeError:
        raise DTypeError(f"unknown dtype {_unknown_label(dtype)}; use 'float32' or 'float64'") from None


def _unknown_label(dtype: Any) -> str:
    return repr(dtype) if isinstance(dtype, str) else getattr(dtype, "__name__", None) or repr(dtype)


def dtype_label(dtype: Any) -> str:
    """A dtype (name, dtype object of any backend, or a class such as ``numpy.float32``) as a message
    shows it: ``float32`` for whatever means float32, the repr of anything else."""
    try:
        return _host_dtype(dtype).name
    except (DTypeError, TypeError, ValueError):
        return _unknown_label(dtype)


def to_host(x: Any) -> np.ndarray:
    """Copy an array of any backend (or anything NumPy can read) into a new NumPy array.

    Always a copy, on NumPy too, so changing the result never changes a model.
    """
    try:
        name = backend_of(x)
    except BackendMismatchError:
        return _host_array(x)
    return BACKENDS[name].to_host(x)


def _host_array(x: Any) -> np.ndarray:
    """A new NumPy array from host data (a number, a nested list); a clear error for anything else."""
    try:
        host = np.array(x, copy=True)
    except (ValueError, TypeError) as exc:
        raise DTypeError(f"cannot make an array of this {type(x).__name__} ({exc}); pass an array, "
                         f"e.g. nnx.to_device(numpy.asarray(x, dtype='float32'))") from None
    if host.dtype == object:
        raise DTypeError(f"expected an array, a number or a nested list of numbers, got {type(x).__name__} "
                         f"(it makes an array of Python objects); pass an array, e.g. "
                         f"nnx.to_device(numpy.asarray(x, dtype='float32'))")
    return host


def to_device(x: Any, name: str | None = None, dtype: Any = None) -> Any:
    """Move ``x`` onto backend ``name`` (default: the selected one), optionally casting.

    ``x`` may be a NumPy array, a nested list, a number or an array of another
    backend; a 0-d array or a number stays 0-d (shape ``()``). ``dtype`` is a
    dtype name such as ``"float32"``, a dtype object or a class such as ``numpy.float32``.
    Data that makes no numeric array (ragged lists, objects) is a :class:`~nnx.errors.DTypeError`.
    """
    record = get(name or current())
    host = to_host(x)
    if dtype is not None and _is_bfloat16(dtype):  # through float32: the host has no bfloat16
        moved = record.from_host(np.asarray(host.astype(np.float32, copy=False), order="C"))
        return record.namespace().astype(moved, low_dtype(record.name, "bfloat16"))
    if dtype is not None:
        host = host.astype(_host_dtype(dtype), copy=False)
    return record.from_host(np.asarray(host, order="C"))  # not ascontiguousarray: it makes a 0-d array 1-d


def overflow_expected() -> Any:
    """A block in which NumPy does not warn of overflow and invalid values: float16 overflows under
    loss scaling are expected (the scaler skips the step), so the warnings would only be noise."""
    return np.errstate(over="ignore", invalid="ignore")


def low_dtype(name: str, dtype: str) -> Any:
    """The dtype object of the 16-bit float ``dtype`` (``"float16"``, ``"bfloat16"``) on backend ``name``;
    :class:`~nnx.errors.DTypeError` naming what the backend has when it has no such dtype."""
    record = get(name)
    if dtype not in record.low_dtypes:
        has = ", ".join(("float32", "float64", *record.low_dtypes))
        note = f" ({record.low_dtype_note})" if record.low_dtype_note else ""
        raise DTypeError(f"backend {name!r} cannot compute in {dtype}: it has {has}{note}; choose one of "
                         f"{', '.join(record.low_dtypes) or 'float32 (no mixed precision)'} or another backend")
    return getattr(record.namespace(), dtype)


def check_representable(values: Any, dtype: Any, what: str) -> None:
    """Refuse finite ``values`` (any backend) that ``dtype`` cannot hold: they would become ±inf there.
    Free when ``dtype`` is at least as wide as the values' own (nothing to look at).

    Raises
    ------
    NonFiniteError
        Naming ``what``, the largest such value and the dtype's largest finite value.
    """
    own, target = _host_dtype(values.dtype), _host_dtype(dtype)
    if own.kind != "f" or target.kind != "f" or target.itemsize >= own.itemsize or not math.prod(values.shape):
        return
    xp = namespace_of(values)
    limit = float(np.finfo(target).max)
    big = float(xp.max(xp.where(xp.isfinite(values), xp.abs(values), 0.0)))
    if big > limit:
        raise NonFiniteError(f"{what} hold finite values up to {big:.3g}, beyond {target.name}'s largest "
                             f"({limit:.3g}): in {target.name} they would be infinite; rescale them or use "
                             f"float64")


def dtype_name_of(dtype: Any) -> str:
    """A dtype of any backend as a plain name such as ``"float32"``."""
    return "bfloat16" if _is_bfloat16(dtype) else _host_dtype(dtype).name


def dtype_name(x: Any) -> str:
    """The dtype of an array as a plain name such as ``"float32"``."""
    return dtype_name_of(x.dtype)


def enable_fast_path(name: str) -> None:
    """Install backend ``name``'s overrides of :mod:`nnx.ops` (``"cupy"``: fused kernels, opt-in;
    ``"numpy"``: bit-exact with the generic ops and on by default).

    The generic ops stay the reference the overrides are tested against.
    """
    from nnx import ops

    ops.enable(name)


def disable_fast_path(name: str | None = None) -> None:
    """Back to the generic ops for backend ``name`` (every backend with ``None``)."""
    from nnx import ops

    ops.disable(name)


def fast_path_enabled(name: str) -> bool:
    """Whether backend ``name``'s overrides are installed."""
    from nnx import ops

    return ops.enabled(name)


class fast_path:
    """``with nnx.backend.fast_path("cupy"): ...`` — the backend's overrides inside the block only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._was = fast_path_enabled(name)

    def __enter__(self) -> str:
        enable_fast_path(self.name)
        return self.name

    def __exit__(self, *exc: object) -> None:
        if not self._was:
            disable_fast_path(self.name)


def register(record: Backend) -> None:
    """Add a backend record (or replace the record of the same name).

    Records registered later are asked first which arrays they own, so a record
    may claim a subclass of another library's array type.
    """
    if not isinstance(record, Backend):
        raise TypeError(f"register expects an nnx.backend.Backend record, got {type(record).__name__}")
    BACKENDS[record.name] = record
    _forget_caches()


def unregister(name: str) -> Backend:
    """Remove the record ``name`` and return it."""
    record = lookup(name)
    del BACKENDS[name]
    _forget_caches()
    return record


def _forget_caches() -> None:
    _probe.cache_clear()
    _OWNER_BY_TYPE.clear()
    _NAMESPACE_BY_TYPE.clear()
    _HOLDS_VALUES_BY_TYPE.clear()


MATMUL_PRECISIONS = ("highest", "tf32")


def _check_precision(precision: str) -> None:
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul precision must be one of {MATMUL_PRECISIONS}, got {precision!r}")


def matmul_precision(name: str | None = None) -> str:
    """How backend ``name`` (default: the selected one) multiplies float32 matrices.

    ``"highest"``: full float32 (the parity setting); ``"tf32"``: TensorFloat-32
    tensor cores (about 10 mantissa bits, faster on recent NVIDIA GPUs). A
    backend that cannot reduce precision always answers ``"highest"``.
    """
    record = get(name or current())
    return "highest" if record.matmul_precision is None else record.matmul_precision(None)


def device_name(name: str | None = None) -> str:
    """The device backend ``name`` (default: the selected one) computes on, in words."""
    record = get(name or current())
    if record.device_name is not None:
        return record.device_name()
    processor = platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.partition(':')[2].strip()} ({processor} CPU)"
    return f"{platform.processor() or processor} CPU"


def set_matmul_precision(precision: str, name: str | None = None) -> str:
    """Set how backend ``name`` (default: the selected one) multiplies float32; returns the old setting.

    ``nnx.backend.set_matmul_precision("tf32", "cupy")`` turns TF32 on for CuPy;
    ``"highest"`` turns it off (``nnx parity`` always runs with ``"highest"``).
    Asking a backend without reduced-precision matmuls for ``"tf32"`` raises
    :class:`~nnx.errors.ConfigError`: nnx never pretends to honour a setting.
    """
    _check_precision(precision)
    record = get(name or current())
    if record.matmul_precision is None:
        if precision != "highest":
            raise ConfigError(
                f"backend {record.name!r} has no reduced-precision matmul, so {precision!r} cannot be honoured; it "
                f"always computes float32 in full precision (use 'highest')"
            )
        return "highest"
    return record.matmul_precision(precision)
