"""The elementwise work of layers and optimizers, written once against the array API.

Each op here is the generic implementation and the reference. A backend may
register a faster override for its array type: its record names an
:class:`Overrides`, filled by ``@override(ops.<op>)`` in
``nnx/backend/<name>_ops.py``, which :func:`enable` installs
(``nnx.backend.enable_fast_path`` and ``disable_fast_path`` switch it). The
override must take the same arguments and compute the same values, and
``tests/test_ops.py`` checks both on inputs with NaN, infinities and signed
zeros. NumPy's overrides compute the generic ops' values bit for bit and are
on by default; CuPy's fused kernels are opt-in. Layers call the op; they
never ask which backend they run on.

Optimizer updates return the arrays they computed (they may also have
updated them in place, where the backend allows it); callers store the
returned arrays, so a backend whose arrays are immutable still trains right.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Callable, TypeVar

from nnx import backend as _backend
from nnx.backend import namespace_of
from nnx.backend.registry import load
from nnx.errors import BackendUnavailableError, UnknownBackendError

F = TypeVar("F", bound=Callable[..., Any])

# op name -> generic implementation
GENERIC: dict[str, Callable[..., Any]] = {}
# op name -> {array type -> override}
_OVERRIDES: dict[str, dict[type, Callable[..., Any]]] = {}
# backend name -> the array type its installed overrides serve
_ENABLED: dict[str, type] = {}


def op(fn: F) -> F:
    """Make ``fn`` an op: calls go to the override registered for the first argument's type, if any.

    The op keeps the generic implementation as ``.generic``, where an override's guard falls back.
    """
    name = fn.__name__
    GENERIC[name] = fn
    table = _OVERRIDES[name] = {}

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        if table:
            override = table.get(type(args[0]))
            if override is not None:
                return override(*args, **kwargs)
        return fn(*args, **kwargs)

    dispatch.__name__, dispatch.__qualname__, dispatch.__doc__ = name, fn.__qualname__, fn.__doc__
    dispatch.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    dispatch.generic = fn  # type: ignore[attr-defined]
    return dispatch  # type: ignore[return-value]


def _check_signature(name: str, fn: Callable[..., Any]) -> None:
    if name not in GENERIC:
        raise KeyError(f"no op named {name!r}; ops are: {', '.join(sorted(GENERIC))}")
    if inspect.signature(fn) != inspect.signature(GENERIC[name]):
        raise TypeError(
            f"override of {name} has signature {inspect.signature(fn)}, the op has "
            f"{inspect.signature(GENERIC[name])}"
        )


class Overrides:
    """One backend's faster forms of ops, collected by decorating them and installed by :func:`enable`.

    ``array_type()`` returns the array type they serve; :func:`enable` calls it, so it may import
    the library and compile kernels (a failure there is a reason the fast path cannot start).
    A backend's record names its ``Overrides`` (``Backend.op_overrides``).
    """

    def __init__(self, array_type: Callable[[], type]) -> None:
        self.array_type = array_type
        self.by_op: dict[str, Callable[..., Any]] = {}

    def __call__(self, of: Callable[..., Any]) -> Callable[[F], F]:
        """Decorator: ``@override(ops.gelu)`` makes the function the override of ``ops.gelu``.

        The function must take exactly the op's parameters (a ``TypeError`` otherwise); where its
        fast path does not apply it falls back through the op: ``return ops.gelu.generic(x)``.
        """
        generic = getattr(of, "generic", None)
        if generic is None or GENERIC.get(of.__name__) is not generic:
            raise TypeError(f"expected an op of nnx.ops to override, got {of!r}")

        def register(fn: F) -> F:
            _check_signature(of.__name__, fn)
            self.by_op[of.__name__] = fn
            return fn

        return register


def register_override(name: str, array_type: type, fn: Callable[..., Any]) -> None:
    """Use ``fn`` instead of the generic op ``name`` for arrays of ``array_type``.

    ``fn`` must take exactly the generic op's parameters (same names, order and
    defaults); a different signature is a ``TypeError``.
    """
    _check_signature(name, fn)
    _OVERRIDES[name][array_type] = fn


def remove_override(name: str, array_type: type) -> None:
    """Stop using the override of ``name`` for ``array_type`` (if there is one)."""
    if name in _OVERRIDES:
        _OVERRIDES[name].pop(array_type, None)


def backends_with_overrides() -> list[str]:
    """The backends whose record names overrides."""
    return [record.name for record in _backend.BACKENDS.values() if record.op_overrides is not None]


def overrides_of(backend: str) -> Overrides:
    """Backend ``backend``'s overrides (importing them needs no GPU); raises if it has none."""
    record = _backend.lookup(backend)  # raises UnknownBackendError with the valid names
    if record.op_overrides is None:
        raise UnknownBackendError(
            f"backend {backend!r} has no fast path; backends with one: {', '.join(backends_with_overrides())}"
        )
    return load(record.op_overrides)


