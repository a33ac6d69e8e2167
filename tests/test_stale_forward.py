"""No silent gradient from a stale forward: a second training forward before the backward of the first
is refused, a forward inside inference() leaves a pending training forward untouched, and a layer used
twice in one forward gets both backwards (newest first), its gradients adding up."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import StateError


def net() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Tanh(),
                          nnx.Linear(4, 2, seed=1, dtype="float64"))


X1, X2 = np.random.default_rng(0).normal(size=(2, 5, 3))
G = np.random.default_rng(1).normal(size=(5, 2))


def test_a_second_training_forward_before_the_backward_is_refused() -> None:
    model = net()
    model.forward(X1)
    with pytest.raises(StateError, match="called again before the backward"):
        model.forward(X2)
    # the refusal kept the first forward: its backward is x1's gradient
    reference = net()
    reference.forward(X1)
    np.testing.assert_array_equal(model.backward(G), reference.backward(G))


def test_drop_saved_lets_the_next_forward_run() -> None:
    model = net()
    model.forward(X1)
    model.drop_saved()
    model.forward(X2)
    model.backward(G)


def test_a_forward_inside_inference_leaves_the_pending_forward_untouched() -> None:
    model, reference = net(), net()
    model.forward(X1)
    with model.inference():
        model.forward(X2)
    reference.forward(X1)
    np.testing.assert_array_equal(model.backward(G), reference.backward(G))
    for a, b in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(a.grad, b.grad)


def test_a_layer_used_twice_in_one_forward_gets_both_gradients() -> None:
    torch = pytest.importorskip("torch")
    shared = nnx.Linear(3, 3, seed=0, dtype="float64")
    model = nnx.Sequential(shared, nnx.Tanh(), shared)
    x = np.random.default_rng(2).normal(size=(4, 3))
    g = np.random.default_rng(3).normal(size=(4, 3))
    assert len(model.parameters()) == 2
    dx = model.backward(g) if model.forward(x) is not None else None
    w = torch.tensor(shared.weight.data, requires_grad=True)
    b = torch.tensor(shared.bias.data, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.tanh(xt @ w.T + b) @ w.T + b
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(shared.weight.grad, w.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(shared.bias.grad, b.grad.numpy(), rtol=1e-12)


class FailsOnOneRow(nnx.Layer):
    def forward(self, x):
        if x.shape[0] == 1:
            raise nnx.errors.ShapeError("one row")
        return x

    def backward(self, grad):
        return grad


def test_a_failed_forward_keeps_nothing_of_itself() -> None:
    model = nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), FailsOnOneRow(),
                           nnx.Linear(4, 2, seed=1, dtype="float64"))
    with pytest.raises(nnx.errors.ShapeError):
        model.forward(X1[:1])  # the first Linear kept its input before the second layer failed
    model.forward(X1)
    model.backward(G)


def test_in_evaluation_mode_a_forward_replaces_the_pending_one() -> None:
    model, reference = net().eval(), net().eval()
    model.forward(X1)
    model.forward(X2)  # eval(): the newest forward's backward, as documented
    reference.forward(X2)
    np.testing.assert_array_equal(model.backward(G), reference.backward(G))
