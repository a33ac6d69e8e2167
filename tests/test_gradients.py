"""Every layer's and loss's backward against central finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.testing import gradcheck


def _x(backend: str, shape: tuple[int, ...], seed: int = 0) -> object:
    return nnx.to_device(np.random.default_rng(seed).standard_normal(shape), backend, dtype="float64")


LAYERS = {
    "linear": lambda: nnx.Linear(4, 3, seed=1, dtype="float64", bias_init=nnx.init.Normal(0, 1)),
    "linear_nobias": lambda: nnx.Linear(4, 3, bias=False, seed=2, dtype="float64"),
    "sigmoid": nnx.Sigmoid,
    "tanh": nnx.Tanh,
    "relu": nnx.ReLU,
    "sequential": lambda: nnx.Sequential(
        nnx.Linear(4, 5, seed=3, dtype="float64"), nnx.Tanh(),
        nnx.Linear(5, 3, seed=4, dtype="float64"), nnx.Sigmoid(),
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradcheck(backend: str, name: str) -> None:
    layer = LAYERS[name]()
    x = _x(backend, (6, 4))
    if name == "relu":  # keep inputs away from the kink at 0, where the derivative jumps
        host = nnx.to_host(x)
        x = nnx.to_device(np.where(np.abs(host) < 0.05, 0.5, host), backend)
    result = gradcheck(layer, x, tolerance=1e-7)
    assert result.ok, result
    assert set(result.errors) == {"input"} | {n for n, _ in layer.named_parameters()}


@pytest.mark.parametrize(
    "loss", [nnx.MSE(), nnx.MSE(reduction="sum"), nnx.SumSquaredError(), nnx.SumSquaredError(half=True)],
    ids=repr,
)
def test_loss_gradcheck(backend: str, loss: nnx.losses.Loss) -> None:
    result = gradcheck(loss, _x(backend, (5, 3), 1), _x(backend, (5, 3), 2), tolerance=1e-7)
    assert result.ok, result


def test_gradcheck_catches_a_wrong_backward(backend: str) -> None:
    class HalfTanh(nnx.Tanh):
        def backward(self, grad: object) -> object:
            return super().backward(grad) * 0.5

    result = gradcheck(HalfTanh(), _x(backend, (3, 2)))
    assert not result.ok
    assert result.errors["input"] > 0.4


def test_loss_conventions(backend: str) -> None:
    pred, target = _x(backend, (4, 1), 3), _x(backend, (4, 1), 4)
    d = nnx.to_host(pred) - nnx.to_host(target)
    assert float(nnx.MSE()(pred, target)) == pytest.approx(np.mean(d**2), rel=1e-14)
    assert float(nnx.SumSquaredError()(pred, target)) == pytest.approx(np.sum(d**2), rel=1e-14)
    half = nnx.SumSquaredError(half=True)
    assert float(half(pred, target)) == pytest.approx(0.5 * np.sum(d**2), rel=1e-14)
    np.testing.assert_array_equal(nnx.to_host(half.backward()), d)


def test_sigmoid_is_stable_at_extremes(backend: str) -> None:
    for dtype in ("float32", "float64"):
        x = nnx.to_device([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], backend, dtype=dtype)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            s = nnx.to_host(nnx.Sigmoid().forward(x))
        assert s.dtype == np.dtype(dtype)
        assert np.all(np.isfinite(s))
        np.testing.assert_allclose(s[0, 2:], [0.5, 1.0, 1.0])
        assert 0 <= s[0, 0] < np.finfo(dtype).tiny and 0 <= s[0, 1] < 1e-38
