"""Training: one step (:func:`train_step`), whole runs (:func:`fit`), :func:`evaluate`, :func:`predict`.

How :func:`fit` treats data and the device:

* ``data`` (and ``validation``) move onto the model's backend once, before the
  first epoch; each epoch gathers them once in the shuffled order and the
  batches are slices of that device array.
* The order comes from a seeded host generator (``nnx.backend.host``), so the
  same seed visits the samples in the same order on every backend.
* Per step, at most one small array (loss, gradient checksum, correct count)
  leaves the device, and only when something needs it: the non-finite guard
  or the progress bar. With both off, the sums stay on the device until the
  end of the epoch.
* Everything a resumed run needs (epoch, step, history, the host generator,
  the optimizer, callbacks) is one :class:`TrainState`; ``fit(..., state=s)``
  continues from it, and ``s.state_dict()`` / ``s.load_state_dict()`` turn it
  into plain data for a checkpoint.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from nnx import backend as _backend
from nnx import checkpoint as _checkpoint
from nnx.backend import host as _host
from nnx.errors import NnxError, NonFiniteError, ShapeError
from nnx.layers.base import Layer, set_finite_checks
from nnx.layers.container import Sequential
from nnx.losses import Loss
from nnx.optim import Optimizer

Metric = Callable[[Any, Any], Any]


def train_step(model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any) -> tuple[Any, Any]:
    """Clear gradients, run forward and backward, update.

    Returns ``(loss_value, output)``: the loss as a 0-d array and the model's
    output, both computed before the update and both still on the device
    (convert with ``float()`` or ``nnx.to_host`` only when they are shown).
    """
    optimizer.zero_grad()
    output = model.forward(x)
    value = loss.forward(output, y)
    model.backward_params(loss.backward())  # the input's gradient is not needed here
    optimizer.step()
    return value, output


# metrics ------------------------------------------------------------------------------


def accuracy_count(output: Any, target: Any) -> Any:
    """How many samples of a batch are classified right, as a 0-d float array on the device.

    Several output columns: the arg-max is the class, compared with integer
    targets or with the arg-max of one-hot targets. One column: ``output > 0.5``
    against ``target > 0.5`` (sigmoid outputs with 0/1 targets).
    """
    xp = _backend.namespace_of(output)
    if output.ndim == 2 and output.shape[1] > 1:
        predicted = xp.argmax(output, axis=1)
        truth = target if target.ndim == 1 else xp.argmax(target, axis=1)
        right = predicted == xp.astype(truth, predicted.dtype)
    else:
        right = (output > 0.5) == (target > 0.5)
    return xp.sum(xp.astype(right, output.dtype))


def _looks_like_classes(y_host: Any) -> bool:
    """Whether ``accuracy`` means something for these targets (checked once, on the host)."""
    kind = y_host.dtype.kind
    if kind in "iub":
        return True
    if y_host.ndim == 2 and y_host.shape[1] > 1:
        return bool(((y_host == 0) | (y_host == 1)).all() and (y_host.sum(axis=1) == 1).all())
    return bool(((y_host == 0) | (y_host == 1)).all())


def _resolve_metrics(metrics: Any, y: Any) -> dict[str, Metric]:
    """``None`` means accuracy when the targets are classes; names or ``{name: fn}`` otherwise.

    A metric function takes ``(output, target)`` of one batch and returns the
    batch's *sum* as a 0-d device array (like :func:`accuracy_count`); the
    history holds the sum over the epoch divided by the number of samples.
    """
    if metrics is None:
        return {"accuracy": accuracy_count} if _looks_like_classes(_backend.to_host(y)) else {}
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        return dict(metrics)
    resolved: dict[str, Metric] = {}
    for m in metrics:
        if m == "accuracy":
            resolved["accuracy"] = accuracy_count
        elif callable(m):
            resolved[getattr(m, "__name__", f"metric{len(resolved)}")] = m
        else:
            raise ValueError(f"unknown metric {m!r}; use 'accuracy', a function or a {{name: function}} dict")
    return resolved


# history and state --------------------------------------------------------------------


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
    ``nnx.random.make_rng``); ``stop`` is set by a callback to end the run
    after the current step or epoch. The model's parameters are not here (they
    live in the model). To keep the state of a run, make it and pass it:
    ``state = TrainState(model, opt, seed=0); fit(..., state=state)``.
    """

    def __init__(
        self,
        model: Layer,
        optimizer: Optimizer,
        seed: Any = None,
        callbacks: Sequence["Callback"] = (),
        history: History | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.rng = _host.make_rng(seed)
        self.history = history or History()
        self.callbacks = list(callbacks)
        self.epoch = 0
        self.step = 0
        self.stop = False

    def state_dict(self) -> dict[str, Any]:
        """Plain data (JSON-friendly except the optimizer's arrays) describing the run so far."""
        optimizer_state = self.optimizer.state_dict() if hasattr(self.optimizer, "state_dict") else None
        return {
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history.to_dict(),
            "rng": _rng_state(self.rng),
            "optimizer": optimizer_state,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (the same model, optimizer and callbacks set up)."""
        self.epoch, self.step = int(d["epoch"]), int(d["step"])
        self.history = History.from_dict(d["history"])
        _set_rng_state(self.rng, d["rng"])
        if d.get("optimizer") is not None and hasattr(self.optimizer, "load_state_dict"):
            self.optimizer.load_state_dict(d["optimizer"])
        saved = list(d.get("callbacks", []))
        if len(saved) != len(self.callbacks):
            raise ValueError(
                f"the saved run had {len(saved)} callbacks, this one has {len(self.callbacks)}; "
                f"pass the same callbacks to resume"
            )
        for cb, s in zip(self.callbacks, saved):
            cb.load_state_dict(s)
        self.stop = False


def _rng_state(rng: Any) -> Any:
    if hasattr(rng, "bit_generator"):
        return {"kind": "generator", "state": rng.bit_generator.state}
    kind, keys, pos, has_gauss, gauss = rng.get_state()
    return {"kind": "legacy", "state": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]}


def _set_rng_state(rng: Any, saved: Mapping[str, Any]) -> None:
    if saved["kind"] == "generator":
        rng.bit_generator.state = saved["state"]
    else:
        kind, keys, pos, has_gauss, gauss = saved["state"]
        rng.set_state((kind, _host.asarray(keys).astype("uint32"), pos, has_gauss, gauss))


# callbacks ----------------------------------------------------------------------------


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
        if patience < 0:
            raise ValueError(f"EarlyStopping patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, int(patience), float(min_delta), mode
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
                self._best_params = [_copy(p.data) for p in state.model.parameters()]
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
        self.best, self.best_epoch, self.wait = d.get("best"), d.get("best_epoch"), int(d.get("wait", 0))
        self._best_params = d.get("best_params")


def _copy(x: Any) -> Any:
    return _backend.namespace_of(x).asarray(x, copy=True)


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


# progress -----------------------------------------------------------------------------


def _short(logs: Mapping[str, float]) -> str:
    """A compact postfix for a progress bar: ``loss 0.1234 acc 0.912 val_loss ...``."""
    parts = []
    for k, v in logs.items():
        if k in ("seconds", "lr"):
            continue
        parts.append(f"{k.replace('accuracy', 'acc')} {v:.4f}")
    return " ".join(parts)


def _format(logs: Mapping[str, float]) -> str:
    parts = []
    for k, v in logs.items():
        if k == "seconds":
            parts.append(f"{v:.2f}s")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class _Progress:
    """Per-epoch progress: a tqdm bar (the ``progress`` extra), one line per epoch, or nothing."""

    def __init__(self, mode: Any, epochs: int, stream: TextIO) -> None:
        if mode is None or mode == "auto":
            mode = "bar" if _isatty(stream) else "lines"
        elif mode is True:
            mode = "bar"
        elif mode is False:
            mode = "off"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress must be None, True, False, 'bar', 'lines' or 'off', got {mode!r}")
        if mode == "bar" and not _tqdm_available():
            mode = "lines"  # without the 'progress' extra a bar degrades to one line per epoch
        self.mode, self.epochs, self.stream = mode, epochs, stream
        self._bar: Any = None
        self._desc = ""

    @property
    def wants_step_numbers(self) -> bool:
        return self.mode == "bar"

    def begin_epoch(self, epoch: int, total_steps: int) -> None:
        self._desc = f"epoch {epoch}/{self.epochs}"
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, desc=self._desc, file=self.stream, leave=True,
                             dynamic_ncols=True, unit="step")

    def step(self, logs: Mapping[str, float]) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(_short(logs), refresh=False)
            self._bar.update(1)

    def end_epoch(self, logs: Mapping[str, float]) -> None:
        if self.mode == "off":
            return
        shown = {k: v for k, v in logs.items() if k != "lr"}
        if self._bar is not None:
            self._bar.set_postfix_str(_short(shown))
            self._bar.close()
            self._bar = None
            return
        self.stream.write(f"{self._desc}  {_format(shown)}\n")
        self.stream.flush()


def _tqdm_available() -> bool:
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        return False
    return True


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# data ---------------------------------------------------------------------------------


def _model_placement(model: Layer) -> tuple[str, str]:
    params = model.parameters()
    if not params:
        return _backend.current(), "float32"
    return _backend.backend_of(params[0].data), _backend.dtype_name(params[0].data)


def _to_model(values: Any, name: str, dtype: str) -> Any:
    """Move inputs or targets onto the model's backend once; floats take the model's dtype."""
    try:
        on = _backend.backend_of(values)
    except NnxError:
        on = None
    if on == name:
        xp = _backend.namespace_of(values)
        if xp.isdtype(values.dtype, "real floating") and _backend.dtype_name(values) != dtype:
            return xp.astype(values, getattr(xp, dtype))
        return values
    host = _backend.to_host(values)
    if host.dtype.kind == "f" or host.dtype.kind == "b":
        return _backend.to_device(host, name, dtype=dtype)
    if host.dtype.kind in "iu":
        return _backend.to_device(host, name, dtype="int64")
    raise TypeError(f"expected numeric data, got dtype {host.dtype}")


def _check_class_labels(model: Layer, loss: Loss, x: Any, y: Any) -> None:
    """Check integer class labels once for the whole data set, before training.

    The loss's own per-batch range check costs a device-to-host read every step;
    fit turns it off, so it runs the loss once here on all labels (against one
    prediction row, in evaluation mode so no statistic or random stream moves).
    """
    xp = _backend.namespace_of(y)
    if not xp.isdtype(y.dtype, "integral") or int(y.shape[0]) == 0:
        return
    was_training = model.training
    model.eval()
    try:
        row = model.forward(x[:1, ...])
    finally:
        model.train(was_training)
    if row.ndim != 2:
        return
    scores = xp.broadcast_to(row, (int(y.shape[0]), int(row.shape[1])))
    loss.forward(scores, y)


def _pair(data: Any, what: str) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{what} must be a pair (inputs, targets), got {type(data).__name__}")
    x, y = data
    nx, ny = int(x.shape[0]), int(y.shape[0])
    if nx != ny:
        raise ShapeError(f"{what}: {nx} inputs but {ny} targets; both need one row per sample")
    if nx == 0:
        raise ShapeError(f"{what} is empty")
    return x, y


def _check_batch_size(batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return n
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return min(batch_size, n)


# the non-finite guard -----------------------------------------------------------------


def _first_bad_forward(model: Layer, x: Any) -> str:
    """Run the batch again layer by layer and name the first whose output is not finite."""
    xp = _backend.namespace_of(x)
    if not bool(xp.all(xp.isfinite(x))):
        return "the input batch itself"
    layers = list(model.layers) if isinstance(model, Sequential) else [model]
    for i, layer in enumerate(layers):
        x = layer.forward(x)
        layer._saved = None
        if not bool(xp.all(xp.isfinite(x))):
            return f"layer {i} ({layer!r})" if isinstance(model, Sequential) else repr(layer)
    return "the loss (every layer's output was finite)"


def _first_bad_gradient(model: Layer) -> str | None:
    """The first layer, in backward order (output side first), with a non-finite parameter gradient."""
    layers = list(enumerate(model.layers)) if isinstance(model, Sequential) else [(None, model)]
    for i, layer in reversed(layers):
        prefix = "" if i is None else f"{i}."
        bad = []
        for name, p in layer.named_parameters(prefix):
            if p.grad is not None:
                xp = _backend.namespace_of(p.grad)
                if not bool(xp.all(xp.isfinite(p.grad))):
                    bad.append(name)
        if bad:
            where = repr(layer) if i is None else f"layer {i} ({layer!r})"
            return f"{where}, in the gradient of {', '.join(bad)}"
    return None


def _raise_non_finite(what: str, epoch: int, step: int, where: str) -> None:
    raise NonFiniteError(
        f"training stopped at epoch {epoch}, step {step}: {what} {where}; nothing was updated "
        f"with it. Usual fixes: a smaller learning rate, inputs scaled to a small range, or a "
        f"numerically stable loss (softmax cross-entropy on logits)"
    )


# fit, evaluate, predict ---------------------------------------------------------------


def fit(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    data: tuple[Any, Any],
    epochs: int,
    batch_size: int | None = 32,
    shuffle: bool = True,
    validation: tuple[Any, Any] | None = None,
    callbacks: Iterable[Callback] | None = None,
    seed: Any = None,
    progress: Any = None,
    metrics: Any = None,
    check_finite: bool = True,
    state: TrainState | None = None,
    stream: TextIO | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` epochs on ``data = (inputs, targets)``; return the :class:`History`.

    ``inputs`` and ``targets`` may be NumPy arrays, lists or arrays of any
    backend; they move to the model's backend once (float data in the model's
    dtype, integer class labels as int64). ``shuffle`` draws a new order per
    epoch from the host generator made from ``seed`` (an int, a NumPy
    generator, or ``None`` for nnx's default generator). ``validation`` is a
    second ``(inputs, targets)`` pair scored after every epoch.

    ``metrics``: ``None`` (accuracy when the targets are class labels, one-hot
    or 0/1), ``"accuracy"``, a list of names and functions, or ``{name: fn}``
    (see :func:`accuracy_count` for a metric's contract).

    ``progress``: ``None`` shows a bar on a terminal (tqdm if installed, else a
    plain one) and one line per epoch otherwise; ``"lines"`` forces the lines,
    ``False`` is silent. ``stream`` defaults to ``sys.stdout``.

    ``check_finite`` stops the run with :class:`~nnx.errors.NonFiniteError`
    before any update that a NaN or infinite loss or gradient would make.

    ``state``: a :class:`TrainState` (new, of an earlier run, or restored from
    a checkpoint) to run in and continue; ``epochs`` is the total, not the
    number still to run, and ``seed``/``callbacks`` then belong to the state.

    ``checkpoint``: a directory; after every epoch the whole run (model,
    optimizer, generator, epoch, step, history, callbacks such as a learning-rate
    scheduler) is saved atomically to ``checkpoint/checkpoint.nnx``. With
    ``resume=True`` a run first continues from the checkpoint there, if there
    is one (built with the same model, optimizer, callbacks and seed), and
    otherwise starts afresh; on CPU the result is bit for bit that of a run
    never interrupted.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    x, y = _pair(data, "data")
    name, dtype = _model_placement(model)
    n = int(x.shape[0])
    batch_size = _check_batch_size(batch_size, n)
    x, y = _to_model(x, name, dtype), _to_model(y, name, dtype)
    if validation is not None:
        vx, vy = _pair(validation, "validation")
        validation = (_to_model(vx, name, dtype), _to_model(vy, name, dtype))
    metric_fns = _resolve_metrics(metrics, y)
    if state is None:
        state = TrainState(model, optimizer, seed, callbacks=list(callbacks or ()))
    elif callbacks is not None or seed is not None:
        raise ValueError("pass seed and callbacks either to fit or to the TrainState, not both")
    elif state.model is not model or state.optimizer is not optimizer:
        raise ValueError("the TrainState belongs to another model or optimizer")
    save_to = None if checkpoint is None else _checkpoint.checkpoint_path(checkpoint)
    if resume:
        if save_to is None:
            raise ValueError("resume=True needs checkpoint=DIR, the directory to resume from")
        if save_to.is_file():
            _checkpoint.restore_train_state(save_to, state)
    _check_class_labels(model, loss, x, y)
    # fit's own guard replaces the per-call checks of Sequential and the losses (NaN
    # inputs, class-index range): one transfer per step instead of two or three
    old_checks = set_finite_checks(False)
    try:
        _run(model, loss, optimizer, (x, y), validation, epochs, batch_size, shuffle, metric_fns,
             check_finite, state, _Progress(progress, epochs, stream if stream is not None else sys.stdout),
             save_to)
    finally:
        set_finite_checks(old_checks)
    return state.history


def _run(model: Layer, loss: Loss, optimizer: Optimizer, data: tuple[Any, Any], validation: Any,
         epochs: int, batch_size: int, shuffle: bool, metric_fns: dict[str, Metric],
         check_finite: bool, state: TrainState, bar: _Progress, save_to: Any = None) -> None:
    """The epochs of :func:`fit`, on data already on the device; checkpoints to ``save_to``."""
    x, y = data
    xp = _backend.namespace_of(x)
    n = int(x.shape[0])
    name = _backend.backend_of(x)
    need_host = check_finite or bar.wants_step_numbers
    steps_per_epoch = math.ceil(n / batch_size)
    params = model.parameters()
    keys = ["loss", *metric_fns]

    for cb in state.callbacks:
        cb.on_train_begin(state)
    while state.epoch < epochs and not state.stop:
        epoch = state.epoch + 1
        started = time.perf_counter()
        model.train()
        for cb in state.callbacks:
            cb.on_epoch_begin(state)
        if shuffle:
            order = _backend.to_device(_host.permutation(state.rng, n), name)
            xs, ys = xp.take(x, order, axis=0), xp.take(y, order, axis=0)
        else:
            xs, ys = x, y
        bar.begin_epoch(epoch, steps_per_epoch)
        host_sums = [0.0] * len(keys)
        device_sums: Any = None
        seen = 0
        for b in range(steps_per_epoch):
            lo, hi = b * batch_size, min((b + 1) * batch_size, n)
            xb, yb = xs[lo:hi, ...], ys[lo:hi, ...]
            count = int(xb.shape[0])
            optimizer.zero_grad()
            output = model.forward(xb)
            value = loss.forward(output, yb)
            model.backward_params(loss.backward())  # the input's gradient is not needed
            parts = [value * count, *(fn(output, yb) for fn in metric_fns.values())]
            if check_finite:
                checksum = value * 0
                for p in params:
                    if p.grad is not None:
                        checksum = checksum + xp.sum(p.grad)
                parts.append(checksum)
            numbers = xp.stack([xp.astype(v, value.dtype) for v in parts])
            step_logs: dict[str, float] = {}
            if need_host:
                got = [float(v) for v in _backend.to_host(numbers)]
                if check_finite:
                    if not math.isfinite(got[0]):
                        _raise_non_finite(f"the loss is {got[0] / count}; the first non-finite value, in "
                                          f"forward order, comes from", epoch, b + 1,
                                          _first_bad_forward(model, xb))
                    if not math.isfinite(got[-1]):
                        bad = _first_bad_gradient(model)
                        if bad is not None:
                            _raise_non_finite("the loss is finite but a gradient is not; the first "
                                              "non-finite gradient, in backward order, is at", epoch, b + 1, bad)
                for i, k in enumerate(keys):
                    host_sums[i] += got[i]
                seen += count
                step_logs = {k: host_sums[i] / seen for i, k in enumerate(keys)}
            else:
                numbers = numbers[:len(keys)]
                device_sums = numbers if device_sums is None else device_sums + numbers
            optimizer.step()
            state.step += 1
            bar.step(step_logs)
            for cb in state.callbacks:
                cb.on_step_end(state, step_logs)
            if state.stop:
                break
        if device_sums is not None:
            host_sums = [float(v) for v in _backend.to_host(device_sums)]
            seen = hi
        logs = {k: host_sums[i] / seen for i, k in enumerate(keys)}
        if validation is not None:
            scores = evaluate(model, loss, validation, batch_size=max(batch_size, 1024), metrics=metric_fns)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = float(optimizer.lr)
        logs["seconds"] = time.perf_counter() - started
        state.epoch = epoch
        state.history.append(logs)
        bar.end_epoch(logs)
        for cb in state.callbacks:
            cb.on_epoch_end(state, logs)
        if save_to is not None:
            _checkpoint.save_train_state(save_to, state)
    model.train()
    for cb in state.callbacks:
        cb.on_train_end(state)


def evaluate(
    model: Layer,
    loss: Loss | None,
    data: tuple[Any, Any],
    batch_size: int | None = 1024,
    metrics: Any = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` (in evaluation mode) on ``data = (inputs, targets)``.

    Returns ``{"loss": ..., "accuracy": ...}`` (no ``loss`` when ``loss`` is
    ``None``); the sums stay on the device and leave it once, at the end.
    """
    x, y = _pair(data, "data")
    name, dtype = _model_placement(model)
    n = int(x.shape[0])
    batch_size = _check_batch_size(batch_size, n)
    x, y = _to_model(x, name, dtype), _to_model(y, name, dtype)
    metric_fns = _resolve_metrics(metrics, y)
    xp = _backend.namespace_of(x)
    keys = (["loss"] if loss is not None else []) + list(metric_fns)
    if not keys:
        return {}
    was_training = model.training
    model.eval()
    try:
        sums: Any = None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb, yb = x[start:stop, ...], y[start:stop, ...]
            output = model.forward(xb)
            parts = []
            if loss is not None:
                value = loss.forward(output, yb)
                loss._saved = None
                parts.append(value * int(xb.shape[0]))
            parts.extend(fn(output, yb) for fn in metric_fns.values())
            numbers = xp.stack([xp.astype(v, output.dtype) for v in parts])
            sums = numbers if sums is None else sums + numbers
        _forget(model)
    finally:
        model.train(was_training)
    return {k: float(v) / n for k, v in zip(keys, _backend.to_host(sums))}


def predict(model: Layer, x: Any, batch_size: int | None = 1024) -> Any:
    """The model's outputs for inputs ``x`` (evaluation mode), as one array on the model's backend."""
    name, dtype = _model_placement(model)
    x = _to_model(x, name, dtype)
    n = int(x.shape[0])
    batch_size = _check_batch_size(batch_size, n)
    xp = _backend.namespace_of(x)
    was_training = model.training
    model.eval()
    try:
        outputs = [model.forward(x[s:min(s + batch_size, n), ...]) for s in range(0, n, batch_size)]
        _forget(model)
    finally:
        model.train(was_training)
    return outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)


def _forget(model: Layer) -> None:
    """Drop what forward kept for a backward that will not come (frees device memory)."""
    layers = list(model.layers) if isinstance(model, Sequential) else [model]
    for layer in layers:
        layer._saved = None


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
    "train_step",
]
