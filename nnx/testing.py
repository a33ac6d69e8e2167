"""Testing helpers users can call too: gradient checks against finite differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from nnx import backend as _backend
from nnx.backend import host
from nnx.errors import DTypeError
from nnx.layers.base import Layer
from nnx.losses import Loss


@dataclass
class GradcheckResult:
    """The worst element's relative error for the input and each parameter.

    For a tensor with analytic gradient ``a`` and numeric gradient ``n`` the
    error is ``max_i |a_i - n_i| / max(max|n|, max|a|)``: the worst element's
    error relative to the tensor's scale (so elements whose true gradient is
    near zero do not turn finite-difference noise into a huge ratio).
    """

    errors: dict[str, float]
    tolerance: float

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"gradcheck worst relative error {self.worst:.2e} (tolerance {self.tolerance:.0e}; {parts})"


def _rel_error(analytic: Any, numeric: Any) -> float:
    a, n = _backend.to_host(analytic), _backend.to_host(numeric)
    scale = max(float(abs(n).max(initial=0.0)), float(abs(a).max(initial=0.0)), 1e-12)
    return float(abs(a - n).max(initial=0.0)) / scale


def _numeric(f: Callable[[], float], arr: Any, eps: float) -> Any:
    """Central differences of scalar ``f()`` with respect to each element of ``arr`` (in place)."""
    flat = _backend.to_host(arr).reshape(-1)
    grad = flat * 0.0
    for i in range(flat.size):
        idx = tuple(int(v) for v in _unravel(i, tuple(arr.shape)))
        orig = float(flat[i])
        arr[idx] = orig + eps
        plus = f()
        arr[idx] = orig - eps
        minus = f()
        arr[idx] = orig
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(tuple(arr.shape))


def _unravel(i: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for d in reversed(shape):
        out.append(i % d)
        i //= d
    return out[::-1]


def _walk(module: Layer) -> Iterator[Layer]:
    yield module
    for child in module.children():
        yield from _walk(child)


def _require_float64(x: Any, what: str) -> None:
    if _backend.dtype_name(x) != "float64":
        raise DTypeError(
            f"gradcheck needs float64 {what}, got {_backend.dtype_name(x)}; build layers with "
            f"dtype='float64' and move inputs with nnx.to_device(x, dtype='float64')"
        )


def gradcheck(
    module: Layer,
    inputs: Any,
    target: Any = None,
    *,
    eps: float = 1e-6,
    tolerance: float = 1e-6,
    seed: int = 20150101,
    training: bool | None = None,
) -> GradcheckResult:
    """Compare ``module``'s backward with float64 central differences.

    For a layer, the scalar checked is ``sum(forward(x) * r)`` for a fixed random
    ``r`` drawn from ``seed`` (not a small int by default, so ``r`` is unlikely to
    equal inputs drawn from the same seed, which for a normalisation layer
    makes the checked gradient vanish); for a loss, the loss itself (``target`` is then
    required: a float array, or integer class indices where the loss takes
    them). Inputs and parameters must be float64. ``training=True``/``False``
    checks the module in training/evaluation mode (default: its current mode,
    which is restored afterwards either way). Random layers (Dropout) replay the
    same masks for every evaluation, so the function differentiated is fixed;
    buffers (BatchNorm running statistics) are restored afterwards.
    Returns the worst relative error per tensor; assert with ``assert r.ok, r``.
    """
    _require_float64(inputs, "inputs")
    x = _backend.to_device(inputs, _backend.backend_of(inputs))
    if isinstance(module, Loss):
        if target is None:
            raise ValueError("gradcheck of a loss needs target=")

        def f() -> float:
            return float(module.forward(x, target))

        f()
        return GradcheckResult({"input": _rel_error(module.backward(), _numeric(f, x, eps))}, tolerance)

    for name, p in module.named_parameters():
        _require_float64(p.data, f"parameter {name}")
    modes = [(m, m.training) for m in _walk(module)]
    buffers = [(m, k, _backend.namespace_of(v).asarray(v, copy=True)) for m in _walk(module) for k, v in m.named_buffers()]
    randoms = [(m, m.random_state()) for m in _walk(module) if hasattr(m, "random_state")]
    if training is not None:
        module.train(training)

    def forward() -> Any:
        for m, state in randoms:
            m.set_random_state(state)
        return module.forward(x)

    try:
        out = forward()
        xp = _backend.namespace_of(out)
        r = _backend.to_device(host.normal(host.make_rng(seed), tuple(out.shape), 0.0, 1.0), _backend.backend_of(out))
        r = xp.astype(r, out.dtype)

        def g() -> float:
            return float(xp.sum(forward() * r))

        module.zero_grad()
        forward()
        grad_x = module.backward(r)
        analytic = {name: p.grad for name, p in module.named_parameters()}
        errors = {"input": _rel_error(grad_x, _numeric(g, x, eps))}
        for name, p in module.named_parameters():
            errors[name] = _rel_error(analytic[name], _numeric(g, p.data, eps))
    finally:
        for m, mode in modes:
            m.training = mode
        for m, k, v in buffers:
            m.set_buffer(k, v)
        for m, state in randoms:
            m.set_random_state(state)
    return GradcheckResult(errors, tolerance)


__all__ = ["GradcheckResult", "gradcheck"]

# Backend parity lives in nnx.parity; re-exported here with the other testing helpers.
from nnx.errors import ParityError  # noqa: E402
from nnx.parity import ParityReport, TensorCheck, assert_close, assert_parity, check_parity  # noqa: E402

__all__ += ["ParityError", "ParityReport", "TensorCheck", "assert_close", "assert_parity", "check_parity"]
