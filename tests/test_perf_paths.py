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


def test_backward_without_input_grad_gives_backward_gradients(nnx_backend: str) -> None:
    x = nnx.to_device(np.random.default_rng(0).normal(size=(4, 5)), nnx_backend, "float64")
    g = nnx.to_device(np.random.default_rng(1).normal(size=(4, 3)), nnx_backend, "float64")
    full, skip = _net(nnx_backend), _net(nnx_backend)
    full.forward(x)
    assert full.backward(g) is not None
    skip.forward(x)
    assert skip.backward(g, input_grad=False) is None
    for a, b in zip(full.parameters(), skip.parameters()):
        np.testing.assert_array_equal(nnx.to_host(a.grad), nnx.to_host(b.grad))
    with pytest.raises(nnx.errors.StateError):
        skip.backward(g, input_grad=False)


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


def _watch_saved(net: nnx.Layer) -> tuple[list, object]:
    seen: list = []

    def record(path: str, layer: nnx.Layer, method: str, arg, result) -> None:
        seen.append((path, arg, layer._saved))

    return seen, net.observe(record)


def test_predict_keeps_nothing_for_backward_and_uses_the_input_as_it_is(nnx_backend: str) -> None:
    net = _net(nnx_backend)
    x = nnx.to_device(np.random.default_rng(3).normal(size=(6, 5)), nnx_backend, "float64")
    seen, watching = _watch_saved(net)
    with watching:
        out = nnx.predict(net, x, batch_size=10)
    assert seen and all(saved is None for _, _, saved in seen)  # nothing kept, layer by layer
    assert next(arg for path, arg, _ in seen if path == "0") is x  # one batch: x itself, no copy
    assert all(m.training for _, m in net.named_modules())
    with pytest.raises(nnx.errors.StateError):
        net.backward(out)
    # the same numbers as a plain forward in evaluation mode
    np.testing.assert_array_equal(nnx.to_host(out), nnx.to_host(net.eval().forward(x)))


def test_predict_batches_are_views_of_the_input() -> None:
    net = _net("numpy")
    x = np.random.default_rng(4).normal(size=(9, 5))
    seen, watching = _watch_saved(net)
    with watching:
        out = nnx.predict(net, x, batch_size=4)
    firsts = [arg for path, arg, _ in seen if path == "0"]
    assert len(firsts) == 3 and all(np.shares_memory(a, x) for a in firsts)
    assert all(saved is None for _, _, saved in seen)
    np.testing.assert_allclose(out, nnx.predict(net, x, batch_size=100), rtol=1e-12)  # BLAS may block rows differently


def test_evaluate_keeps_nothing_and_restores_each_layers_mode(nnx_backend: str) -> None:
    net = _net(nnx_backend)
    net[1].training = False  # a layer frozen in evaluation mode stays so
    x = nnx.to_device(np.random.default_rng(5).normal(size=(6, 5)), nnx_backend, "float64")
    y = nnx.to_device(np.zeros((6, 3)), nnx_backend, "float64")
    seen, watching = _watch_saved(net)
    with watching:
        nnx.evaluate(net, nnx.MSE(), (x, y))
    assert seen and all(saved is None for _, _, saved in seen)
    assert [m.training for _, m in net.named_modules()] == [True, True, False, True, True, True, True]
    with net.inference():
        assert not any(m.training for _, m in net.named_modules())
    net.forward(x)  # outside the block, forwards keep again
    assert net.backward(nnx.to_device(np.ones((6, 3)), nnx_backend, "float64")) is not None
