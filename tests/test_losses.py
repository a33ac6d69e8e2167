"""Classification losses: values against NumPy, stability, targets, dtypes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.losses import BCEWithLogits, BinaryCrossEntropyWithLogits, SoftmaxCrossEntropy


def _dev(nnx_backend: str, values: object, dtype: str | None = "float64") -> object:
    return nnx.to_device(np.asarray(values), nnx_backend, dtype=dtype)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def test_bce_matches_the_textbook_formula(nnx_backend: str) -> None:
    rng = np.random.default_rng(0)
    z, t = rng.normal(0, 2, (6, 3)), rng.uniform(0, 1, (6, 3))
    p = 1 / (1 + np.exp(-z))
    per = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    loss = BinaryCrossEntropyWithLogits()
    assert float(loss(_dev(nnx_backend, z), _dev(nnx_backend, t))) == pytest.approx(per.mean(), rel=1e-13)
    np.testing.assert_allclose(nnx.to_host(loss.backward()), (p - t) / t.size, rtol=1e-12)
    total = BCEWithLogits(reduction="sum")
    assert float(total(_dev(nnx_backend, z), _dev(nnx_backend, t))) == pytest.approx(per.sum(), rel=1e-13)
    np.testing.assert_allclose(nnx.to_host(total.backward()), p - t, rtol=1e-12)


def test_softmax_cross_entropy_matches_numpy(nnx_backend: str) -> None:
    rng = np.random.default_rng(1)
    z, labels = rng.normal(0, 2, (5, 4)), np.array([0, 3, 1, 1, 2])
    onehot = np.eye(4)[labels]
    logp = _log_softmax(z)
    expected = -logp[np.arange(5), labels]
    for target in (_dev(nnx_backend, labels, None), _dev(nnx_backend, onehot)):
        loss = SoftmaxCrossEntropy()
        assert float(loss(_dev(nnx_backend, z), target)) == pytest.approx(expected.mean(), rel=1e-13)
        np.testing.assert_allclose(nnx.to_host(loss.backward()), (np.exp(logp) - onehot) / 5, rtol=1e-12, atol=1e-16)
    total = SoftmaxCrossEntropy(reduction="sum")
    assert float(total(_dev(nnx_backend, z), _dev(nnx_backend, labels, None))) == pytest.approx(expected.sum(), rel=1e-13)


def test_label_smoothing(nnx_backend: str) -> None:
    rng = np.random.default_rng(2)
    z, labels = rng.normal(0, 1, (3, 5)), np.array([4, 0, 2])
    q = 0.9 * np.eye(5)[labels] + 0.1 / 5
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    value = float(loss(_dev(nnx_backend, z), _dev(nnx_backend, labels, None)))
    assert value == pytest.approx(-(q * _log_softmax(z)).sum() / 3, rel=1e-13)
    np.testing.assert_allclose(nnx.to_host(loss.backward()), (np.exp(_log_softmax(z)) - q) / 3, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_at_logits_of_1000(nnx_backend: str, dtype: str) -> None:
    z = _dev(nnx_backend, [[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    bce_t = _dev(nnx_backend, [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        bce = BCEWithLogits(reduction="sum")
        v = bce(z, bce_t)
        g = bce.backward()
        sce = SoftmaxCrossEntropy(reduction="sum")
        w = sce(z, _dev(nnx_backend, [1, 0], None))
        h = sce.backward()
    for a in (v, g, w, h):
        assert nnx.backend.dtype_name(a) == dtype
        assert np.all(np.isfinite(nnx.to_host(a)))
    # per element: 0, 0, log 2 | 1000, 1000, 999
    assert float(v) == pytest.approx(2999 + np.log(2), rel=1e-6)
    # row 0: label 1 sits 2000 below the max; row 1: label 0 sits 2000 below, plus log(1 + e^-1)
    assert float(w) == pytest.approx(4000 + np.log1p(np.exp(-1)), rel=1e-6)
    np.testing.assert_allclose(nnx.to_host(h)[0], [1, -1, 0], atol=1e-6)


def test_float32_targets_and_float32_results(nnx_backend: str) -> None:
    z = _dev(nnx_backend, np.zeros((2, 3)), "float32")
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    assert nnx.backend.dtype_name(loss(z, _dev(nnx_backend, [0, 2], None))) == "float32"
    assert nnx.backend.dtype_name(loss.backward()) == "float32"
    assert float(SoftmaxCrossEntropy()(z, _dev(nnx_backend, [0, 2], "int32"))) == pytest.approx(np.log(3), rel=1e-6)


def test_class_targets_out_of_range(nnx_backend: str) -> None:
    z = _dev(nnx_backend, np.zeros((3, 4)))
    for bad in ([0, 4, 1], [0, -1, 1]):
        with pytest.raises(nnx.errors.TargetError, match=r"\[0, 4\) for 4 classes.*(-1|4)"):
            SoftmaxCrossEntropy()(z, _dev(nnx_backend, bad, None))


def test_wrong_target_shapes_and_kinds(nnx_backend: str) -> None:
    z = _dev(nnx_backend, np.zeros((3, 4)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(3,\).*\(3, 1\)"):
        SoftmaxCrossEntropy()(z, _dev(nnx_backend, [[0], [1], [2]], None))
    with pytest.raises(nnx.errors.ShapeError, match=r"one-hot.*\(3, 4\).*\(3,\)"):
        SoftmaxCrossEntropy()(z, _dev(nnx_backend, [0.0, 1.0, 2.0]))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, classes\)"):
        SoftmaxCrossEntropy()(_dev(nnx_backend, np.zeros(4)), _dev(nnx_backend, [1], None))
    with pytest.raises(nnx.errors.DTypeError, match="floating-point.*int64"):
        SoftmaxCrossEntropy()(_dev(nnx_backend, [[0, 1]], None), _dev(nnx_backend, [1], None))
    with pytest.raises(nnx.errors.DTypeError, match="float32"):
        SoftmaxCrossEntropy()(_dev(nnx_backend, np.zeros((3, 4)), "float32"), _dev(nnx_backend, np.zeros((3, 4))))
    with pytest.raises(nnx.errors.DTypeError, match="floating-point.*int64"):
        BCEWithLogits()(z, _dev(nnx_backend, np.zeros((3, 4)), "int64"))
    with pytest.raises(nnx.errors.ShapeError, match="broadcast"):
        BCEWithLogits()(z, _dev(nnx_backend, np.zeros(4)))


@pytest.mark.parametrize("make", [BCEWithLogits, SoftmaxCrossEntropy, nnx.MSE], ids=lambda c: c.__name__)
def test_nan_is_an_error(nnx_backend: str, make: type) -> None:
    z = np.zeros((2, 3))
    z[1, 1] = np.nan
    target = _dev(nnx_backend, [0, 1], None) if make is SoftmaxCrossEntropy else _dev(nnx_backend, np.zeros((2, 3)))
    with pytest.raises(nnx.errors.NonFiniteError, match=r"finite prediction.*1 NaN"):
        make()(_dev(nnx_backend, z), target)
    if make is not SoftmaxCrossEntropy:
        with pytest.raises(nnx.errors.NonFiniteError, match="finite target"):
            make()(_dev(nnx_backend, np.zeros((2, 3))), _dev(nnx_backend, z))


def test_bad_loss_arguments() -> None:
    with pytest.raises(ValueError, match="reduction"):
        SoftmaxCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match="reduction"):
        BCEWithLogits(reduction="max")
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(label_smoothing=1.0)


def test_a_classifier_learns_end_to_end(nnx_backend: str) -> None:
    """Every new piece in one float32 training loop: it must separate three blobs."""
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, 96)
    x = nnx.to_device(centres[labels] + rng.normal(0, 0.6, (96, 2)), nnx_backend, dtype="float32")
    y = nnx.to_device(labels, nnx_backend)
    model = nnx.Sequential(
        nnx.Linear(2, 16, seed=0), nnx.BatchNorm1d(16), nnx.GELU(), nnx.Dropout(0.1, seed=1),
        nnx.Linear(16, 16, seed=2), nnx.LayerNorm(16), nnx.LeakyReLU(), nnx.Linear(16, 3, seed=3),
    )
    loss = SoftmaxCrossEntropy(label_smoothing=0.05)
    opt = nnx.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    schedule = nnx.optim.CosineWithWarmup(opt, warmup_steps=5, total_steps=60)
    first = None
    for _ in range(60):
        value, _ = nnx.train_step(model, loss, opt, x, y)
        first = float(value) if first is None else first
        schedule.step()
    assert float(value) < 0.5 * first
    model.eval()
    predicted = np.argmax(nnx.to_host(model.forward(x)), axis=1)
    assert (predicted == labels).mean() > 0.9


@pytest.mark.parametrize("bad", [2.0, -0.5, 1.0 + 1e-6])
def test_bce_refuses_targets_outside_0_1(nnx_backend: str, bad: float) -> None:
    pred = nnx.to_device(np.array([[3.0], [-1.0]]), nnx_backend, dtype="float64")
    target = nnx.to_device(np.array([[1.0], [bad]]), nnx_backend, dtype="float64")
    with pytest.raises(nnx.errors.TargetError, match=r"targets in \[0, 1\]"):
        nnx.BinaryCrossEntropyWithLogits().forward(pred, target)
    ok = nnx.to_device(np.array([[1.0], [0.25]]), nnx_backend, dtype="float64")
    assert float(nnx.BinaryCrossEntropyWithLogits().forward(pred, ok)) > 0


def test_fit_checks_bce_targets_once_before_training() -> None:
    model = nnx.Linear(2, 1, seed=0)
    x, t = np.ones((4, 2), dtype=np.float32), np.array([[0.0], [1.0], [2.0], [1.0]], dtype=np.float32)
    before = nnx.to_host(model.weight.data)
    with pytest.raises(nnx.errors.TargetError, match=r"data: .*targets in \[0, 1\]"):
        nnx.fit(model, nnx.BinaryCrossEntropyWithLogits(), nnx.SGD(model.parameters(), lr=0.1), (x, t),
                epochs=1, batch_size=2, progress=False)
    assert (nnx.to_host(model.weight.data) == before).all()  # refused before the first step
