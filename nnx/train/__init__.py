"""Training: one step (:mod:`~nnx.train.step`), whole runs (:mod:`~nnx.train.loop`), callbacks,
progress, metrics and the state of a run."""

from nnx.train.callbacks import Callback, EarlyStopping, LambdaCallback, LRScheduler
from nnx.train.loop import evaluate, fit, predict, predict_classes, predict_proba
from nnx.train.metrics import accuracy_count
from nnx.train.state import History, TrainState
from nnx.train.step import train_step

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "LRScheduler",
    "LambdaCallback",
    "TrainState",
    "accuracy_count",
    "evaluate",
    "fit",
    "predict",
    "predict_classes",
    "predict_proba",
    "train_step",
]
