"""GELU's and its gradient's error against a 40-digit mpmath evaluation of the same tanh form.

    python benchmarks/gelu_accuracy.py                      # numpy; --backend torch, array_api_strict
    PYTHONPATH=<another checkout> python benchmarks/gelu_accuracy.py   # that version's GELU

Errors are in units in the last place (ulps) of the dtype at the exact value
(at the smallest subnormal where it underflows). The gradient's error is in
ulps of its local scale ``s + |x s (1-s) 2u'|`` (``s = sigmoid(2u)``): near
x = -0.75 the derivative crosses zero and a relative error means nothing.
``/amp`` divides by ``1 + |2u| (1 - s)``, the factor by which a few ulps of
error in the exponent ``2u`` (rounding of x^2, of the constants) grow in the
result: the best any float evaluation of ``2u`` can do.
"""

from __future__ import annotations

import argparse

import mpmath
import numpy as np

import nnx
from nnx import ops

mpmath.mp.dps = 40
_C, _A = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")


def reference(x: float) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf, mpmath.mpf]:
    """``(gelu, d gelu/dx, scale of the gradient, amplification)`` at ``x``, to 40 digits."""
    x = mpmath.mpf(x)
    z = 2 * _C * (x + _A * x**3)
    s = 1 / (1 + mpmath.exp(-z))
    slope = x * s * (1 - s) * 2 * _C * (1 + 3 * _A * x * x)
    return x * s, s + slope, s + abs(slope), 1 + abs(z) * (1 - s)


def grid() -> np.ndarray:
    """x in [-40, 40]: a dense uniform grid, tiny |x| on a log grid, and the points the issue and the clamp name."""
    tiny = np.logspace(-12, np.log10(40.0), 400)
    named = [-5.39e-10, -0.75, -5.4, -10.0, -21.5, -30.0, 30.0, 29.99, 30.01]
    return np.unique(np.concatenate([np.linspace(-40.0, 40.0, 4001), tiny, -tiny, named]))


def ulps(actual: np.ndarray, exact: list[mpmath.mpf], dtype: np.dtype) -> np.ndarray:
    """``|actual - exact|`` in ulps of ``dtype`` at ``exact`` (rounded to ``dtype``)."""
    unit = np.spacing(np.abs(np.array([float(v) for v in exact]).astype(dtype))).astype(np.float64)
    return np.array([float(abs(mpmath.mpf(float(a)) - e)) for a, e in zip(actual, exact)]) / unit


def errors(backend: str, dtype: str, x_host: np.ndarray) -> dict[str, float]:
    """Max forward and gradient errors (raw and over the amplification) of nnx's GELU on ``backend``."""
    x_host = x_host.astype(dtype)
    refs = [reference(float(v)) for v in x_host]
    x = nnx.to_device(x_host, backend, dtype)
    y = nnx.to_host(ops.gelu(x))
    d = nnx.to_host(ops.gelu_backward(x, nnx.to_device(np.ones_like(x_host), backend, dtype)))
    amp = np.array([float(r[3]) for r in refs])
    ef = ulps(y, [r[0] for r in refs], np.dtype(dtype))
    scale = np.array([float(r[2]) for r in refs]).astype(dtype)
    eb = np.array([float(abs(mpmath.mpf(float(a)) - r[1])) for a, r in zip(d, refs)]) / np.spacing(scale)
    return {"forward": float(ef.max()), "x forward": float(x_host[ef.argmax()]),
            "forward/amp": float((ef / amp).max()), "gradient": float(eb.max()),
            "x gradient": float(x_host[eb.argmax()]), "gradient/amp": float((eb / amp).max()),
            "forward x>=-1": float(ef[x_host >= -1].max())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy")
    args = p.parse_args()
    print("| dtype | forward ulps (at x) | forward / amp | x >= -1 | gradient ulps of scale (at x) | gradient / amp |")
    print("|---|---|---|---|---|---|")
    with np.errstate(all="ignore"):
        for dtype in ("float64", "float32"):
            e = errors(args.backend, dtype, grid())
            print(f"| {dtype} | {e['forward']:.3g} ({e['x forward']:.4g}) | {e['forward/amp']:.3g} | "
                  f"{e['forward x>=-1']:.3g} | {e['gradient']:.3g} ({e['x gradient']:.4g}) | {e['gradient/amp']:.3g} |")


if __name__ == "__main__":
    main()
