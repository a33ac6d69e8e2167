"""The minimal training step: it learns, and it is the same on every backend."""

from __future__ import annotations

import numpy as np

import nnx


def _net(nnx_backend: str, dtype: str) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(3, 8, seed=0, dtype=dtype, backend=nnx_backend), nnx.Tanh(),
        nnx.Linear(8, 1, seed=1, dtype=dtype, backend=nnx_backend), nnx.Sigmoid(),
    )


def _xor(nnx_backend: str, dtype: str) -> tuple[object, object]:
    x = nnx.to_device([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], nnx_backend, dtype=dtype)
    y = nnx.to_device([[0], [1], [1], [0]], nnx_backend, dtype=dtype)
    return x, y


def _train(nnx_backend: str, dtype: str, steps: int) -> tuple[list[float], list[np.ndarray]]:
    net = _net(nnx_backend, dtype)
    x, y = _xor(nnx_backend, dtype)
    loss, sgd = nnx.MSE(), nnx.SGD(net.parameters(), lr=2.0)
    losses = [float(nnx.train_step(net, loss, sgd, x, y)[0]) for _ in range(steps)]
    return losses, [nnx.to_host(p.data) for p in net.parameters()]


def test_train_step_learns_xor(nnx_backend: str) -> None:
    losses, _ = _train(nnx_backend, "float32", 400)
    assert losses[-1] < 0.2 * losses[0]


def test_float32_stays_float32(nnx_backend: str) -> None:
    net = _net(nnx_backend, "float32")
    x, y = _xor(nnx_backend, "float32")
    value, out = nnx.train_step(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=0.1), x, y)
    assert nnx.backend.dtype_name(out) == "float32"
    assert nnx.backend.dtype_name(value) == "float32"
    for p in net.parameters():
        assert nnx.backend.dtype_name(p.data) == "float32"


def test_cpu_backends_agree_in_float64() -> None:
    ref_losses, ref_params = _train("numpy", "float64", 50)
    losses, params = _train("array_api_strict", "float64", 50)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    for a, b in zip(params, ref_params):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_gradients_accumulate_until_cleared(nnx_backend: str) -> None:
    layer = nnx.Linear(2, 1, seed=0, dtype="float64")
    x = nnx.to_device([[1.0, 2.0]], nnx_backend, dtype="float64")
    g = nnx.to_device([[1.0]], nnx_backend, dtype="float64")
    layer.forward(x)
    layer.backward(g)
    once = nnx.to_host(layer.weight.grad).copy()
    layer.forward(x)
    layer.backward(g)
    np.testing.assert_array_equal(nnx.to_host(layer.weight.grad), 2 * once)
    layer.zero_grad()
    assert layer.weight.grad is None