def enable(backend: str) -> None:
    """Install backend ``backend``'s overrides; raises if it has none or cannot run here."""
    overrides = overrides_of(backend)
    _backend.get(backend)  # raises BackendUnavailableError with the reason
    try:
        array_type = overrides.array_type()
    except Exception as exc:  # a kernel that cannot compile is a reason, not a crash later
        raise BackendUnavailableError(f"the {backend} fast path could not start: {exc}") from exc
    for name, fn in overrides.by_op.items():
        register_override(name, array_type, fn)
    _ENABLED[backend] = array_type


def disable(backend: str | None = None) -> None:
    """Remove backend ``backend``'s overrides (every backend's with ``None``): the generic ops again."""
    names = list(_ENABLED) if backend is None else [backend]
    for name in names:
        array_type = _ENABLED.pop(name, None)
        for table in _OVERRIDES.values():
            table.pop(array_type, None)


def enabled(backend: str) -> bool:
    """Whether backend ``backend``'s overrides are installed."""
    return backend in _ENABLED


# checks ------------------------------------------------------------------------------


@op
def all_finite(*arrays: Any) -> bool:
    """Whether every element of every array is finite (no NaN, no ±inf): one device-to-host read
    for all of them."""
    xp = namespace_of(arrays[0])
    ok = xp.all(xp.isfinite(arrays[0]))
    for a in arrays[1:]:
        ok = ok & xp.all(xp.isfinite(a))
    return bool(ok)


# activations ------------------------------------------------------------------------

# exp(-x) overflows for x below about -709 (float64), -88.7 (float32 and bfloat16) or -11.1 (float16):
# the log of the dtype's largest number, rounded down. Clamping x at these cuts keeps the textbook
# 1/(1+exp(-x)) bit-exact above them and, below them, returns 1/(1+exp(cut)), which is within the
# smallest normal number of the true value (whose magnitude is already below it).
_CUTS: dict[Any, float] = {}


def sigmoid_cut(x: Any) -> float:
    """Where :func:`sigmoid` clamps ``-x`` for ``x``'s dtype (11 for float16, 88 for float32 and bfloat16,
    709 for float64)."""
    key = (type(x.dtype), x.dtype)  # dtypes of different libraries must never be compared
    cut = _CUTS.get(key)
    if cut is None:
        cut = _CUTS[key] = float(math.floor(math.log(float(namespace_of(x).finfo(x.dtype).max))))
    return cut


_NARROW: dict[Any, bool] = {}


def _in_float32(x: Any) -> Any:
    """``x`` in float32 when its dtype is narrower (float16, bfloat16), else ``None``: what a
    normalising sum needs (mixed precision, :mod:`nnx.precision`)."""
    key = (type(x.dtype), x.dtype)
    narrow = _NARROW.get(key)
    xp = namespace_of(x)
    if narrow is None:
        narrow = _NARROW[key] = xp.finfo(x.dtype).bits < 32
    return xp.astype(x, xp.float32) if narrow else None


@op
def sigmoid(x: Any) -> Any:
    """``1/(1+exp(-x))`` without overflow for any ``x`` (NaN stays NaN).

    Three arrays instead of five: negation by ``*= -1`` and ``+= 1`` happen in
    place and round exactly as the textbook expression does.
    """
    xp = namespace_of(x)
    e = xp.maximum(x, -sigmoid_cut(x))
    e *= -1
    e = xp.exp(e)
    e += 1
    return 1 / e


@op
def sigmoid_backward(s: Any, grad: Any) -> Any:
    """``grad * s * (1 - s)`` from the sigmoid's output ``s``, one array instead of three."""
    d = 1 - s
    d *= s
    d *= grad
    return d


@op
def tanh(x: Any) -> Any:
    """The hyperbolic tangent."""
    return namespace_of(x).tanh(x)


@op
def tanh_backward(y: Any, grad: Any) -> Any:
    """``grad * (1 - y*y)`` from the output ``y``; ``-a + 1`` rounds as ``1 - a``."""
    d = y * y
    d *= -1
    d += 1
    d *= grad
    return d


@op
def relu(x: Any) -> Any:
    """``max(x, 0)``; NaN stays NaN, so a later check still sees it."""
    return namespace_of(x).maximum(x, 0.0)


@op
def relu_backward(y: Any, grad: Any) -> Any:
    """``grad`` where the output ``y > 0`` (exactly where the input was), else 0."""
    return namespace_of(y).where(y > 0, grad, 0.0)


@op
def leaky_relu(x: Any, negative_slope: float) -> Any:
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    return namespace_of(x).where(x > 0, x, x * negative_slope)


