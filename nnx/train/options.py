"""The settings of one :func:`nnx.fit` run, built once from fit's keyword arguments."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

from nnx.train.callbacks import Callback
from nnx.train.state import TrainState


@dataclass(frozen=True)
class FitOptions:
    """fit's arguments after the model, loss, optimizer and data (see :func:`nnx.fit`)."""

    epochs: int
    batch_size: int | None = 32
    shuffle: bool = True
    validation: tuple[Any, Any] | None = None
    validation_split: float | None = None
    callbacks: Iterable[Callback] | None = None
    seed: Any = None
    progress: Any = None
    metrics: Any = None
    check_finite: bool = True
    state: TrainState | None = None
    stream: TextIO | None = None
    checkpoint: str | os.PathLike[str] | None = None
    resume: bool = False
    allow_changes: bool = False
    run_config: Any = None
    precision: Any = None


# steps of a run on a table when no number of epochs is given: noisy regression targets overfit sooner
# (on the diabetes table 3,000 steps cost ~6% RMSE against 600; benchmarks/regression_bench.py)
DEFAULT_STEPS = {"classification": 3000, "regression": 600}


def default_epochs(samples: int, batch_size: int, steps: int) -> int:
    """Epochs that make about ``steps`` steps of ``batch_size`` samples over ``samples``, at least 20 and at
    most 200: what ``nnx train`` and :mod:`nnx.sklearn` run when no number of epochs is given, so a small
    table trains as long as a large one."""
    per_epoch = max(1, math.ceil(samples / batch_size))
    return min(200, max(20, math.ceil(steps / per_epoch)))


__all__ = ["DEFAULT_STEPS", "FitOptions", "default_epochs"]
