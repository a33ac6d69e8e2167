"""Every layer's and loss's backward against central finite differences, in float64.

The cases are in ``tests/gradcheck_cases.py``: one table for every exported
layer and loss, and a test here fails when one is missing from it.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from gradcheck_cases import LAYERS, LOSSES, inputs, loss_prediction
from nnx.testing import gradcheck


def _x(nnx_backend: str, shape: tuple[int, ...], seed: int = 0) -> object:
    return inputs(nnx_backend, shape, seed)


def _exported(base: type, module: object) -> set[type]:
    return {c for c in (getattr(module, n) for n in module.__all__)
            if isinstance(c, type) and issubclass(c, base) and c is not base}


def test_every_exported_layer_and_loss_has_a_gradcheck_case() -> None:
    layers = {type(case.make()) for case in LAYERS.values()}
    layers |= {cls for case in LAYERS.values() for cls in case.covers}
    losses = {type(loss) for loss, _ in LOSSES.values()}
    missing = (_exported(nnx.Layer, nnx.layers) | _exported(nnx.Layer, nnx)) - layers
    missing |= _exported(nnx.losses.Loss, nnx.losses) - losses
    missing -= {nnx.LayerList, nnx.LayerDict}  # they compute nothing; tests/test_layer_collections.py gradchecks a layer using them
    assert not missing, f"add a case to tests/gradcheck_cases.py for {sorted(c.__name__ for c in missing)}"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradcheck(nnx_backend: str, name: str, training: bool) -> None:
    case = LAYERS[name]
    layer = case.build(nnx_backend)
    result = gradcheck(layer, case.input(nnx_backend), training=training, eps=case.eps)
    assert result.ok, result
    float_input = {"input"} if case.indices is None else set()  # integer indices have no gradient
    assert set(result.checks) == float_input | {n for n, _ in layer.named_parameters()}
    assert layer.training  # gradcheck restores the mode it found


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradcheck(nnx_backend: str, name: str) -> None:
    loss, target = LOSSES[name]
    result = gradcheck(loss, loss_prediction(nnx_backend), target(nnx_backend))
    assert result.ok, result


def test_gradcheck_replays_dropout_masks(nnx_backend: str) -> None:
    layer = nnx.Dropout(0.5, seed=3)
    x = _x(nnx_backend, (4, 5))
    first = nnx.to_host(layer.forward(x))
    layer2 = nnx.Dropout(0.5, seed=3)
    assert gradcheck(layer2, x, training=True).ok
    # gradcheck leaves the generator where it found it
    np.testing.assert_array_equal(nnx.to_host(layer2.forward(x)), first)


def test_gradcheck_restores_buffers(nnx_backend: str) -> None:
    bn = nnx.BatchNorm1d(3, dtype="float64")
    before = [nnx.to_host(v).copy() for _, v in bn.named_buffers()]
    gradcheck(bn, _x(nnx_backend, (5, 3)), training=True)
    for b, (_, v) in zip(before, bn.named_buffers()):
        np.testing.assert_array_equal(nnx.to_host(v), b)


def test_gradcheck_needs_float64(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.DTypeError, match="float64"):
        gradcheck(nnx.Tanh(), nnx.to_device(np.ones((2, 2)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.DTypeError, match="parameter weight"):
        gradcheck(nnx.Linear(2, 2, seed=0), _x(nnx_backend, (2, 2)))


def test_gradcheck_catches_a_wrong_backward(nnx_backend: str) -> None:
    class HalfTanh(nnx.Tanh):
        def backward(self, grad: object) -> object:
            return super().backward(grad) * 0.5

    result = gradcheck(HalfTanh(), _x(nnx_backend, (3, 2)))
    assert not result.ok
    assert result.errors["input"] > 1.0
    assert "input: FAILED" in str(result) and "worst at" in str(result)


def test_gradcheck_judges_each_element(nnx_backend: str) -> None:
    """A wrong small element fails even where the tensor's largest element is a million times larger."""

    class SlightlyWrongTanh(nnx.Tanh):
        def backward(self, grad: object) -> object:
            d = nnx.to_host(super().backward(grad))
            d[0, 0] += 5e-8  # where the true gradient is ~1e-17 (tanh is flat at x = 20)
            return nnx.to_device(d, nnx_backend)

    host = np.random.default_rng(0).standard_normal((3, 2))
    host[0, 0] = 20.0
    result = gradcheck(SlightlyWrongTanh(), nnx.to_device(host, nnx_backend, dtype="float64"))
    assert not result.ok
    assert result.checks["input"].index == (0, 0) and result.checks["input"].mismatched == 1
    assert gradcheck(nnx.Tanh(), nnx.to_device(host, nnx_backend, dtype="float64")).ok


def test_loss_conventions(nnx_backend: str) -> None:
    pred, target = _x(nnx_backend, (4, 1), 3), _x(nnx_backend, (4, 1), 4)
    d = nnx.to_host(pred) - nnx.to_host(target)
    assert float(nnx.MSE()(pred, target)) == pytest.approx(np.mean(d**2), rel=1e-14)
    assert float(nnx.SumSquaredError()(pred, target)) == pytest.approx(np.sum(d**2), rel=1e-14)
    half = nnx.SumSquaredError(half=True)
    assert float(half(pred, target)) == pytest.approx(0.5 * np.sum(d**2), rel=1e-14)
    np.testing.assert_array_equal(nnx.to_host(half.backward()), d)


def test_sigmoid_is_stable_at_extremes(nnx_backend: str) -> None:
    for dtype in ("float32", "float64"):
        x = nnx.to_device([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], nnx_backend, dtype=dtype)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            s = nnx.to_host(nnx.Sigmoid().forward(x))
        assert s.dtype == np.dtype(dtype)
        assert np.all(np.isfinite(s))
        np.testing.assert_allclose(s[0, 2:], [0.5, 1.0, 1.0])
        assert 0 <= s[0, 0] < np.finfo(dtype).tiny and 0 <= s[0, 1] < 1e-38
