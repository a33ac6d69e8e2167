"""nnx.metrics against direct counting, and class predictions and probabilities of a model."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx import metrics
from nnx.preprocessing import ClassLabels, encode_labels


def _labels(seed: int, n: int = 200, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    predicted = np.where(rng.random(n) < 0.7, truth, rng.integers(0, k, n))
    return truth, predicted


def test_confusion_matrix_and_scores_match_direct_counting(nnx_backend: str) -> None:
    truth, predicted = _labels(0)
    t, p = nnx.to_device(truth, nnx_backend), nnx.to_device(predicted, nnx_backend)
    expected = np.zeros((4, 4), dtype=np.int64)
    for a, b in zip(truth, predicted):
        expected[a, b] += 1
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p), expected)
    scores = metrics.precision_recall_f1(t, p)
    for c in range(4):
        tp = np.sum((truth == c) & (predicted == c))
        precision, recall = tp / np.sum(predicted == c), tp / np.sum(truth == c)
        assert scores["precision"][c] == pytest.approx(precision, rel=1e-15)
        assert scores["recall"][c] == pytest.approx(recall, rel=1e-15)
        assert scores["f1"][c] == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-14)
    assert scores["macro_f1"] == pytest.approx(np.mean(scores["f1"]), rel=1e-15)
    assert metrics.accuracy(t, p) == scores["accuracy"] == np.mean(truth == predicted)


def test_absent_and_never_predicted_classes_score_zero_not_nan() -> None:
    scores = metrics.precision_recall_f1([0, 0, 1], [0, 0, 0], classes=3)
    assert scores["precision"].tolist() == [2 / 3, 0.0, 0.0]
    assert scores["recall"].tolist() == [1.0, 0.0, 0.0] and scores["support"].tolist() == [2, 1, 0]
    assert not np.isnan(scores["f1"]).any()


def test_top_k_accuracy(nnx_backend: str) -> None:
    rng = np.random.default_rng(1)
    scores, truth = rng.normal(size=(50, 6)), rng.integers(0, 6, 50)
    ranks = np.argsort(-scores, axis=1)
    for k in (1, 2, 6):
        expected = np.mean([truth[i] in ranks[i, :k] for i in range(50)])
        got = metrics.top_k_accuracy(nnx.to_device(truth, nnx_backend), nnx.to_device(scores, nnx_backend), k)
        assert got == expected
    assert metrics.top_k_accuracy(truth, scores, 1) == metrics.accuracy(truth, scores.argmax(axis=1))


def test_metrics_refuse_bad_input() -> None:
    with pytest.raises(nnx.errors.TargetError, match=r"class numbers must be in \[0, 2\), got 0..5"):
        metrics.confusion_matrix([0, 1], [5, 1], classes=2)
    with pytest.raises(nnx.errors.TargetError, match="1-D array of class numbers"):
        metrics.accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(nnx.errors.ShapeError, match="y_true has 2 samples, y_pred 3"):
        metrics.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(nnx.errors.ArgumentError, match="top_k_accuracy k must be an integer >= 1, got 0"):
        metrics.top_k_accuracy([0], [[1.0]], 0)
    with pytest.raises(nnx.errors.TargetError, match="class numbers must be in"):
        metrics.top_k_accuracy([3], [[1.0, 2.0]], 1)


def test_report_names_the_classes() -> None:
    text = metrics.report([0, 1, 1], [0, 1, 0], ["cat", "dog"])
    assert "cat" in text and "macro avg" in text and "accuracy 0.6667" in text


def test_predict_classes_and_proba_for_each_kind_of_output(nnx_backend: str) -> None:
    x = nnx.to_device(np.random.default_rng(2).normal(size=(7, 3)), nnx_backend, dtype="float64")
    logits = nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"))
    proba = nnx.to_host(nnx.predict_proba(logits, x))
    out = nnx.to_host(nnx.predict(logits, x))
    np.testing.assert_allclose(proba, np.exp(out) / np.exp(out).sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_array_equal(nnx.predict_classes(logits, x), out.argmax(axis=1))

    softmax = nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Softmax())
    np.testing.assert_allclose(nnx.to_host(nnx.predict_proba(softmax, x)), proba, rtol=1e-13)

    one = nnx.Sequential(nnx.Linear(3, 1, seed=1, dtype="float64"), nnx.Sigmoid())
    p = nnx.to_host(nnx.predict(one, x))[:, 0]
    np.testing.assert_allclose(nnx.to_host(nnx.predict_proba(one, x)), np.stack([1 - p, p], axis=1), rtol=1e-15)
    np.testing.assert_array_equal(nnx.predict_classes(one, x), (p > 0.5).astype(np.int64))

    named = nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), ClassLabels(["w", "x", "y", "z"]))
    assert nnx.predict_classes(named, x).tolist() == [["w", "x", "y", "z"][i] for i in out.argmax(axis=1)]


def test_class_labels_check_their_width_and_values() -> None:
    with pytest.raises(nnx.errors.ShapeError, match="one output per class"):
        ClassLabels(["a", "b"]).forward(nnx.to_device(np.zeros((2, 3)), "numpy"))
    with pytest.raises(ValueError, match="repeated labels"):
        ClassLabels([1, 1])
    with pytest.raises(ValueError, match="ints or strings"):
        ClassLabels([1.5, 2.0])
    codes, labels = encode_labels(["b", "a", "b"])
    assert codes.tolist() == [1, 0, 1] and labels == ["a", "b"]


def test_standardize_fits_the_training_data_and_refuses_bad_data(nnx_backend: str) -> None:
    data = np.random.default_rng(3).normal(5.0, 2.0, (40, 3))
    data[:, 2] = 7.0  # a constant feature becomes 0, not NaN
    scale = nnx.preprocessing.Standardize(3, dtype="float64", backend=nnx_backend).fit(data)
    out = nnx.to_host(scale.forward(nnx.to_device(data, nnx_backend, dtype="float64")))
    np.testing.assert_allclose(out[:, :2].mean(axis=0), 0.0, atol=1e-13)
    np.testing.assert_allclose(out[:, :2].std(axis=0), 1.0, rtol=1e-13)
    assert np.all(out[:, 2] == 0.0)
    bad = data.copy()
    bad[3, 1] = np.inf
    with pytest.raises(nnx.errors.NonFiniteError):
        scale.fit(bad)
    with pytest.raises(nnx.errors.ShapeError, match=r"\(samples >= 1, 3\)"):
        scale.fit(data[:, :2])



def test_destandardize_answers_in_the_targets_units_and_survives_a_save(nnx_backend: str, tmp_path) -> None:
    targets = np.random.default_rng(5).normal([100.0, -3.0], [40.0, 0.01], (30, 2))
    targets[:, 1] = -3.0  # a constant target trains on 0 and comes back as itself
    out = nnx.preprocessing.Destandardize(2, names=["price", "tax"], dtype="float64", backend=nnx_backend).fit(targets)
    z = out.standardize(targets)
    np.testing.assert_allclose(z[:, 0].mean(), 0.0, atol=1e-13)
    np.testing.assert_allclose(z[:, 0].std(), 1.0, rtol=1e-13)
    assert np.all(z[:, 1] == 0.0)
    back = nnx.to_host(out.forward(nnx.to_device(z, nnx_backend, dtype="float64")))
    out.drop_saved()  # a forward to read, no backward
    np.testing.assert_allclose(back, targets, rtol=1e-14)
    model = nnx.Sequential(nnx.Linear(2, 2, seed=0, dtype="float64", backend=nnx_backend), out)
    loaded = nnx.load(nnx.save(model, tmp_path / "r.nnx"), backend=nnx_backend)
    assert loaded[1].names == ["price", "tax"]
    x = nnx.to_device(np.ones((3, 2)), nnx_backend, dtype="float64")
    np.testing.assert_array_equal(nnx.to_host(loaded.forward(x)), nnx.to_host(model.forward(x)))
    with pytest.raises(nnx.errors.ShapeError, match=r"training targets of shape \(samples >= 1, 2\)"):
        out.fit(targets[:, 0])
    with pytest.raises(nnx.errors.NonFiniteError, match="training targets"):
        out.fit(np.full((4, 2), np.nan))

def _regression_pair(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(3.0, 2.0, shape)
    return truth, truth + rng.normal(0.0, 0.5, shape)


@pytest.mark.parametrize("shape", [(50,), (50, 3)], ids=["one output", "three outputs"])
def test_regression_scores_match_their_definitions(nnx_backend: str, shape: tuple[int, ...]) -> None:
    truth, predicted = _regression_pair(1, shape)
    t2, p2 = truth.reshape(50, -1), predicted.reshape(50, -1)
    errors = [t2[:, j] - p2[:, j] for j in range(t2.shape[1])]
    expected_rmse = np.mean([np.sqrt(np.sum(e**2) / 50) for e in errors])
    expected_mae = np.mean([np.sum(np.abs(e)) / 50 for e in errors])
    expected_r2 = np.mean([1 - np.sum(e**2) / np.sum((t2[:, j] - t2[:, j].mean())**2) for j, e in enumerate(errors)])
    t, p = nnx.to_device(truth, nnx_backend, dtype="float32"), nnx.to_device(predicted, nnx_backend, dtype="float32")
    scores = metrics.regression_scores(t, p)
    assert scores["rmse"] == pytest.approx(expected_rmse, rel=1e-6)
    assert scores["mae"] == pytest.approx(expected_mae, rel=1e-6)
    assert scores["r2"] == pytest.approx(expected_r2, rel=1e-6)
    exact = metrics.regression_scores(truth, predicted)  # host float64: agrees to rounding
    assert (metrics.rmse(truth, predicted), metrics.mae(truth, predicted), metrics.r2(truth, predicted)) == (
        exact["rmse"], exact["mae"], exact["r2"])
    assert exact["rmse"] == pytest.approx(expected_rmse, rel=1e-13)
    assert exact["r2"] == pytest.approx(expected_r2, rel=1e-13)


def test_regression_scores_of_perfect_and_constant_predictions() -> None:
    truth = np.array([1.0, 2.0, 4.0, 7.0])
    assert metrics.regression_scores(truth, truth) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}
    assert metrics.r2(truth, np.full(4, truth.mean())) == 0.0  # the mean predicts nothing
    assert metrics.r2(truth, np.full(4, 0.0)) == pytest.approx(1 - np.sum(truth**2) / np.sum((truth - 3.5)**2))
    assert metrics.mae(truth.reshape(4, 1), [1.0, 2.0, 4.0, 8.0]) == 0.25  # a column and a vector pair up
    assert metrics.r2([5.0, 5.0], [5.0, 5.0]) == 1.0 and metrics.r2([5.0, 5.0], [5.0, 6.0]) == 0.0


def test_regression_scores_refuse_mismatched_or_empty_inputs() -> None:
    with pytest.raises(nnx.errors.ShapeError, match=r"y_true has shape \(3,\), y_pred \(2,\)"):
        metrics.rmse([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(nnx.errors.ShapeError, match="at least one sample"):
        metrics.mae(np.zeros(0), np.zeros(0))
    with pytest.raises(nnx.errors.TargetError, match="real numbers"):
        metrics.r2(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_accuracy_count_refuses_targets_of_another_shape(nnx_backend: str) -> None:
    from nnx.train.metrics import accuracy_count

    def dev(a: object, dtype: str = "float64") -> object:
        return nnx.to_device(np.asarray(a), nnx_backend, dtype=dtype)

    one_column = dev([[0.9], [0.2], [0.7]])
    assert float(accuracy_count(one_column, dev([1.0, 0.0, 0.0]))) == 2.0  # (n, 1) against (n,): no (n, n)
    assert float(accuracy_count(one_column, dev([[1.0], [0.0], [0.0]]))) == 2.0
    scores = dev([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(accuracy_count(scores, dev([1, 0, 0], "int64"))) == 2.0
    for output, target in ((one_column, dev([1.0, 0.0])), (scores, dev([[0.0, 1.0, 0.0]] * 3)),
                           (scores, dev([[1], [0], [0]], "int64")), (scores, dev([1, 0], "int64")),
                           (dev([[[0.5]]] * 3), dev([1.0, 0.0, 0.0]))):
        with pytest.raises(nnx.errors.ShapeError, match="accuracy"):
            accuracy_count(output, target)


def test_fit_refuses_targets_whose_shape_makes_accuracy_wrong() -> None:
    model = nnx.Sequential(nnx.Linear(2, 1, seed=0), nnx.Sigmoid())
    x, t = np.ones((4, 2), dtype=np.float32), np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    with pytest.raises(nnx.errors.ShapeError):
        nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), (x, t), epochs=1, progress=False,
                metrics="accuracy")  # MSE refuses (4, 1) against (4,) before accuracy would count 4x4


def test_metrics_refuse_probabilities_where_class_numbers_belong(nnx_backend: str) -> None:
    probs = nnx.to_device(np.array([[0.2, 0.8], [0.9, 0.1]]), nnx_backend, dtype="float32")
    for fn in (metrics.accuracy, metrics.confusion_matrix, metrics.precision_recall_f1):
        with pytest.raises(nnx.errors.TargetError, match=r"float32 \(2, 2\); for scores or probabilities"):
            fn([1, 0], probs)
    assert metrics.top_k_accuracy([1, 0], probs, k=1) == 1.0
