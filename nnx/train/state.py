"""The state of a training run: its per-epoch :class:`History` and the whole :class:`TrainState`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnx import checkpoint as _checkpoint
from nnx import random as _random
from nnx.errors import ConfigError, StateError
from nnx.layers import Layer
from nnx.optim import Optimizer


class History:
    """Per-epoch numbers of a run: ``history["loss"]``, ``history["val_accuracy"]``, ...

    Keys: ``loss`` and each metric (training, averaged over the epoch's
    batches as they were seen), ``val_loss`` and ``val_<metric>`` when
    validation data is given, ``lr`` and ``seconds``.
    """

    def __init__(self, history: Mapping[str, Sequence[float]] | None = None) -> None:
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}

    def append(self, logs: Mapping[str, float]) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    @property
    def epochs(self) -> int:
        return max((len(v) for v in self.history.values()), default=0)

    def last(self) -> dict[str, float]:
        """The numbers of the last epoch."""
        return {k: v[-1] for k, v in self.history.items() if v}

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def keys(self) -> list[str]:
        return list(self.history)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.history.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> "History":
        return cls(d)

    def __repr__(self) -> str:
        return f"History(epochs={self.epochs}, keys={self.keys()})"


class TrainState:
    """Everything :func:`fit` needs to go on: the one object a checkpoint saves.

    ``epoch`` counts finished epochs, ``step`` finished optimizer steps;
    ``rng`` is the host generator that shuffles (made from ``seed`` like
    ``nnx.random.make_rng``); ``settings`` is what :func:`fit` records of how
    the run was set up and checks on resume; ``stop`` is set by a callback to end the run
    after the current step or epoch. The model's parameters are not here (they
    live in the model). To keep the state of a run, make it and pass it:
    ``state = TrainState(model, opt, seed=0); fit(..., state=state)``.
    """

    def __init__(
        self,
        model: Layer,
        optimizer: Optimizer,
        seed: Any = None,
        callbacks: Sequence[Any] = (),  # nnx.train.callbacks.Callback (which imports this module)
        history: History | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.seed = seed
        self.rng = _random.make_rng(seed)
        self.settings: dict[str, Any] | None = None
        self.precision: Any = None  # the run's nnx.Precision, whose loss scale a checkpoint keeps
        self.history = history or History()
        self.callbacks = list(callbacks)
        self.epoch = 0
        self.step = 0
        self.stop = False

    def state_dict(self) -> dict[str, Any]:
        """The run so far as plain data (arrays stay arrays): what a checkpoint saves beside the
        model's tensors (:func:`nnx.checkpoint.run_state`)."""
        return _checkpoint.run_state(
            self.model, self.optimizer, rng=self.rng, epoch=self.epoch, step=self.step,
            history=self.history.to_dict(),
            extra={"callbacks": [cb.state_dict() for cb in self.callbacks], "settings": self.settings,
                   **({} if self.precision is None else {"precision": self.precision.state_dict()})},
        )

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (the same model, optimizer and callbacks set up)."""
        saved = list((d.get("extra") or {}).get("callbacks", []))
        if len(saved) != len(self.callbacks):
            raise ValueError(
                f"the saved run had {len(saved)} callbacks, this one has {len(self.callbacks)}; "
                f"pass the same callbacks to resume"
            )
        extra = d.get("extra") or {}
        if self.precision is not None or extra.get("precision") is not None:
            if self.precision is None:
                raise ConfigError(f"the saved run trained in {extra['precision'].get('dtype')}, this one in float32; "
                                  f"resume with the saved run's precision")
            self.precision.load_state_dict(extra.get("precision") or {})
        optimizer = d.get("optimizer")
        if optimizer is not None:
            if optimizer["type"] != type(self.optimizer).__name__:
                raise StateError(f"the saved run's optimizer is a {optimizer['type']}, "
                                 f"not a {type(self.optimizer).__name__}")
            self.optimizer.load_state_dict(optimizer["state"])
        self.model.set_random_states(d.get("layer_rngs") or {})
        _random.set_state(self.rng, d["rng"])
        self.epoch, self.step = int(d["epoch"]), int(d["step"])
        self.history = History.from_dict(d["history"])
        for cb, s in zip(self.callbacks, saved):
            cb.load_state_dict(s)
            cb.check_state(self)
        self.stop = False


__all__ = ["History", "TrainState"]
