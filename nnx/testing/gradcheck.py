"""Gradient checks: a layer's or loss's backward against float64 central differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import DTypeError
from nnx.layers import Layer
from nnx.losses import Loss
from nnx.testing.compare import Comparison, compare

RTOL = 1e-6
ATOL = 1e-8


@dataclass
class GradcheckResult:
    """The verdict on each gradient: ``checks[name]`` compares backward (actual) with central
    differences (expected) element by element, ``|a - n| <= atol + rtol * |n|``."""

    checks: dict[str, Comparison]

    @property
    def errors(self) -> dict[str, float]:
        """Each tensor's worst element error as a fraction of its tolerance (above 1 fails)."""
        return {name: c.score for name, c in self.checks.items()}

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def __str__(self) -> str:
        parts = [f"{name}: {'ok' if c.ok else 'FAILED'}, {c.describe()}" for name, c in self.checks.items()]
        return "gradcheck (backward vs central differences)\n  " + "\n  ".join(parts)


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


def _require_float64(x: Any, what: str) -> None:
    if _backend.dtype_name(x) != "float64":
        raise DTypeError(
            f"gradcheck needs float64 {what}, got {_backend.dtype_name(x)}; build layers with "
            f"dtype='float64' and move inputs with nnx.to_device(x, dtype='float64')"
        )


def gradcheck(
    module: Layer | Loss,
    inputs: Any,
    target: Any = None,
    *,
    eps: float = 1e-6,
    rtol: float = RTOL,
    atol: float = ATOL,
    seed: int = 20150101,
    training: bool | None = None,
) -> GradcheckResult:
    """Compare ``module``'s backward with float64 central differences, element by element.

    For a layer, the scalar checked is ``sum(forward(x) * r)`` for a fixed random
    ``r`` drawn from ``seed`` (not a small int by default, so ``r`` is unlikely to
    equal inputs drawn from the same seed, which for a normalisation layer
    makes the checked gradient vanish); for a loss, the loss itself (``target`` is then
    required: a float array, or integer class indices where the loss takes
    them). Inputs and parameters must be float64, except integer inputs (an
    Embedding's indices), which have no gradient: then only the parameters
    are checked. An element agrees when
    ``|backward - numeric| <= atol + rtol * |numeric|``, so a wrong small
    element cannot hide under the tensor's largest one. ``training=True``/``False``
    checks the module in training/evaluation mode (default: its current mode,
    which is restored afterwards either way). Random layers (Dropout) replay the
    same masks for every evaluation, so the function differentiated is fixed;
    buffers (BatchNorm running statistics) are restored afterwards.
    Assert with ``assert r.ok, r``: the message names the worst element.
    """
    integer = _backend.namespace_of(inputs).isdtype(inputs.dtype, "integral")
    if not integer:
        _require_float64(inputs, "inputs")
    x = _backend.to_device(inputs, _backend.backend_of(inputs))

    def judged(analytic: Any, numeric: Any) -> Comparison:
        return compare(_backend.to_host(analytic), numeric, rtol=rtol, atol=atol)

    if isinstance(module, Loss):
        if target is None:
            raise ValueError("gradcheck of a loss needs target=")

        def f() -> float:
            return float(module.forward(x, target))

        f()
        return GradcheckResult({"input": judged(module.backward(), _numeric(f, x, eps))})

    for name, p in module.named_parameters():
        _require_float64(p.data, f"parameter {name}")
    modes = [(m, m.training) for _, m in module.named_modules()]
    buffers = {n: _backend.namespace_of(v).asarray(v, copy=True) for n, v in module.named_buffers()}
    randoms = module.random_states()
    if training is not None:
        module.train(training)

    def forward() -> Any:
        module.set_random_states(randoms)
        return module.forward(x)

    try:
        out = forward()
        module.drop_saved()
        xp = _backend.namespace_of(out)
        r = _backend.to_device(_random.normal(_random.make_rng(seed), tuple(out.shape), 0.0, 1.0),
                               _backend.backend_of(out))
        r = xp.astype(r, out.dtype)

        def g() -> float:
            value = float(xp.sum(forward() * r))
            module.drop_saved()
            return value

        module.zero_grad()
        forward()
        grad_x = module.backward(r)
        analytic = {name: p.grad for name, p in module.named_parameters()}
        checks = {} if integer else {"input": judged(grad_x, _numeric(g, x, eps))}
        for name, p in module.named_parameters():
            checks[name] = judged(analytic[name], _numeric(g, p.data, eps))
    finally:
        for m, mode in modes:
            m.training = mode
        for name, value in buffers.items():
            module.set_buffer(name, value)
        module.set_random_states(randoms)
        module.drop_saved()
    return GradcheckResult(checks)


__all__ = ["GradcheckResult", "gradcheck"]
