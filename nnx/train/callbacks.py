"""Callbacks: hooks fit calls at the start and end of the run, of each epoch and of each step."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx.arguments import integer
from nnx.errors import StateError
from nnx.train.state import TrainState


class Callback:
    """Hooks :func:`fit` calls; override the ones you need. Set ``state.stop = True`` to stop.

    ``logs`` of ``on_step_end`` hold the step's host numbers when the step
    took any off the device (``{}`` otherwise); ``logs`` of ``on_epoch_end``
    are the epoch's row of the history.
    """

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_epoch_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState, logs: Mapping[str, float]) -> None: ...

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this callback (nothing by default)."""
        return {}

    def load_state_dict(self, d: Mapping[str, Any]) -> None: ...

    def check_state(self, state: TrainState) -> None:
        """Raise if what :meth:`load_state_dict` restored does not fit this run's model (no check by default)."""


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda state, logs: ...)``."""

    def __init__(self, **hooks: Callable[..., None]) -> None:
        names = {"on_train_begin", "on_epoch_begin", "on_step_end", "on_epoch_end", "on_train_end"}
        for name, fn in hooks.items():
            if name not in names:
                raise ValueError(f"LambdaCallback got unknown hook {name!r}; hooks are {sorted(names)}")
            setattr(self, name, fn)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``mode`` is ``"min"`` or ``"max"`` (``"auto"``: max for names containing
    ``accuracy``). With ``restore_best=True`` the model gets back the
    parameters of its best epoch when training ends (kept as device copies).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = True,
    ) -> None:
        if mode == "auto":
            mode = "max" if "accuracy" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min', 'max' or 'auto', got {mode!r}")
        patience = integer(patience, "patience", "EarlyStopping", minimum=0)
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, float(min_delta), mode
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self._best_params: list[Any] | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r} but the history has {sorted(logs)}; "
                f"pass validation data to fit or monitor another key"
            )
        value = logs[self.monitor]
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self._best_params = [_backend.namespace_of(p.data).asarray(p.data, copy=True)
                                     for p in state.model.parameters()]
        else:
            self.wait += 1
            if self.wait > self.patience:
                state.stop = True

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self._best_params is not None:
            for p, data in zip(state.model.parameters(), self._best_params):
                name = _backend.backend_of(p.data)
                p.data = data if _backend.backend_of(data) == name else _backend.to_device(data, name)

    def state_dict(self) -> dict[str, Any]:
        """The best score so far and, with ``restore_best``, its parameters as host arrays."""
        best = None if self._best_params is None else [_backend.to_host(a) for a in self._best_params]
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_params": best}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        best, best_epoch, wait, params = d.get("best"), d.get("best_epoch"), d.get("wait", 0), d.get("best_params")
        if best is not None and not (isinstance(best, (int, float)) and math.isfinite(best)):
            raise StateError(f"EarlyStopping: the saved best score {best!r} is not a finite number")
        for name, count in (("best_epoch", best_epoch), ("wait", wait)):
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise StateError(f"EarlyStopping: the saved {name} {count!r} is not a count")
        if params is not None and not isinstance(params, list):
            raise StateError(f"EarlyStopping: the saved best parameters are a {type(params).__name__}, not a list")
        self.best, self.best_epoch, self.wait, self._best_params = best, best_epoch, int(wait), params

    def check_state(self, state: TrainState) -> None:
        """The restored best parameters must match the model's parameters one for one."""
        if self._best_params is None:
            return
        params = state.model.parameters()
        if len(self._best_params) != len(params):
            raise StateError(f"EarlyStopping: the saved best parameters are {len(self._best_params)} arrays, "
                             f"the model has {len(params)} parameters")
        for i, (saved, p) in enumerate(zip(self._best_params, params)):
            if not hasattr(saved, "shape"):
                raise StateError(f"EarlyStopping: saved best parameter {i} is a {type(saved).__name__}, not an array")
            shape, dtype, want = tuple(saved.shape), _backend.dtype_name(saved), _backend.dtype_name(p.data)
            if shape != p.shape or dtype != want:
                raise StateError(f"EarlyStopping: saved best parameter {i} is {dtype} {shape}, "
                                 f"the model's is {want} {p.shape}")


class LRScheduler(Callback):
    """Advance a schedule (anything with ``step()``, e.g. from ``nnx.schedules``) every epoch or step."""

    def __init__(self, schedule: Any, per: str = "epoch") -> None:
        if per not in ("epoch", "step"):
            raise ValueError(f"LRScheduler per must be 'epoch' or 'step', got {per!r}")
        self.schedule, self.per = schedule, per

    def on_step_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self.per == "step":
            self.schedule.step()

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        if self.per == "epoch":
            self.schedule.step()

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict() if hasattr(self.schedule, "state_dict") else {}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        if d and hasattr(self.schedule, "load_state_dict"):
            self.schedule.load_state_dict(d)


__all__ = ["Callback", "EarlyStopping", "LRScheduler", "LambdaCallback"]