@op
def leaky_relu_backward(x: Any, grad: Any, negative_slope: float) -> Any:
    """``grad`` where the input ``x > 0``, else ``negative_slope * grad``."""
    return namespace_of(x).where(x > 0, grad, grad * negative_slope)


GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715
# beyond |x| = 30 the exponent below is under -1900: exp gives exactly 0 in every float dtype, so
# sigmoid(2u) is exactly 1 (x > 0) or 0 (x < 0); clamping there keeps x^2 from overflowing.
GELU_CUT = 30.0


def _gelu_parts(x: Any) -> tuple[Any, Any, Any, Any]:
    """``(xn, x2, e, num)``: ``sigmoid(2u) = num / (1 + e)`` with ``e = exp(-2|u|)`` never overflowing.

    ``u = c (x + a x^3)``; ``xn`` is ``x`` clamped at ``-GELU_CUT`` (so ``-inf`` gives 0, not NaN),
    ``x2`` the clamped ``x^2``, and ``num`` is 1 where ``x >= 0`` and ``e`` elsewhere. Nothing here
    subtracts, so the negative tail keeps its relative accuracy down to where it underflows.
    """
    xp = namespace_of(x)
    xn = xp.maximum(x, -GELU_CUT)
    xa = xp.minimum(xp.abs(xn), GELU_CUT)
    x2 = xa * xa
    e = x2 * GELU_A
    e += 1
    e *= xa
    e *= -2 * GELU_C
    e = xp.exp(e)
    num = xp.maximum(e, xp.astype(x >= 0, x.dtype))
    return xn, x2, e, num


@op
def gelu(x: Any) -> Any:
    """GELU, tanh form: ``x/2 (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``, as ``x sigmoid(2u)``.

    The sigmoid form is the same function without the cancellation of ``1 + tanh(u)`` for negative
    ``x``; below ``-GELU_CUT`` (where the value is far below the smallest float) it returns ``-0.0``.
    """
    xn, _, e, num = _gelu_parts(x)
    e += 1
    y = num / e
    y *= xn
    return y


@op
def gelu_backward(x: Any, grad: Any) -> Any:
    """``grad`` times d GELU/dx: ``s + x s (1 - s) 2u'`` with ``s = sigmoid(2u)``, ``s (1 - s) = e/(1 + e)^2``."""
    xn, x2, e, num = _gelu_parts(x)
    d = 1 + e
    w = e / d
    x2 *= 3 * GELU_A
    x2 += 1
    x2 *= 2 * GELU_C  # 2u' = 2c (1 + 3a x^2)
    w *= x2
    w *= xn
    w += num
    w /= d
    return grad * w


@op
def silu(x: Any) -> Any:
    """SiLU (swish): ``x * sigmoid(x)``, with :func:`sigmoid`'s overflow-free form."""
    return x * sigmoid(x)


@op
def silu_backward(x: Any, grad: Any) -> Any:
    """``grad`` times d SiLU/dx ``= s (1 + x (1 - s))`` with ``s = sigmoid(x)``, from the input ``x``."""
    s = sigmoid(x)
    d = 1 - s
    d *= x
    d += 1
    d *= s
    d *= grad
    return d


