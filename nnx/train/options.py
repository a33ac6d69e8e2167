"""The settings of one :func:`nnx.fit` run, built once from fit's keyword arguments."""

from __future__ import annotations

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


__all__ = ["FitOptions"]
