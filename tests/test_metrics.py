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
