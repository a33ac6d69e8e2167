"""Losses on (..., C) logits: class targets of the leading shape, ignore_index, per-position weights,
checked against torch in float64 (values and gradients to 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ShapeError, TargetError

torch = pytest.importorskip("torch")
F = torch.nn.functional

B, T, V = 3, 5, 7
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(B, T, V)) * 2
TARGETS = RNG.integers(0, V, size=(B, T))
TARGETS[0, 3:] = -100  # padding
TARGETS[2, 0] = -100
WEIGHTS = RNG.uniform(0, 2, size=(B, T))


def _torch(logits, targets, reduction="mean", weight=None, **kw):
    z = torch.tensor(logits, requires_grad=True)
    t = torch.tensor(targets)
    if weight is None:
        loss = F.cross_entropy(z.reshape(-1, V), t.reshape(-1), reduction=reduction, **kw)
    else:
        per = F.cross_entropy(z.reshape(-1, V), t.reshape(-1), reduction="none", **kw)
        w = torch.tensor(weight).reshape(-1) * (t.reshape(-1) != kw.get("ignore_index", -100))
        loss = (w * per).sum() / (w.sum() if reduction == "mean" else 1.0)
    loss.backward()
    return loss.item(), z.grad.numpy()


def _nnx(loss, logits, targets, weight=None):
    value = loss.forward(logits, targets, weight)
    return float(value), loss.backward()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sequence_logits_with_ignore_index_match_torch(reduction: str, smoothing: float) -> None:
    loss = nnx.SoftmaxCrossEntropy(reduction, label_smoothing=smoothing, ignore_index=-100)
    value, grad = _nnx(loss, LOGITS, TARGETS)
    want, want_grad = _torch(LOGITS, TARGETS, reduction, ignore_index=-100, label_smoothing=smoothing)
    assert grad.shape == (B, T, V)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_position_weights_match_torch(reduction: str) -> None:
    loss = nnx.SoftmaxCrossEntropy(reduction, ignore_index=-100)
    value, grad = _nnx(loss, LOGITS, TARGETS, WEIGHTS)
    want, want_grad = _torch(LOGITS, TARGETS, reduction, WEIGHTS, ignore_index=-100)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


def test_without_ignore_index_leading_axes_are_rows() -> None:
    targets = np.where(TARGETS < 0, 1, TARGETS)
    value, grad = _nnx(nnx.SoftmaxCrossEntropy(), LOGITS, targets)
    flat, flat_grad = _nnx(nnx.SoftmaxCrossEntropy(), LOGITS.reshape(-1, V), targets.reshape(-1))
    assert value == flat and np.array_equal(grad.reshape(-1, V), flat_grad)
    want, want_grad = _torch(LOGITS, targets)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


def test_probability_targets_of_any_leading_shape_match_torch() -> None:
    q = RNG.dirichlet(np.ones(V), size=(B, T))
    value, grad = _nnx(nnx.SoftmaxCrossEntropy(), LOGITS, q)
    z = torch.tensor(LOGITS, requires_grad=True)
    want = F.cross_entropy(z.permute(0, 2, 1), torch.tensor(q).permute(0, 2, 1))
    want.backward()
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_nothing_counted_is_loss_zero_not_nan() -> None:
    value, grad = _nnx(nnx.SoftmaxCrossEntropy(ignore_index=0), LOGITS, np.zeros((B, T), dtype=np.int64))
    assert value == 0.0 and not grad.any()


def test_gradcheck_of_the_masked_weighted_loss() -> None:
    loss = nnx.SoftmaxCrossEntropy(ignore_index=-100)
    result = nnx.testing.gradcheck(_Weighted(loss), LOGITS, target=TARGETS)
    assert result.ok, result


class _Weighted(nnx.losses.Loss):
    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, pred, target):
        return self.loss.forward(pred, target, WEIGHTS)

    def backward(self, grad=None):
        return self.loss.backward(grad)


def test_bce_with_logits_weights_match_torch() -> None:
    z = RNG.normal(size=(B, T, 2))
    t = RNG.uniform(size=(B, T, 2))
    w = RNG.uniform(0, 2, size=(B, T, 2))
    loss = nnx.BinaryCrossEntropyWithLogits()
    value, grad = float(loss.forward(z, t, w)), loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    want = F.binary_cross_entropy_with_logits(zt, torch.tensor(t), weight=torch.tensor(w))
    want.backward()
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_bad_targets_and_weights_are_refused() -> None:
    loss = nnx.SoftmaxCrossEntropy(ignore_index=-100)
    with pytest.raises(ShapeError, match=r"class indices of shape \(3, 5\)"):
        loss.forward(LOGITS, TARGETS[:, :4])
    with pytest.raises(TargetError, match="or ignore_index -100"):
        loss.forward(LOGITS, np.where(TARGETS < 0, -1, TARGETS))
    with pytest.raises(ShapeError, match=r"weights of shape \(3, 5\)"):
        loss.forward(LOGITS, TARGETS, WEIGHTS[:, :2])
    with pytest.raises(TargetError, match=">= 0"):
        loss.forward(LOGITS, TARGETS, -WEIGHTS)
    with pytest.raises(nnx.errors.ArgumentError, match="ignore_index"):
        nnx.SoftmaxCrossEntropy(ignore_index=1.5)
