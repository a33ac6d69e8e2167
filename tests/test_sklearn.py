"""nnx.sklearn: scikit-learn's own estimator checks, and the estimators in Pipeline, GridSearchCV and
cross_val_score. Skipped (with the reason) where scikit-learn is not installed."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import nnx  # noqa: E402
from nnx.sklearn import NNXClassifier, NNXRegressor  # noqa: E402

# 20 epochs keep the ~110 checks at a few seconds; the defaults pass them too, in about 35 s
CHECKED = [NNXClassifier(epochs=20), NNXRegressor(epochs=20)]


@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


def _flowers(seed: int = 0, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 100.0, 0.1] + kind[:, None] * [2.0, 20.0, 200.0, 0.2]
    return x, np.array(["setosa", "versicolor", "virginica"])[kind]


def _line(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 3))
    return x, 1000.0 + 50.0 * x[:, 0] - 20.0 * x[:, 1] + rng.normal(0, 1.0, n)


def test_the_classifier_answers_in_the_labels_it_was_given() -> None:
    x, y = _flowers()
    clf = NNXClassifier(hidden=(16,), epochs=30, lr=1e-2).fit(x, y)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"] and clf.n_features_in_ == 4
    proba = clf.predict_proba(x[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.predict(x[:5]).tolist() == clf.classes_[proba.argmax(axis=1)].tolist()
    assert clf.score(x, y) > 0.9
    assert isinstance(clf.model_, nnx.Sequential) and clf.history_.epochs == 30


def test_the_regressor_answers_in_the_targets_units_with_one_or_several_outputs() -> None:
    x, y = _line()
    reg = NNXRegressor(hidden=(32,), epochs=100, lr=1e-2).fit(x, y)
    assert reg.predict(x).shape == (80,) and reg.n_outputs_ == 1
    assert reg.score(x, y) > 0.95  # R^2 on a target of mean 1000: the network learnt it standardised
    assert abs(reg.predict(x).mean() - y.mean()) < 2.0
    two = np.stack([y, -0.001 * y], axis=1)
    multi = NNXRegressor(hidden=(32,), epochs=100, lr=1e-2).fit(x, two)
    assert multi.predict(x).shape == (80, 2) and multi.n_outputs_ == 2
    assert multi.score(x, two) > 0.95


def test_same_seed_same_fit_and_a_fitted_estimator_pickles() -> None:
    x, y = _line(1)
    a = NNXRegressor(hidden=(8,), epochs=5, seed=3).fit(x, y)
    b = NNXRegressor(hidden=(8,), epochs=5, seed=3).fit(x, y)
    c = NNXRegressor(hidden=(8,), epochs=5, seed=4).fit(x, y)
    assert np.array_equal(a.predict(x), b.predict(x)) and not np.array_equal(a.predict(x), c.predict(x))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).predict(x), a.predict(x))


def test_backend_and_dtype_are_parameters() -> None:
    x, y = _flowers(2)
    ref = NNXClassifier(hidden=(8,), epochs=3).fit(x, y)
    strict = NNXClassifier(hidden=(8,), epochs=3, backend="array_api_strict").fit(x, y)
    np.testing.assert_allclose(strict.predict_proba(x), ref.predict_proba(x), rtol=1e-10)
    single = NNXClassifier(hidden=(8,), epochs=3, dtype="float32").fit(x, y)
    assert single.model_[1].weight.data.dtype == np.float32 and single.predict_proba(x).dtype == np.float64
    np.testing.assert_allclose(single.predict_proba(x), ref.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("params, message", [
    ({"hidden": (8, 0)}, "hidden must be a tuple of positive ints"),
    ({"activation": "swish"}, "unknown activation 'swish'; choose one of relu, tanh"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"epochs": 0}, "epochs must be a positive int or None"),
    ({"batch_size": 2.5}, "batch_size must be a positive int"),
    ({"dtype": "float16"}, "dtype must be one of float32, float64"),
    ({"backend": "tpu"}, "unknown backend 'tpu'"),
])
def test_bad_parameters_fail_in_fit_with_a_message(params: dict, message: str) -> None:
    x, y = _flowers()
    est = NNXClassifier(**params)  # scikit-learn's rule: constructing never fails
    with pytest.raises(ValueError, match=message):
        est.fit(x, y)


def test_in_a_pipeline_grid_search_and_cross_validation() -> None:
    x, y = _flowers(3)
    pipe = make_pipeline(MinMaxScaler(), NNXClassifier(hidden=(8,), epochs=20, lr=1e-2))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    xr, yr = _line(4, 60)
    search = GridSearchCV(NNXRegressor(epochs=30, lr=1e-2), {"hidden": [(4,), (16,)], "activation": ["relu", "tanh"]},
                          cv=2).fit(xr, yr)
    assert set(search.best_params_) == {"hidden", "activation"} and search.best_score_ > 0.8
    assert search.best_estimator_.predict(xr[:3]).shape == (3,)


def test_importing_nnx_does_not_import_scikit_learn() -> None:
    code = "import sys, nnx; print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
