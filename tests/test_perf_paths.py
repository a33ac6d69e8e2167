"""The speed-ups keep behaviour: what they skip or reuse changes no number and no error."""

from __future__ import annotations

import numpy as np
import pytest

import nnx


def _net(nnx_backend: str) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(5, 7, seed=0, dtype="float64", backend=nnx_backend), nnx.ReLU(),
        nnx.Linear(7, 6, seed=1, dtype="float64", backend=nnx_backend), nnx.Sigmoid(),
        nnx.Linear(6, 3, seed=2, dtype="float64", backend=nnx_backend), nnx.Tanh(),
    )


def test_backward_params_gives_backward_gradients(nnx_backend: str) -> None:
    x = nnx.to_device(np.random.default_rng(0).normal(size=(4, 5)), nnx_backend, "float64")
    g = nnx.to_device(np.random.default_rng(1).normal(size=(4, 3)), nnx_backend, "float64")
    full, skip = _net(nnx_backend), _net(nnx_backend)
    full.forward(x)
    assert full.backward(g) is not None
    skip.forward(x)
    assert skip.backward_params(g) is None
    for a, b in zip(full.parameters(), skip.parameters()):
        np.testing.assert_array_equal(nnx.to_host(a.grad), nnx.to_host(b.grad))
    with pytest.raises(nnx.errors.StateError):
        skip.backward_params(g)


@pytest.mark.parametrize("layer", [nnx.ReLU, nnx.Sigmoid, nnx.Tanh])
def test_activation_backward_matches_textbook_bitwise(nnx_backend: str, layer) -> None:
    rng = np.random.default_rng(2)
    x_host = rng.normal(scale=3.0, size=(6, 4)).astype(np.float32)
    x_host[0, :2] = 0.0
    g_host = rng.normal(size=(6, 4)).astype(np.float32)
    xp = nnx.backend.namespace(nnx_backend)
    x, g = nnx.to_device(x_host, nnx_backend), nnx.to_device(g_host, nnx_backend)
    act = layer()
    y = act.forward(x)
    dx = nnx.to_host(act.backward(g))
    if layer is nnx.ReLU:  # the textbook forms, in the backend's own arithmetic
        y_ref, d_ref = xp.where(x > 0, x, xp.zeros_like(x)), xp.where(x > 0, g, xp.zeros_like(g))
    elif layer is nnx.Sigmoid:
        y_ref = 1 / (1 + xp.exp(-x))
        d_ref = g * (y_ref * (1 - y_ref))
    else:
        y_ref = xp.tanh(x)
        d_ref = g * (1 - y_ref * y_ref)
    y_ref, d_ref = nnx.to_host(y_ref), nnx.to_host(d_ref)
    np.testing.assert_array_equal(nnx.to_host(y), y_ref)
    np.testing.assert_array_equal(dx, d_ref)
    assert dx.dtype == np.float32


@pytest.mark.parametrize("layer", [nnx.ReLU, nnx.Sigmoid, nnx.Tanh])
def test_activation_backward_refuses_a_float64_gradient_for_float32(nnx_backend: str, layer) -> None:
    act = layer()
    act.forward(nnx.to_device(np.ones((2, 3)), nnx_backend, "float32"))
    with pytest.raises(nnx.errors.DTypeError, match="float32"):
        act.backward(nnx.to_device(np.ones((2, 3)), nnx_backend, "float64"))
