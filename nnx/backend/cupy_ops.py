"""CuPy overrides of ops in :mod:`nnx.ops`: fused elementwise kernels, one launch each.

Opt-in (``nnx.backend.enable_fast_path("cupy")``); the generic ops stay the
default and the reference these are tested against. Each function here has
exactly its op's signature. Importing this module needs no GPU: CuPy is
imported, and the kernels compiled, on first use.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from nnx import ops

# No fused multiply-add contraction: each kernel then rounds exactly as the generic
# operations it replaces (1 - y*y near |y| = 1 would otherwise differ in many ulps).
_EXACT = ("--fmad=false",)


@lru_cache(maxsize=None)
def _kernels() -> SimpleNamespace:
    import cupy as cp

    def kernel(params: str, out: str, body: str, name: str) -> Any:
        return cp.ElementwiseKernel(params, out, body, name, options=_EXACT)

    return SimpleNamespace(
        cp=cp,
        relu=kernel("T x", "T y", "y = (x > (T)0 || x != x) ? x : (T)0", "nnx_relu"),  # NaN stays NaN
        relu_backward=kernel("T y, T g", "T d", "d = y > (T)0 ? g : (T)0", "nnx_relu_backward"),
        # NaN compares false with everything: keep it (the generic maximum propagates NaN)
        sigmoid=kernel("T x, T cut", "T s", "s = (T)1 / ((T)1 + exp(-((x != x || x > -cut) ? x : -cut)))",
                       "nnx_sigmoid"),
        sigmoid_backward=kernel("T s, T g", "T d", "d = g * (s * ((T)1 - s))", "nnx_sigmoid_backward"),
        tanh_backward=kernel("T y, T g", "T d", "d = g * ((T)1 - y * y)", "nnx_tanh_backward"),
        sgd_plain=kernel("T g, T lr, T wd", "T p", "p -= lr * (wd != (T)0 ? g + wd * p : g)", "nnx_sgd_plain"),
        sgd_momentum=kernel(
            "T g, T lr, T mu, T wd, bool nesterov",
            "T p, T b",
            """
            T gg = wd != (T)0 ? g + wd * p : g;
            b = mu * b + gg;
            p -= lr * (nesterov ? gg + mu * b : b);
            """,
            "nnx_sgd_momentum",
        ),
    )


# enabling compiles the kernels: one that cannot compile stops the fast path from starting
override = ops.Overrides(lambda: _kernels().cp.ndarray)


@override(ops.relu)
def relu(x: Any) -> Any:
    return _kernels().relu(x)


@override(ops.relu_backward)
def relu_backward(y: Any, grad: Any) -> Any:
    return _kernels().relu_backward(y, grad)


@override(ops.sigmoid)
def sigmoid(x: Any) -> Any:
    return _kernels().sigmoid(x, x.dtype.type(ops.sigmoid_cut(x)))


@override(ops.sigmoid_backward)
def sigmoid_backward(s: Any, grad: Any) -> Any:
    return _kernels().sigmoid_backward(s, grad)


@override(ops.tanh_backward)
def tanh_backward(y: Any, grad: Any) -> Any:
    return _kernels().tanh_backward(y, grad)


@override(ops.sgd_update)
def sgd_update(
    p: Any, grad: Any, momentum_buffer: Any, lr: float, momentum: float, weight_decay: float, nesterov: bool
) -> tuple[Any, Any]:
    if momentum and momentum_buffer is None:  # the first step copies the gradient into the buffer
        return ops.sgd_update.generic(p, grad, momentum_buffer, lr, momentum, weight_decay, nesterov)
    k, t = _kernels(), p.dtype.type
    if not momentum:
        k.sgd_plain(grad, t(lr), t(weight_decay), p)
        return p, None
    k.sgd_momentum(grad, t(lr), t(momentum), t(weight_decay), bool(nesterov), p, momentum_buffer)
    return p, momentum_buffer
