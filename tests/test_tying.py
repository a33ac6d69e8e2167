"""Tied and shared parameters: one Parameter in several places. Gradients from every use add up into
its one grad (checked against torch in float64), parameters() and state_dict() list it once, a model
file stores it once and loads back with the same sharing, and a tie of misfitting shapes is refused
when it is made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.errors import DTypeError, ShapeError

V, E = 6, 4


def tied() -> nnx.Sequential:
    emb = nnx.Embedding(V, E, seed=0, dtype="float64")
    return nnx.Sequential(emb, nnx.LayerNorm(E, dtype="float64"),
                          nnx.Linear(E, V, bias=False, weight=emb.weight, dtype="float64"))


def test_tied_gradients_add_up_as_torch_computes_them() -> None:
    torch = pytest.importorskip("torch")
    model = tied()
    idx = np.array([[0, 3, 5], [2, 2, 1]])
    g = np.random.default_rng(0).normal(size=(2, 3, V))
    model.backward(g) if model.forward(idx) is not None else None
    w = torch.tensor(model[0].weight.data, requires_grad=True)
    h = torch.nn.functional.layer_norm(w[torch.tensor(idx)], (E,), eps=1e-5)
    (h @ w.T).backward(torch.tensor(g))
    np.testing.assert_allclose(model[0].weight.grad, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_a_tied_parameter_is_listed_and_saved_once() -> None:
    model = tied()
    assert model.parameters() == [model[0].weight, model[1].weight, model[1].bias]
    assert list(model.state_dict()) == ["0.weight", "1.weight", "1.bias"]
    assert model.tied_parameters() == [("2.weight", "0.weight")]


def test_a_tied_model_saves_each_tensor_once_and_loads_back_tied(tmp_path: Path) -> None:
    model = tied()
    nnx.save(model, tmp_path / "m.nnx")
    assert sorted(nnx.io.read_tensors(tmp_path / "m.nnx").tensors) == ["0.weight", "1.bias", "1.weight"]
    back = nnx.load(tmp_path / "m.nnx")
    assert back[2].weight is back[0].weight
    idx = np.array([[1, 4]])
    np.testing.assert_array_equal(back.forward(idx), model.forward(idx))


def test_a_layer_used_twice_loads_back_sharing_its_parameters(tmp_path: Path) -> None:
    block = nnx.Linear(3, 3, seed=0, dtype="float64")
    model = nnx.Sequential(block, nnx.Tanh(), block)
    nnx.save(model, tmp_path / "m.nnx")
    back = nnx.load(tmp_path / "m.nnx")
    assert back[2].weight is back[0].weight and back[2].bias is back[0].bias
    x = np.random.default_rng(1).normal(size=(2, 3))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_misfitting_ties_are_refused_when_made() -> None:
    emb = nnx.Embedding(V, E, seed=0)
    with pytest.raises(ShapeError, match=r"must have shape \(7, 4\) to be tied"):
        nnx.Linear(E, V + 1, weight=emb.weight)
    head = nnx.Linear(V, E)  # (E, V): the transpose of the embedding's
    with pytest.raises(ShapeError, match=r"Linear.weight must have shape \(4, 6\)"):
        head.weight = emb.weight
    with pytest.raises(DTypeError, match="one dtype"):
        nnx.Linear(E, V, weight=emb.weight, dtype="float64")
    model = nnx.Sequential(emb, nnx.Linear(E, V, bias=False))
    model.tie("1.weight", "0.weight")
    assert model[1].weight is emb.weight
    with pytest.raises(KeyError, match="no parameter '1.bias'"):
        model.tie("1.bias", "0.weight")
