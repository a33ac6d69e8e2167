"""Every layer's and loss's backward against central finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.testing import gradcheck


def _x(nnx_backend: str, shape: tuple[int, ...], seed: int = 0) -> object:
    return nnx.to_device(np.random.default_rng(seed).standard_normal(shape), nnx_backend, dtype="float64")


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


def _away_from_zero(x: object, nnx_backend: str) -> object:
    """Move inputs off the kink at 0, where the derivative of ReLU-like layers jumps."""
    host = nnx.to_host(x)
    return nnx.to_device(np.where(np.abs(host) < 0.05, 0.5, host), nnx_backend)


def _f64(cls: type, *args: object, **kwargs: object) -> object:
    return lambda: cls(*args, dtype="float64", **kwargs)


# name -> (factory, input shape); each is checked in training and in evaluation mode
MORE_LAYERS = {
    "leaky_relu": (lambda: nnx.LeakyReLU(0.1), (6, 4)),
    "gelu": (nnx.GELU, (6, 4)),
    "softmax": (nnx.Softmax, (6, 4)),
    "softmax_axis0": (lambda: nnx.Softmax(axis=0), (6, 4)),
    "flatten": (nnx.Flatten, (3, 2, 2)),
    "dropout": (lambda: nnx.Dropout(0.4, seed=5), (6, 4)),
    "layer_norm": (_f64(nnx.LayerNorm, 4), (6, 4)),
    "layer_norm_3d": (_f64(nnx.LayerNorm, 4, affine=False), (2, 3, 4)),
    "batch_norm": (_f64(nnx.BatchNorm1d, 4), (6, 4)),
    "batch_norm_plain": (_f64(nnx.BatchNorm1d, 4, affine=False), (6, 4)),
    # no bias before BatchNorm1d: in training mode its true gradient is exactly 0
    "mlp": (lambda: nnx.Sequential(
        nnx.Flatten(), nnx.Linear(4, 5, bias=False, seed=3, dtype="float64"), nnx.BatchNorm1d(5, dtype="float64"),
        nnx.GELU(), nnx.Dropout(0.3, seed=1), nnx.Linear(5, 4, seed=4, dtype="float64"),
        nnx.LayerNorm(4, dtype="float64"), nnx.LeakyReLU(), nnx.Linear(4, 3, seed=6, dtype="float64"),
        nnx.Softmax(),
    ), (6, 2, 2)),
}


def _randomise_affine(layer: object, nnx_backend: str) -> None:
    """Norm layers start at weight 1, bias 0; random values check the affine gradients better."""
    rng = np.random.default_rng(7)
    for _, p in layer.named_parameters():
        if p.name in ("weight", "bias") and len(p.shape) == 1:
            p.data = nnx.to_device(rng.uniform(0.5, 1.5, p.shape), nnx_backend, dtype="float64")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(MORE_LAYERS))
def test_more_layers_gradcheck(nnx_backend: str, name: str, training: bool) -> None:
    factory, shape = MORE_LAYERS[name]
    layer = factory()
    _randomise_affine(layer, nnx_backend)
    if any(isinstance(m, nnx.BatchNorm1d) for m in getattr(layer, "layers", [layer])):
        # non-trivial running statistics, so evaluation mode is not the identity
        layer.train().forward(_x(nnx_backend, shape, 11) * 2.0 + 0.5)
    x = _x(nnx_backend, shape)
    if name in ("leaky_relu", "mlp"):
        x = _away_from_zero(x, nnx_backend)
    result = gradcheck(layer, x, training=training)
    assert result.ok, result
    assert set(result.errors) == {"input"} | {n for n, _ in layer.named_parameters()}
    assert layer.training  # gradcheck restores the mode it found


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


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradcheck(nnx_backend: str, name: str, training: bool) -> None:
    layer = LAYERS[name]()
    x = _x(nnx_backend, (6, 4))
    if name == "relu":  # keep inputs away from the kink at 0, where the derivative jumps
        x = _away_from_zero(x, nnx_backend)
    result = gradcheck(layer, x, training=training)
    assert result.ok, result
    assert set(result.errors) == {"input"} | {n for n, _ in layer.named_parameters()}


@pytest.mark.parametrize(
    "loss", [nnx.MSE(), nnx.MSE(reduction="sum"), nnx.SumSquaredError(), nnx.SumSquaredError(half=True)],
    ids=repr,
)
def test_loss_gradcheck(nnx_backend: str, loss: nnx.losses.Loss) -> None:
    result = gradcheck(loss, _x(nnx_backend, (5, 3), 1), _x(nnx_backend, (5, 3), 2))
    assert result.ok, result


def _classes(nnx_backend: str, n: int, c: int, seed: int = 0) -> object:
    return nnx.to_device(np.random.default_rng(seed).integers(0, c, n), nnx_backend)


def _soft(nnx_backend: str, n: int, c: int, seed: int = 0) -> object:
    p = np.random.default_rng(seed).uniform(0.1, 1.0, (n, c))
    return nnx.to_device(p / p.sum(axis=1, keepdims=True), nnx_backend, dtype="float64")


def _unit(nnx_backend: str, shape: tuple[int, ...], seed: int) -> object:
    return nnx.to_device(np.random.default_rng(seed).uniform(0, 1, shape), nnx_backend, dtype="float64")


CLASSIFY_LOSSES = {
    "bce_mean": (nnx.losses.BinaryCrossEntropyWithLogits(), lambda b: _unit(b, (5, 3), 2)),
    "bce_sum": (nnx.losses.BCEWithLogits(reduction="sum"), lambda b: _unit(b, (5, 3), 2)),
    "sce_indices": (nnx.losses.SoftmaxCrossEntropy(), lambda b: _classes(b, 5, 3)),
    "sce_indices_sum": (nnx.losses.SoftmaxCrossEntropy(reduction="sum"), lambda b: _classes(b, 5, 3)),
    "sce_smoothing": (nnx.losses.SoftmaxCrossEntropy(label_smoothing=0.1), lambda b: _classes(b, 5, 3)),
    "sce_soft_targets": (nnx.losses.SoftmaxCrossEntropy(), lambda b: _soft(b, 5, 3)),
    "sce_soft_smoothing": (nnx.losses.SoftmaxCrossEntropy("sum", 0.2), lambda b: _soft(b, 5, 3)),
}


@pytest.mark.parametrize("name", sorted(CLASSIFY_LOSSES))
def test_classification_loss_gradcheck(nnx_backend: str, name: str) -> None:
    loss, target = CLASSIFY_LOSSES[name]
    result = gradcheck(loss, _x(nnx_backend, (5, 3), 1) * 3.0, target(nnx_backend))
    assert result.ok, result


def test_gradcheck_catches_a_wrong_backward(nnx_backend: str) -> None:
    class HalfTanh(nnx.Tanh):
        def backward(self, grad: object) -> object:
            return super().backward(grad) * 0.5

    result = gradcheck(HalfTanh(), _x(nnx_backend, (3, 2)))
    assert not result.ok
    assert result.errors["input"] > 0.4


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
