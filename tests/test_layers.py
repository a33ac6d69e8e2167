"""Layers beyond Linear: values, modes, buffers, configs, summaries and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nnx


def _x(nnx_backend: str, shape: tuple[int, ...], seed: int = 0, dtype: str = "float64") -> object:
    return nnx.to_device(np.random.default_rng(seed).standard_normal(shape), nnx_backend, dtype=dtype)


def _ones(nnx_backend: str, shape: tuple[int, ...], dtype: str = "float32") -> object:
    return nnx.to_device(np.ones(shape), nnx_backend, dtype=dtype)


def test_activation_values(nnx_backend: str) -> None:
    host = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    x = nnx.to_device(host, nnx_backend, dtype="float64")
    np.testing.assert_array_equal(nnx.to_host(nnx.LeakyReLU(0.1).forward(x)), [[-0.2, -0.05, 0.0, 0.5, 3.0]])
    gelu = nnx.to_host(nnx.GELU().forward(x))[0]
    for v, g in zip(host[0], gelu):
        tanh_form = 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
        assert g == pytest.approx(tanh_form, rel=1e-14, abs=1e-300)
        assert g == pytest.approx(0.5 * v * (1 + math.erf(v / math.sqrt(2))), abs=1e-3)
    sm = nnx.to_host(nnx.Softmax().forward(x))[0]
    e = [math.exp(v) for v in host[0]]
    np.testing.assert_allclose(sm, [v / sum(e) for v in e], rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_are_stable_at_extremes(nnx_backend: str, dtype: str) -> None:
    x = nnx.to_device([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], nnx_backend, dtype=dtype)
    for layer in (nnx.Sigmoid(), nnx.Tanh(), nnx.ReLU(), nnx.LeakyReLU(), nnx.GELU(), nnx.Softmax(),
                  nnx.LayerNorm(5, dtype=dtype)):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = layer.forward(x)
            g = layer.backward(nnx.to_device(np.ones((1, 5)), nnx_backend, dtype=dtype))
        for a in (y, g):
            assert nnx.backend.dtype_name(a) == dtype, layer
            assert np.all(np.isfinite(nnx.to_host(a))), layer
    soft = nnx.to_host(nnx.Softmax().forward(x))
    np.testing.assert_allclose(soft, [[0, 0, 0, 0, 1]], atol=1e-30)


def test_float32_stays_float32_through_every_layer(nnx_backend: str) -> None:
    net = nnx.Sequential(
        nnx.Flatten(), nnx.Linear(6, 8, seed=0), nnx.BatchNorm1d(8), nnx.GELU(), nnx.Dropout(0.2, seed=0),
        nnx.Linear(8, 8, seed=1), nnx.LayerNorm(8), nnx.LeakyReLU(), nnx.Tanh(), nnx.Linear(8, 3, seed=2),
        nnx.Softmax(),
    )
    x = _x(nnx_backend, (4, 2, 3), dtype="float32")
    for mode in (True, False):
        net.train(mode)
        y = net.forward(x)
        g = net.backward(nnx.to_device(np.ones((4, 3)), nnx_backend, dtype="float32"))
        assert nnx.backend.dtype_name(y) == nnx.backend.dtype_name(g) == "float32"
    for _, p in net.named_parameters():
        assert nnx.backend.dtype_name(p.data) == nnx.backend.dtype_name(p.grad) == "float32"
    for _, b in net.named_buffers():
        assert nnx.backend.dtype_name(b) == "float32"


def test_flatten_shapes(nnx_backend: str) -> None:
    f = nnx.Flatten()
    y = f.forward(_x(nnx_backend, (2, 3, 4)))
    assert tuple(y.shape) == (2, 12)
    assert tuple(f.backward(y).shape) == (2, 3, 4)


def test_dropout_train_and_eval(nnx_backend: str) -> None:
    x = _ones(nnx_backend, (200, 50), "float64")
    d = nnx.Dropout(0.25, seed=0)
    y = nnx.to_host(d.forward(x))
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    g = nnx.to_host(d.backward(x))
    np.testing.assert_array_equal(g, y)  # the same mask, the same scale
    d.eval()
    assert d.forward(x) is x
    assert d.backward(x) is x


def _dropout_bn_run(nnx_backend: str) -> list[np.ndarray]:
    net = nnx.Sequential(
        nnx.Linear(5, 6, seed=0, dtype="float64", backend=nnx_backend), nnx.BatchNorm1d(6, momentum=0.3, dtype="float64", backend=nnx_backend),
        nnx.Dropout(0.5, seed=42), nnx.Linear(6, 2, seed=1, dtype="float64", backend=nnx_backend),
    )
    out = []
    for step in range(3):
        x = _x(nnx_backend, (8, 5), step)
        out.append(nnx.to_host(net.forward(x)))
        out.append(nnx.to_host(net.backward(_x(nnx_backend, (8, 2), 10 + step))))
    out += [nnx.to_host(b) for _, b in net.named_buffers()]
    net.eval()
    out.append(nnx.to_host(net.forward(_x(nnx_backend, (8, 5), 99))))
    return out


def test_dropout_and_batchnorm_identical_across_cpu_backends() -> None:
    for a, b in zip(_dropout_bn_run("numpy"), _dropout_bn_run("array_api_strict")):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_statistics(nnx_backend: str) -> None:
    host = np.random.default_rng(3).normal(2.0, 3.0, (10, 4))
    bn = nnx.BatchNorm1d(4, momentum=0.2, eps=1e-5, dtype="float64")
    y = nnx.to_host(bn.forward(nnx.to_device(host, nnx_backend)))
    np.testing.assert_allclose(y, (host - host.mean(0)) / np.sqrt(host.var(0) + 1e-5), rtol=1e-12, atol=1e-12)
    buffers = dict(bn.named_buffers())
    np.testing.assert_allclose(nnx.to_host(buffers["running_mean"]), 0.2 * host.mean(0), rtol=1e-14)
    np.testing.assert_allclose(nnx.to_host(buffers["running_var"]), 0.8 + 0.2 * host.var(0, ddof=1), rtol=1e-14)
    bn.eval()
    y = nnx.to_host(bn.forward(nnx.to_device(host, nnx_backend)))
    rm, rv = 0.2 * host.mean(0), 0.8 + 0.2 * host.var(0, ddof=1)
    np.testing.assert_allclose(y, (host - rm) / np.sqrt(rv + 1e-5), rtol=1e-12)


def test_layernorm_normalises_each_sample(nnx_backend: str) -> None:
    ln = nnx.LayerNorm(6, dtype="float64")
    y = nnx.to_host(ln.forward(_x(nnx_backend, (3, 6)) * 5 + 2))
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: nnx.LayerNorm(4), lambda: nnx.LayerNorm(4, affine=False),
                                  lambda: nnx.RMSNorm(4), lambda: nnx.BatchNorm1d(4)],
                         ids=["LayerNorm", "LayerNorm(affine=False)", "RMSNorm", "BatchNorm1d"])
def test_a_norm_cast_by_to_takes_inputs_of_its_new_dtype(nnx_backend: str, make: object) -> None:
    layer = make().to(nnx_backend, dtype="float64")
    assert nnx.backend.dtype_name(layer.forward(_x(nnx_backend, (3, 4)))) == "float64"
    with pytest.raises(nnx.errors.DTypeError):
        layer.forward(_x(nnx_backend, (3, 4), dtype="float32"))


def test_rmsnorm_and_silu_match_torch_in_float64() -> None:
    torch = pytest.importorskip("torch")
    if not hasattr(torch.nn, "RMSNorm"):
        pytest.skip(f"torch {torch.__version__} has no torch.nn.RMSNorm")
    host = np.random.default_rng(3).standard_normal((2, 3, 5))
    weight = np.random.default_rng(4).uniform(0.5, 1.5, 5)
    grad = np.random.default_rng(5).standard_normal((2, 3, 5))
    ours = nnx.RMSNorm(5, eps=1e-6, dtype="float64", backend="numpy")
    ours.weight.data = weight.copy()
    reference = torch.nn.RMSNorm(5, eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(weight))
    for layer, torch_layer in ((ours, reference), (nnx.SiLU(), torch.nn.SiLU())):
        x = torch.from_numpy(host).requires_grad_(True)
        y = torch_layer(x)
        y.backward(torch.from_numpy(grad))
        np.testing.assert_allclose(layer.forward(host), y.detach().numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.backward(grad), x.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(nnx.to_host(ours.weight.grad), reference.weight.grad.numpy(), rtol=1e-12)


def test_buffers_and_prefixes(nnx_backend: str) -> None:
    net = nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.BatchNorm1d(4), nnx.ReLU(), nnx.BatchNorm1d(4, affine=False))
    assert [n for n, _ in net.named_buffers()] == [
        "1.running_mean", "1.running_var", "3.running_mean", "3.running_var"]
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert list(nnx.ReLU().named_buffers()) == []
    new = nnx.to_device(np.arange(4.0), nnx_backend, dtype="float32")
    net.set_buffer("3.running_var", new)
    np.testing.assert_array_equal(nnx.to_host(dict(net.named_buffers())["3.running_var"]), np.arange(4.0))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(4,\)"):
        net.set_buffer("1.running_mean", nnx.to_device(np.zeros(3), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.DTypeError, match="float32.*float64"):
        net.set_buffer("1.running_mean", nnx.to_device(np.zeros(4), nnx_backend, dtype="float64"))
    other = "numpy" if nnx_backend != "numpy" else "array_api_strict"
    with pytest.raises(nnx.errors.BackendMismatchError):
        net.set_buffer("1.running_mean", nnx.to_device(np.zeros(4), other, dtype="float32"))
    with pytest.raises(KeyError):
        net.set_buffer("0.running_mean", new)
    with pytest.raises(KeyError):
        net.set_buffer("running_mean", new)


def test_to_moves_buffers() -> None:
    net = nnx.Sequential(nnx.Linear(3, 4, seed=0, backend="numpy"), nnx.BatchNorm1d(4, backend="numpy"))
    net.to("array_api_strict")
    for _, b in net.named_buffers():
        assert nnx.backend.backend_of(b) == "array_api_strict"
    net.forward(nnx.to_device(np.ones((2, 3)), "array_api_strict", dtype="float32"))


ALL_LAYERS = [
    nnx.Linear(3, 2, seed=0), nnx.Linear(3, 2, bias=False, dtype="float64"), nnx.ReLU(), nnx.Sigmoid(),
    nnx.Tanh(), nnx.LeakyReLU(0.2), nnx.GELU(), nnx.Softmax(axis=0), nnx.Flatten(), nnx.Dropout(0.3, seed=1),
    nnx.LayerNorm(4, eps=1e-3, affine=False), nnx.BatchNorm1d(4, momentum=0.05, eps=1e-4, dtype="float64"),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=repr)
def test_config_rebuilds_the_architecture(layer: nnx.Layer) -> None:
    config = json.loads(json.dumps(layer.config()))
    again = type(layer)(**config)
    assert again.config() == layer.config()
    assert [(n, p.shape) for n, p in again.named_parameters()] == [(n, p.shape) for n, p in layer.named_parameters()]


def test_summary_and_repr() -> None:
    net = nnx.Sequential(nnx.Flatten(), nnx.Linear(12, 5, seed=0), nnx.BatchNorm1d(5), nnx.ReLU(),
                         nnx.Linear(5, 3, seed=1))
    table = net.summary((8, 3, 4))
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "output", "shape", "params"]
    assert "Flatten()" in lines[2] and "(8, 12)" in lines[2] and lines[2].endswith(" 0")
    assert "Linear(12, 5)" in lines[3] and "(8, 5)" in lines[3] and lines[3].endswith(" 65")
    assert "BatchNorm1d(5" in lines[4] and lines[4].endswith(" 10")
    assert "(8, 3)" in lines[6] and lines[6].endswith(" 18")
    assert lines[-1] == "total parameters: 93"
    assert "(2): BatchNorm1d(5, momentum=0.1, eps=1e-05)" in repr(net)
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 12\).*\(8, 11\)"):
        net.summary((8, 11))


def test_integer_input_is_an_error_for_every_layer(nnx_backend: str) -> None:
    ints = nnx.to_device(np.ones((4, 4), dtype=np.int64), nnx_backend)
    for layer in (nnx.LeakyReLU(), nnx.GELU(), nnx.Softmax(), nnx.Dropout(0.5, seed=0), nnx.LayerNorm(4),
                  nnx.BatchNorm1d(4), nnx.Sequential(nnx.Linear(4, 2, seed=0))):
        with pytest.raises(nnx.errors.DTypeError, match="floating-point.*int64"):
            layer.forward(ints)


def test_wrong_shapes_are_errors(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.ShapeError, match=r"\(\.\.\., 4\).*\(2, 3\)"):
        nnx.LayerNorm(4).forward(_ones(nnx_backend, (2, 3)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 4\).*\(2, 3\)"):
        nnx.BatchNorm1d(4).forward(_ones(nnx_backend, (2, 3)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 4\).*\(2, 3, 4\)"):
        nnx.BatchNorm1d(4).forward(_ones(nnx_backend, (2, 3, 4)))
    with pytest.raises(nnx.errors.ShapeError, match="at least 2 samples"):
        nnx.BatchNorm1d(4).forward(_ones(nnx_backend, (1, 4)))
    nnx.BatchNorm1d(4).eval().forward(_ones(nnx_backend, (1, 4)))  # one sample is fine in evaluation mode
    f = nnx.Flatten()
    f.forward(_ones(nnx_backend, (2, 3, 4)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(2, 12\)"):
        f.backward(_ones(nnx_backend, (2, 3, 4)))
    ln = nnx.LayerNorm(4)
    ln.forward(_ones(nnx_backend, (2, 4)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(2, 4\)"):
        ln.backward(_ones(nnx_backend, (4, 2)))


def test_norm_dtype_mix_is_an_error(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.DTypeError, match="float32.*float64"):
        nnx.BatchNorm1d(3).forward(_ones(nnx_backend, (2, 3), "float64"))
    with pytest.raises(nnx.errors.DTypeError, match="float32.*float64"):
        nnx.LayerNorm(3, affine=False).forward(_ones(nnx_backend, (2, 3), "float64"))


def test_nan_input_is_an_error(nnx_backend: str) -> None:
    host = np.ones((3, 4))
    host[1, 2] = np.nan
    x = nnx.to_device(host, nnx_backend, dtype="float32")
    net = nnx.Sequential(nnx.Linear(4, 2, seed=0), nnx.Sigmoid())
    with pytest.raises(nnx.errors.NonFiniteError, match=r"1 NaN.*\(3, 4\)"):
        net.forward(x)
    old = nnx.set_finite_checks(False)
    try:
        assert np.isnan(nnx.to_host(net.forward(x))).any()  # unchecked: the NaN flows through
    finally:
        nnx.set_finite_checks(old)


def test_bad_constructor_arguments() -> None:
    for make in (lambda: nnx.Dropout(1.0), lambda: nnx.Dropout(-0.1), lambda: nnx.BatchNorm1d(0),
                 lambda: nnx.BatchNorm1d(3, momentum=1.5), lambda: nnx.LayerNorm(3, eps=0),
                 lambda: nnx.LayerNorm(3, dtype="int32"), lambda: nnx.GELU(approximate="none")):
        with pytest.raises(ValueError):
            make()


def test_infinite_input_or_target_is_an_error_and_relu_keeps_nan(nnx_backend: str) -> None:
    host = np.ones((3, 4))
    host[2, 1] = -np.inf
    x = nnx.to_device(host, nnx_backend, dtype="float32")
    with pytest.raises(nnx.errors.NonFiniteError, match=r"1 non-finite value\(s\) \(0 NaN, 1 infinite\)"):
        nnx.Sequential(nnx.Linear(4, 2, seed=0)).forward(x)
    good = nnx.to_device(np.ones((3, 4)), nnx_backend, dtype="float32")
    with pytest.raises(nnx.errors.NonFiniteError, match="finite target"):
        nnx.MSE().forward(good, x)
    with pytest.raises(nnx.errors.NonFiniteError, match="finite prediction"):
        nnx.losses.SoftmaxCrossEntropy().forward(x, nnx.to_device([0, 1, 2], nnx_backend))
    nan = nnx.to_device([[np.nan, -1.0, 2.0]], nnx_backend, dtype="float32")
    assert np.isnan(nnx.to_host(nnx.ReLU().forward(nan))[0, 0])  # a NaN stays visible to later checks


def test_standardize_fits_one_scale_for_all_features_when_asked() -> None:
    x = np.array([[0.0, 0.0, 4.0], [0.0, 2.0, 6.0]])
    pooled = nnx.preprocessing.Standardize(3, dtype="float64").fit(x, per_feature=False)
    assert np.allclose(nnx.to_host(pooled.mean), [x.mean()] * 3) and np.allclose(nnx.to_host(pooled.std), [x.std()] * 3)
    apart = nnx.preprocessing.Standardize(3, dtype="float64").fit(x)
    assert np.allclose(nnx.to_host(apart.std), [1.0, 1.0, 1.0])  # a constant feature gets std 1
    assert np.allclose(nnx.to_host(apart.mean), x.mean(axis=0))
