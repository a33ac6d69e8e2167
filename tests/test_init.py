"""Seeded initial weights: identical on every backend, and NumPy's legacy stream reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx

INITS = [
    nnx.init.Uniform(-0.5, 2.0), nnx.init.Normal(0.1, 0.3), nnx.init.XavierUniform(),
    nnx.init.XavierNormal(), nnx.init.HeUniform(), nnx.init.HeNormal(), nnx.init.Constant(0.25),
]


def _available() -> list[str]:
    return [name for name, reason in nnx.available().items() if reason is None]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", INITS, ids=lambda i: type(i).__name__)
def test_same_seed_same_weights_on_every_backend(init: object, dtype: str) -> None:
    weights = {
        name: nnx.to_host(nnx.Linear(7, 5, init=init, seed=42, dtype=dtype, backend=name).weight.data)
        for name in _available()
    }
    assert len(weights) >= 2
    reference = weights["numpy"]
    assert reference.dtype == np.dtype(dtype)
    for name, w in weights.items():
        np.testing.assert_array_equal(w, reference, err_msg=name)


def test_legacy_generator_reproduces_numpy_global_seed(nnx_backend: str) -> None:
    np.random.seed(1)
    syn0 = 2 * np.random.random((3, 4)) - 1
    syn1 = 2 * np.random.random((4, 1)) - 1
    rng = nnx.random.legacy(1)
    l0 = nnx.Linear(3, 4, bias=False, init=nnx.init.Uniform(-1, 1), seed=rng, dtype="float64")
    l1 = nnx.Linear(4, 1, bias=False, init=nnx.init.Uniform(-1, 1), seed=rng, dtype="float64")
    np.testing.assert_array_equal(nnx.to_host(l0.weight.data), syn0.T)  # drawn (in, out), stored (out, in)
    np.testing.assert_array_equal(nnx.to_host(l1.weight.data), syn1.T)


def test_legacy_normal_matches_numpy(nnx_backend: str) -> None:
    np.random.seed(3)
    w = np.random.normal(0, 0.1, (2, 3))
    b = np.random.normal(0, 0.1, (1, 3))
    layer = nnx.Linear(2, 3, init=nnx.init.Normal(0, 0.1), bias_init=nnx.init.Normal(0, 0.1),
                       seed=nnx.random.legacy(3), dtype="float64")
    np.testing.assert_array_equal(nnx.to_host(layer.weight.data), w.T)
    np.testing.assert_array_equal(nnx.to_host(layer.bias.data), b[0])


def test_explicit_initial_values(nnx_backend: str) -> None:
    w = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]  # (out, in)
    layer = nnx.Linear(3, 2, weight=w, bias_value=[0.5, -0.5], dtype="float64")
    np.testing.assert_array_equal(nnx.to_host(layer.weight.data), np.array(w))
    np.testing.assert_array_equal(nnx.to_host(layer.bias.data), [0.5, -0.5])
    with pytest.raises(nnx.errors.ShapeError, match=r"\(2, 3\)"):
        nnx.Linear(3, 2, weight=[[1.0, 2.0]])


def test_default_generator_is_reseedable(nnx_backend: str) -> None:
    nnx.random.seed(7)
    a = nnx.to_host(nnx.Linear(4, 4).weight.data)
    b = nnx.to_host(nnx.Linear(4, 4).weight.data)
    nnx.random.seed(7)
    c = nnx.to_host(nnx.Linear(4, 4).weight.data)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_fan_based_scales() -> None:
    rng = np.random.default_rng(0)
    shape = (400, 300)
    xavier = nnx.init.XavierUniform()(shape, rng)
    assert np.abs(xavier).max() <= math.sqrt(6 / 700)
    assert np.abs(xavier).max() > 0.99 * math.sqrt(6 / 700)
    he = nnx.init.HeNormal()(shape, rng)
    assert he.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    xn = nnx.init.XavierNormal()(shape, rng)
    assert xn.std() == pytest.approx(math.sqrt(2 / 700), rel=0.02)
    hu = nnx.init.HeUniform()(shape, rng)
    assert np.abs(hu).max() <= math.sqrt(6 / 400)


def test_initialiser_names_and_errors() -> None:
    assert isinstance(nnx.init.get("kaiming_normal"), nnx.init.HeNormal)
    with pytest.raises(ValueError, match="he_uniform"):
        nnx.init.get("orthogonal-ish")
    with pytest.raises(ValueError, match="low < high"):
        nnx.init.Uniform(1, 1)
    with pytest.raises(TypeError, match="seed"):
        nnx.Linear(2, 2, seed="seven")
    assert nnx.random.make_rng(None) is nnx.random.default()


def test_fan_based_initialisers_take_the_fans_a_layer_states() -> None:
    shape, rng = (8, 2, 3, 3), np.random.default_rng(0)
    with pytest.raises(nnx.errors.ShapeError, match=r"HeUniform cannot tell the fans of a 4-D shape.*fans="):
        nnx.init.HeUniform()(shape, rng)
    w = nnx.init.HeUniform()(shape, rng, fans=(18, 72))
    assert np.abs(w).max() <= math.sqrt(6 / 18) and np.abs(w).max() > 0.9 * math.sqrt(6 / 18)
    assert np.array_equal(nnx.init.draw("xavier_uniform", (3, 4), np.random.default_rng(1), (3, 4)),
                          nnx.init.XavierUniform()((3, 4), np.random.default_rng(1)))
    # initialisers that use no fans, a user's plain callable among them, are called as init(shape, rng)
    assert nnx.init.draw(lambda s, r: np.full(s, 2.0), (2,), rng, (1, 1)).tolist() == [2.0, 2.0]
