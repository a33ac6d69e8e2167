"""Testing helpers users can call too: gradient checks against finite differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnx import backend as _backend
from nnx.backend import host
from nnx.layers.base import Layer
from nnx.losses import Loss


@dataclass
class GradcheckResult:
    """The worst element's relative error for the input and each parameter."""

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


def _numeric(f: Any, arr: Any, eps: float) -> Any:
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


def gradcheck(
    module: Layer,
    inputs: Any,
    target: Any = None,
    *,
    eps: float = 1e-6,
    tolerance: float = 1e-6,
    seed: int = 0,
) -> GradcheckResult:
    """Compare ``module``'s backward with float64 central differences.

    For a layer, the scalar checked is ``sum(forward(x) * r)`` for a fixed random
    ``r``; for a loss, the loss itself (``target`` is then required). Inputs and
    parameters must be float64. Returns the worst relative error per tensor;
    raise on failure with ``assert result.ok, result``.
    """
    x = _backend.to_device(inputs, _backend.backend_of(inputs))
    is_loss = isinstance(module, Loss)
    if is_loss and target is None:
        raise ValueError("gradcheck of a loss needs target=")
    if is_loss:
        def f() -> float:
            return float(module.forward(x, target))
        f()
        grad_x = module.backward()
        errors = {"input": _rel_error(grad_x, _numeric(f, x, eps))}
        return GradcheckResult(errors, tolerance)

    out = module.forward(x)
    xp = _backend.namespace_of(out)
    r = _backend.to_device(host.normal(host.make_rng(seed), tuple(out.shape), 0.0, 1.0), _backend.backend_of(out))
    r = xp.astype(r, out.dtype)

    def g() -> float:
        return float(xp.sum(module.forward(x) * r))

    module.zero_grad()
    module.forward(x)
    grad_x = module.backward(r)
    analytic = {name: p.grad for name, p in module.named_parameters()}
    errors = {"input": _rel_error(grad_x, _numeric(g, x, eps))}
    for name, p in module.named_parameters():
        errors[name] = _rel_error(analytic[name], _numeric(g, p.data, eps))
    return GradcheckResult(errors, tolerance)


__all__ = ["GradcheckResult", "gradcheck"]

# Backend parity lives in nnx.parity; re-exported here with the other testing helpers.
from nnx.errors import ParityError  # noqa: E402
from nnx.parity import ParityReport, TensorCheck, assert_close, assert_parity, check_parity  # noqa: E402

__all__ += ["ParityError", "ParityReport", "TensorCheck", "assert_close", "assert_parity", "check_parity"]