@op
def softmax(x: Any, axis: int) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis``, shifted by the maximum (no overflow).

    A float16 or bfloat16 ``x`` is computed in float32 and the result rounded back once.
    """
    xp = namespace_of(x)
    wide = _in_float32(x)
    if wide is not None:
        return xp.astype(softmax(wide, axis), x.dtype)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    e /= xp.sum(e, axis=axis, keepdims=True)
    return e


@op
def softmax_backward(y: Any, grad: Any, axis: int) -> Any:
    """``y * (grad - sum(grad * y))`` along ``axis``, from the softmax's output ``y`` (in float32 for
    float16 or bfloat16 arrays, as :func:`softmax`)."""
    xp = namespace_of(y)
    wide = _in_float32(y)
    if wide is not None:
        return xp.astype(softmax_backward(wide, xp.astype(grad, xp.float32), axis), y.dtype)
    g = grad - xp.sum(grad * y, axis=axis, keepdims=True)
    g *= y
    return g


# windows of a convolution ---------------------------------------------------------------


@op
def shifted_matmul(w: Any, x: Any, offsets: tuple[int, ...], n: int) -> Any:
    """``sum over k of w[k] @ x[..., offsets[k]:offsets[k] + n]``, the sum in the order of ``offsets``.

    A stride-1 correlation along ``x``'s flattened last axis (:class:`nnx.layers.windows.Runs`):
    ``w`` is ``(kernel positions, ..., M, C)``, ``x`` is ``(..., C, length)`` and the result
    ``(..., M, n)``. Each kernel offset is one matrix product with a shifted view of ``x``, so the
    windows are never copied out (the matrix product reads the view directly).
    """
    y = w[0, ...] @ x[..., offsets[0]:offsets[0] + n]
    for k in range(1, len(offsets)):
        y += w[k, ...] @ x[..., offsets[k]:offsets[k] + n]
    return y


# optimizer updates --------------------------------------------------------------------


@op
def sgd_update(
    p: Any, grad: Any, momentum_buffer: Any, lr: float, momentum: float, weight_decay: float, nesterov: bool
) -> tuple[Any, Any]:
    """One SGD step; returns ``(p, momentum_buffer)`` (the buffer is ``None`` without momentum).

    With ``g = grad + weight_decay * p``: ``p - lr * g``; with momentum
    ``b = momentum * b + g`` (``b = g`` when ``momentum_buffer`` is ``None``)
    and ``p - lr * b``, or ``p - lr * (g + momentum * b)`` for Nesterov.
    """
    g = grad + weight_decay * p if weight_decay else grad
    if not momentum:
        p -= lr * g
        return p, None
    b = momentum_buffer
    if b is None:
        b = namespace_of(g).asarray(g, copy=True)
    else:
        b *= momentum
        b += g
    if nesterov:
        p -= lr * (g + momentum * b)
    else:
        p -= lr * b
    return p, b


@op
def adam_update(
    p: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, lr: float, beta1: float, beta2: float, eps: float, step: int
) -> tuple[Any, Any, Any]:
    """One Adam step (step counts from 1); returns ``(p, exp_avg, exp_avg_sq)``.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`` with the bias
    corrections folded into scalars.
    """
    m, v = exp_avg, exp_avg_sq
    m *= beta1
    m += (1.0 - beta1) * grad
    g2 = grad * grad
    g2 *= 1.0 - beta2
    v *= beta2
    v += g2
    denom = namespace_of(v).sqrt(v)
    denom *= 1.0 / math.sqrt(1.0 - beta2**step)
    denom += eps
    update = m / denom
    update *= lr / (1.0 - beta1**step)
    p -= update
    return p, m, v


@op
def lion_update(
    p: Any, grad: Any, exp_avg: Any, lr: float, beta1: float, beta2: float, weight_decay: float
) -> tuple[Any, Any]:
    """One Lion step; returns ``(p, exp_avg)``.

    ``p - lr * (sign(b1 m + (1-b1) g) + weight_decay * p)``, then ``m = b2 m + (1-b2) g``.
    """
    xp = namespace_of(p)
    direction = xp.sign(beta1 * exp_avg + (1.0 - beta1) * grad)
    if weight_decay:
        p *= 1.0 - lr * weight_decay
    p -= lr * direction
    m = exp_avg
    m *= beta2
    m += (1.0 - beta2) * grad
    return p, m


@op
def rmsprop_update(
    p: Any, grad: Any, square_avg: Any, momentum_buffer: Any, lr: float, alpha: float, eps: float, momentum: float
) -> tuple[Any, Any, Any]:
    """One RMSProp step; returns ``(p, square_avg, momentum_buffer)``.

    ``v = alpha v + (1-alpha) g^2``, ``u = g / (sqrt(v) + eps)``; with
    momentum ``b = momentum b + u`` and ``u = b``; then ``p - lr * u``.
    ``momentum_buffer`` (zeros at first) is used only when ``momentum`` is set.
    """
    v = square_avg
    g2 = grad * grad
    g2 *= 1.0 - alpha
    v *= alpha
    v += g2
    denom = namespace_of(v).sqrt(v)
    denom += eps
    update = grad / denom
    b = momentum_buffer
    if momentum:
        b *= momentum
        b += update
        update = b
    p -= lr * update
    return p, v, b


# NNX_HOST_ALLOCATOR=system leaves the allocator of the process as it is
ALLOCATOR_VAR = "NNX_HOST_ALLOCATOR"


def tune_host_allocator(backend: str) -> bool:
    """Run backend ``backend``'s ``host_allocator`` (if it names one and ``$NNX_HOST_ALLOCATOR`` is not
    ``system``); whether the allocator's settings changed."""
    record = _backend.lookup(backend)
    if record.host_allocator is None or os.environ.get(ALLOCATOR_VAR, "").strip().lower() == "system":
        return False
    return bool(load(record.host_allocator)())


for _record in list(_backend.BACKENDS.values()):
    if _record.op_overrides_default:
        enable(_record.name)
        tune_host_allocator(_record.name)


__all__ = [
    "GENERIC",
    "Overrides",
    "adam_update",
    "all_finite",
    "backends_with_overrides",
    "disable",
    "enable",
    "enabled",
    "gelu",
    "gelu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "lion_update",
    "op",
    "overrides_of",
    "register_override",
    "relu",
    "relu_backward",
    "remove_override",
    "rmsprop_update",
    "sgd_update",
    "shifted_matmul",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_cut",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
    "tune_host_allocator",
]
