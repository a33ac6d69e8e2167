"""scikit-learn estimators: :class:`NNXClassifier` and :class:`NNXRegressor`.

Each fits an MLP with :func:`nnx.fit` (standardised inputs first, as ``nnx
train`` builds it) and follows scikit-learn's estimator contract, so it works
in a ``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` and passes
scikit-learn's ``check_estimator``. Needs scikit-learn
(``pip install '.[sklearn]'`` from nnx's clone); ``import nnx`` alone never imports it.

Example::

    from nnx.sklearn import NNXClassifier
    clf = NNXClassifier(hidden=(64,), epochs=50).fit(x_train, y_train)
    clf.predict(x_test), clf.predict_proba(x_test), clf.score(x_test, y_test)

The fitted network is ``model_`` (an :class:`nnx.Sequential`; save it with
:func:`nnx.save`), the run's history ``history_``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"nnx.sklearn needs scikit-learn >= 1.6: pip install '.[sklearn]' in nnx's clone ({exc})") from None

import nnx
from nnx import recipes
from nnx.layers.activations import ACTIVATIONS
from nnx.train.options import DEFAULT_STEPS, default_epochs

#: the optimizers by their lower-case class name: every one nnx.optim exports
OPTIMIZERS = {name.lower(): cls for name, cls in ((n, getattr(nnx.optim, n)) for n in nnx.optim.__all__)
              if isinstance(cls, type) and issubclass(cls, nnx.optim.Optimizer) and cls is not nnx.optim.Optimizer}


class _NNXEstimator(BaseEstimator):
    """What both estimators share: the parameters, their checks, the network and the run."""

    _task = "classification"

    def __init__(self, hidden: tuple[int, ...] = (128,), activation: str = "relu", optimizer: str = "adam",
                 lr: float = 1e-3, epochs: int | None = None, batch_size: int = 32, seed: int = 0,
                 backend: str | None = None, dtype: str = "float64") -> None:
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.backend = backend
        self.dtype = dtype

    def _checked_params(self) -> tuple[list[int], str]:
        """The hidden sizes as a list and the backend's name, after checking every parameter."""
        name = type(self).__name__

        def whole(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        hidden = list(self.hidden) if isinstance(self.hidden, (tuple, list)) else [self.hidden]
        if not all(whole(h) and h > 0 for h in hidden):
            raise ValueError(f"{name}: hidden must be a tuple of positive ints (units per hidden layer), "
                             f"got {self.hidden!r}")
        for what, value, known in (("activation", self.activation, ACTIVATIONS),
                                   ("optimizer", self.optimizer, OPTIMIZERS)):
            if value not in known:
                raise ValueError(f"{name}: unknown {what} {value!r}; choose one of {', '.join(known)}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < float("inf"):
            raise ValueError(f"{name}: lr must be a positive number, got {self.lr!r}")
        if self.epochs is not None and not (whole(self.epochs) and self.epochs > 0):
            raise ValueError(f"{name}: epochs must be a positive int or None, got {self.epochs!r}")
        if not (whole(self.batch_size) and self.batch_size > 0):
            raise ValueError(f"{name}: batch_size must be a positive int, got {self.batch_size!r}")
        if not (whole(self.seed) and self.seed >= 0):
            raise ValueError(f"{name}: seed must be an int >= 0, got {self.seed!r}")
        if self.dtype not in nnx.backend.FLOAT_DTYPES:
            raise ValueError(f"{name}: dtype must be one of {', '.join(nnx.backend.FLOAT_DTYPES)}, got {self.dtype!r}")
        return [int(h) for h in hidden], self.backend or nnx.backend.current()

    def _fit_network(self, x: np.ndarray, targets: np.ndarray, outputs: int, loss: Any, last: list[Any]) -> None:
        """Build the network for ``outputs`` outputs, train it on ``(x, targets)`` and keep it, with the
        layers ``last`` after it, as ``model_``."""
        hidden, name = self._checked_params()
        nnx.backend.get(name)  # an unknown or unavailable backend fails here, with the reason
        f = {"dtype": self.dtype, "backend": name}
        rng = nnx.random.make_rng(int(self.seed))
        body, _ = recipes.mlp([x.shape[1], *hidden, outputs], itertools.repeat(rng), activation=self.activation, **f)
        network = nnx.Sequential(nnx.preprocessing.Standardize(x.shape[1], **f).fit(x), *body)
        batch_size = min(int(self.batch_size), len(x))
        epochs = self.epochs if self.epochs is not None else default_epochs(len(x), batch_size,
                                                                            DEFAULT_STEPS[self._task])
        optimizer = OPTIMIZERS[self.optimizer](network.parameters(), lr=float(self.lr))
        self.history_ = nnx.fit(network, loss, optimizer, (x, targets), epochs=int(epochs), batch_size=batch_size,
                                seed=int(self.seed), progress=False, metrics={})
        self.model_ = nnx.Sequential(*network, *last)

    def _outputs(self, x: Any) -> np.ndarray:
        """The fitted model's outputs for ``x`` as a float64 host array (checked as scikit-learn checks)."""
        check_is_fitted(self)
        x = validate_data(self, x, reset=False, dtype=np.float64)
        return nnx.to_host(nnx.predict(self.model_, x)).astype(np.float64)


class NNXClassifier(ClassifierMixin, _NNXEstimator):
    """A multilayer perceptron classifier trained with nnx (softmax cross-entropy).

    Parameters
    ----------
    hidden : tuple of int, default (128,)
        Units of each hidden layer.
    activation : str, default "relu"
        The hidden layers' activation: a key of ``nnx.layers.activations.ACTIVATIONS``
        ("relu", "tanh", "gelu", ...).
    optimizer : str, default "adam"
        The optimizer: the lower-case name of one of ``nnx.optim``'s ("adam", "sgd", ...), with its
        defaults besides the learning rate.
    lr : float, default 1e-3
        Learning rate.
    epochs : int or None, default None
        Passes over the data; ``None`` runs about 3,000 steps (at least 20,
        at most 200 epochs), as ``nnx train`` does.
    batch_size : int, default 32
        Samples per step.
    seed : int, default 0
        Seed of the weights and the shuffling: the same seed gives the same fit.
    backend : str or None, default None
        nnx backend (``"numpy"``, ``"cupy"``, ...); ``None`` is the selected one.
    dtype : {"float64", "float32"}, default "float64"
        The network's float type (float64 like scikit-learn's own estimators;
        float32 is faster, especially on a GPU).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_in_ : int
        Number of input features seen in :meth:`fit`.
    model_ : nnx.Sequential
        The fitted network: Standardize, the hidden layers, one output per class.
    history_ : nnx.History
        The training loss per epoch.
    """

    def fit(self, X: Any, y: Any) -> "NNXClassifier":
        """Train on inputs ``X`` (samples x features) and class labels ``y`` (any two or more labels)."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"NNXClassifier needs samples of at least 2 classes; y holds 1 class "
                             f"({self.classes_[0]!r})")
        self._fit_network(X, codes.reshape(-1).astype(np.int64), len(self.classes_), nnx.SoftmaxCrossEntropy(), [])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """The probability of each class (columns in the order of ``classes_``), samples x classes."""
        scores = self._outputs(X)
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each sample."""
        scores = self._outputs(X)
        return self.classes_[np.argmax(scores, axis=1)]


class NNXRegressor(RegressorMixin, _NNXEstimator):
    """A multilayer perceptron regressor trained with nnx (MSE on the standardised target).

    The same parameters as :class:`NNXClassifier`, except that ``epochs=None``
    runs about 600 steps (at least 20, at most 200 epochs), as ``nnx train
    --task regression`` does. ``y`` may hold several outputs (samples x
    outputs); each is standardised for training, and the model's last layer
    (:class:`~nnx.preprocessing.Destandardize`) gives the predictions back in
    the target's units.

    Attributes
    ----------
    n_features_in_ : int
        Number of input features seen in :meth:`fit`.
    n_outputs_ : int
        Number of outputs (1 for a 1-D ``y``).
    model_ : nnx.Sequential
        The fitted network: Standardize, the hidden layers, the outputs, Destandardize.
    history_ : nnx.History
        The training loss (standardised units) per epoch.
    """

    _task = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> "NNXRegressor":
        """Train on inputs ``X`` (samples x features) and targets ``y`` (samples, or samples x outputs)."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.n_outputs_ = 1 if y.ndim == 1 else int(y.shape[1])
        _, name = self._checked_params()
        out = nnx.preprocessing.Destandardize(self.n_outputs_, dtype=self.dtype, backend=name).fit(y)
        self._fit_network(X, out.standardize(y), self.n_outputs_, nnx.MSE(), [out])
        self._one_dimensional = y.ndim == 1
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted target of each sample: ``(samples,)`` for a 1-D ``y``, else samples x outputs."""
        values = self._outputs(X)
        return values[:, 0] if self._one_dimensional else values


__all__ = ["NNXClassifier", "NNXRegressor"]
