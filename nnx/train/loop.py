"""Whole training runs (:func:`fit`), :func:`evaluate` and :func:`predict`.

How :func:`fit` treats data and the device:

* ``data`` (and ``validation``) move onto the model's backend once, before the
  first epoch; each batch is gathered from that device array in the epoch's
  shuffled order (or sliced from it, without shuffling), so the data is never
  copied whole.
* The order comes from a seeded host generator (:mod:`nnx.random`), so the
  same seed visits the samples in the same order on every backend.
* Per step, at most one small array (loss, gradient checksum, correct count)
  leaves the device, and only when something needs it: the non-finite guard
  or the progress bar. With both off, the sums stay on the device until the
  end of the epoch.
* Everything a resumed run needs (epoch, step, history, the host generator,
  the optimizer, callbacks) is one :class:`TrainState`; ``fit(..., state=s)``
  continues from it, and ``s.state_dict()`` / ``s.load_state_dict()`` turn it
  into the plain data a checkpoint holds.
* Each step is :func:`nnx.train_step`; fit counts and checks the step between
  its backward and its update (``before_update``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Any, Iterable, NamedTuple, TextIO

from nnx import backend as _backend
from nnx import checkpoint as _checkpoint
from nnx import ops
from nnx import random as _random
from nnx.arguments import integer
from nnx.split import train_val_split
from nnx.errors import ConfigError, DTypeError, NnxError, NonFiniteError, ShapeError, TargetError
from nnx.layers import ClassLabels, Layer, Sigmoid, Softmax, set_finite_checks
from nnx.losses import Loss
from nnx.optim import Optimizer
from nnx.precision import Precision, policy
from nnx.train import batches
from nnx.train.callbacks import Callback
from nnx.train.metrics import Metric, resolve_metrics
from nnx.train.options import FitOptions
from nnx.train.progress import Progress
from nnx.train.state import History, TrainState
from nnx.train.step import train_step
from nnx.train.world import LocalWorld, World


# data ---------------------------------------------------------------------------------


def _model_placement(model: Layer) -> tuple[str, str]:
    params = model.parameters()
    if not params:
        return _backend.current(), "float32"
    return _backend.backend_of(params[0].data), _backend.dtype_name(params[0].data)


def _inputs_to_model(x: Any, name: str, dtype: str) -> Any:
    """Move inputs (one array, or named inputs: their ``"x"`` as one array, the others keeping boolean masks
    boolean) onto the model's backend once."""
    if not batches.is_named(x):
        return _to_model(x, name, dtype)
    return {k: _to_model(v, name, dtype, keep_bool=k != "x") for k, v in x.items()}


def _to_model(values: Any, name: str, dtype: str, keep_bool: bool = False) -> Any:
    """Move inputs or targets onto the model's backend once; floats take the model's dtype (and bools,
    unless ``keep_bool``)."""
    try:
        on = _backend.backend_of(values)
    except NnxError:
        on = None
    if on == name:
        xp = _backend.namespace_of(values)
        if xp.isdtype(values.dtype, "real floating") and _backend.dtype_name(values) != dtype:
            _backend.check_representable(values, dtype, "the data")
            return xp.astype(values, getattr(xp, dtype))
        return values
    host = _backend.to_host(values)
    _backend.check_representable(host, dtype, "the data")
    if keep_bool and host.dtype.kind == "b":
        return _backend.to_device(host, name)
    if host.dtype.kind == "f" or host.dtype.kind == "b":
        return _backend.to_device(host, name, dtype=dtype)
    if host.dtype.kind in "iu":
        return _backend.to_device(host, name, dtype="int64")
    raise DTypeError(f"expected numeric data (floats, integers or bools), got dtype {host.dtype.name}")


def _check_data(model: Layer, loss: Loss, x: Any, y: Any, what: str) -> None:
    """Check a whole data set once, before training: float inputs and targets finite (no NaN,
    no ±inf), integer class labels and float targets in the loss's range (BCE's [0, 1]).

    The per-batch checks of Sequential and the losses cost a device-to-host read
    every step; fit turns them off, so it checks everything here once: the range
    through the loss itself on all labels (against one prediction row, in
    evaluation mode so no statistic or random stream moves).
    """
    for part, values in (*batches.arrays(x), ("targets", y)):
        xp = _backend.namespace_of(values)
        if xp.isdtype(values.dtype, "real floating") and not ops.all_finite(values):
            bad = int(xp.sum(xp.astype(~xp.isfinite(values), xp.int64)))
            raise NonFiniteError(f"{what}: the {part} hold {bad} non-finite value(s) (NaN or ±inf) in an array "
                                 f"of shape {tuple(values.shape)}; clean or drop those samples before fit")
    xp = _backend.namespace_of(y)
    labels = xp.isdtype(y.dtype, "integral")
    if not labels and not xp.isdtype(y.dtype, "real floating"):
        return
    with model.inference():
        row = batches.forward(model, batches.cut(x, 0, 1))
    if labels and row.ndim == 2:  # class labels: their range
        shape = (int(y.shape[0]), int(row.shape[1]))
    elif not labels and tuple(row.shape[1:]) == tuple(y.shape[1:]):  # float targets: the loss's own range
        shape = tuple(y.shape)
    else:
        return
    scores = xp.broadcast_to(row, shape)
    try:
        loss.forward(scores, y)
    except TargetError as exc:
        raise TargetError(f"{what}: {exc}") from None
    finally:
        loss.drop_saved()


def _check_optimizer(model: Layer, optimizer: Optimizer) -> None:
    """The optimizer must update the model's own parameters (all of them, or some for fine-tuning)."""
    own = {id(p) for p in model.parameters()}
    foreign = [i for i, p in enumerate(optimizer.params) if id(p) not in own]
    if foreign:
        raise ConfigError(
            f"the optimizer updates {len(foreign)} of its {len(optimizer.params)} parameters that are not the "
            f"model's (the first is its parameter {foreign[0]}); it would train nothing of this model: build it "
            f"from this model's parameters, e.g. nnx.Adam(model.parameters())"
        )


def run_settings(optimizer: Optimizer, seed: Any, batch_size: int, shuffle: bool, run_config: Any) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (see :func:`fit`), as JSON data."""
    seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None
    settings = {
        "optimizer": type(optimizer).__name__,
        **optimizer.settings(),
        "seed": seed,
        "batch_size": batch_size,
        "shuffle": bool(shuffle),
        "run_config": run_config,
    }
    try:
        return json.loads(json.dumps(settings, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fit: run_config must be JSON data (dicts, lists, strings, finite numbers): {exc}") from None


def _pair(data: Any, what: str) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{what} must be a pair (inputs, targets), got {type(data).__name__}")
    x, y = (v if hasattr(v, "shape") or batches.is_named(v) else _backend.to_host(v) for v in data)  # nested lists
    x = batches.check_named(x, what)
    if (not batches.is_named(x) and x.ndim == 0) or y.ndim == 0:
        raise ShapeError(f"{what}: inputs and targets need one row per sample, got shapes {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    nx, ny = batches.rows(x), int(y.shape[0])
    if nx != ny:
        raise ShapeError(f"{what}: {nx} inputs but {ny} targets; both need one row per sample")
    if nx == 0:
        raise ShapeError(f"{what} is empty")
    return x, y


def _split(x: Any, y: Any, fraction: Any, seed: Any) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """fit's ``validation_split``: host copies of ``(x, y)`` split by a generator made from ``seed``
    (0 unless an int), stratified for integer class labels."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ConfigError(f"fit validation_split must be a fraction in (0, 1), got {fraction!r}")
    hx, hy = batches.each(x, _backend.to_host), _backend.to_host(y)
    n = batches.rows(hx)
    if n < 2 or not 0 < round(fraction * n) < n:
        raise ConfigError(f"fit validation_split={fraction!r} of {n} samples leaves no sample in one of the two "
                          f"parts; use more data or another fraction")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    stratify = hy.ndim == 1 and hy.dtype.kind in "iu"
    # the split of the sample indices, then every input array taken by them (one array or named inputs)
    (train, ty), (held, vy) = train_val_split(_backend.to_host(list(range(n))), hy, val=float(fraction), seed=seed,
                                              stratify=stratify)
    return (batches.each(hx, lambda v: v[train]), ty), (batches.each(hx, lambda v: v[held]), vy)


def _check_batch_size(batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return max(n, 1)
    return max(min(integer(batch_size, "batch_size", "fit", minimum=1), n), 1)


# the non-finite guard -----------------------------------------------------------------


def _first_bad_forward(model: Layer, x: Any) -> str:
    """Run the batch (finite: fit checked the data) again and name the first layer, in forward
    order, whose output is not finite."""
    found: list[str] = []

    def check(path: str, layer: Layer, method: str, arg: Any, out: Any) -> None:
        if not found and not ops.all_finite(out):
            found.append(f"layer {path} ({layer!r})" if path else repr(layer))

    with model.observe(check):
        batches.forward(model, x)
    model.drop_saved()
    return found[0] if found else "the loss (every layer's output was finite)"


def _first_bad_gradient(model: Layer) -> str | None:
    """The layer last in forward order (so first in backward order) with a non-finite parameter gradient."""
    bad: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            if not ops.all_finite(p.grad):
                bad.setdefault(name.rpartition(".")[0], []).append(name)
    if not bad:
        return None
    path, names = list(bad.items())[-1]
    layer = model.get_submodule(path)
    where = f"layer {path} ({layer!r})" if path else repr(layer)
    return f"{where}, in the gradient of {', '.join(names)}"


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
    *,
    batch_size: int | None = 32,
    shuffle: bool = True,
    validation: tuple[Any, Any] | None = None,
    validation_split: float | None = None,
    callbacks: Iterable[Callback] | None = None,
    seed: Any = None,
    progress: Any = None,
    metrics: Any = None,
    check_finite: bool = True,
    state: TrainState | None = None,
    stream: TextIO | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    allow_changes: bool = False,
    run_config: Any = None,
    world: World | None = None,
    precision: Precision | str | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs on ``data = (inputs, targets)``; return the :class:`History`.

    ``inputs`` is one array or named inputs, a dict of arrays with one row per sample such as
    ``{"x": ids, "lengths": lengths}``: each batch takes the same rows of every array and the model
    runs ``model.forward(batch["x"], **the_others)`` (:mod:`nnx.train.batches`; boolean masks stay
    boolean). The same holds for ``validation``, ``validation_split``, :func:`evaluate` and :func:`predict`.

    ``inputs`` and ``targets`` may be NumPy arrays, lists or arrays of any
    backend; they move to the model's backend once (float data in the model's
    dtype, integer class labels as int64). ``shuffle`` draws a new order per
    epoch from the host generator made from ``seed`` (an int, a NumPy
    generator, or ``None`` for nnx's default generator). ``validation`` is a
    second ``(inputs, targets)`` pair scored after every epoch.

    ``validation_split``: a fraction in (0, 1) of ``data`` to hold out and score
    after every epoch instead of ``validation`` (Keras's habit). The held-out
    samples are drawn by :func:`nnx.split.train_val_split` from ``seed`` (0
    when ``seed`` is not an int), so every run with that seed holds out the
    same ones; integer class labels are stratified (each class keeps its share
    in both parts). A resumed run must keep the fraction, even with
    ``allow_changes``.

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
    never interrupted. The directory is made and locked before anything else
    (:func:`nnx.checkpoint.claim_directory`): a second run on it, or a
    directory that cannot be written, is an error before the first epoch.

    The checkpoint also records the run's settings: the optimizer's type,
    learning rate and hyper-parameters, ``seed`` (when an int), ``batch_size``,
    ``shuffle`` and ``run_config`` (any JSON data the caller wants checked,
    such as how the data were split). Resuming with different settings raises
    :class:`~nnx.errors.ConfigError` listing them; with ``allow_changes=True``
    the run goes on with the new learning rate and hyper-parameters (the shuffle
    order still continues from the saved generator) and a warning lists the changes;
    a changed ``run_config`` is refused even then (held-out data must stay held out).

    ``world``: the processes of the run (:mod:`nnx.train.world`); the default
    is this process alone. ``world=nnx.distributed.init()`` trains
    data-parallel over the processes of an ``mpiexec`` job, ``batch_size``
    being each process's share of a step (see :mod:`nnx.distributed`).

    ``precision``: ``"float16"`` or ``"bfloat16"`` (or an :class:`nnx.Precision`) trains in
    that dtype with float32 master weights and, for float16, dynamic loss scaling
    (:mod:`nnx.precision`); validation scores the float32 model. The checkpoint keeps the
    loss scale, and a run resumed with another precision is refused.
    """
    options = FitOptions(epochs=epochs, batch_size=batch_size, shuffle=shuffle, validation=validation,
                         validation_split=validation_split, callbacks=callbacks, seed=seed, progress=progress, metrics=metrics,
                         check_finite=check_finite, state=state, stream=stream, checkpoint=checkpoint,
                         resume=resume, allow_changes=allow_changes, run_config=run_config, precision=precision)
    world = LocalWorld() if world is None else world
    try:
        with contextlib.ExitStack() as held:
            if checkpoint is not None and world.rank == 0:  # one run per checkpoint directory, before any work
                held.enter_context(_checkpoint.claim_directory(checkpoint))
            run = prepare(model, loss, optimizer, data, options, world.settings())
            world.begin(model, loss, optimizer, run)
            stream = options.stream if options.stream is not None else sys.stdout
            bar = Progress(options.progress if world.rank == 0 else False, epochs, stream)
            # fit's own checks (the data once, above; the loss and gradients per step) replace the
            # per-call checks of Sequential and the losses: one transfer per step instead of two or three
            old_checks = set_finite_checks(False)
            try:
                _run(model, loss, optimizer, run, options, world, bar)
            finally:
                set_finite_checks(old_checks)
    except BaseException as exc:  # in a world of many, a failure on one rank must end all of them
        world.abort(exc)
    return run.state.history


class Prepared(NamedTuple):
    """What :func:`prepare` checked and set up for a run: data on the device, metrics, state, checkpoint file."""

    data: tuple[Any, Any]
    validation: tuple[Any, Any] | None
    batch_size: int
    metric_fns: dict[str, Metric]
    state: TrainState
    save_to: Any


def prepare(model: Layer, loss: Loss, optimizer: Optimizer, data: tuple[Any, Any], options: FitOptions,
            extra_settings: dict[str, Any] | None = None) -> Prepared:
    """Everything :func:`fit` does before its first epoch: check the arguments and the data, move
    the data onto the model's backend, make or check the :class:`TrainState`, record the settings
    (with ``extra_settings``) and restore the checkpoint when resuming."""
    epochs, validation, state = options.epochs, options.validation, options.state
    epochs = integer(epochs, "epochs", "fit", minimum=0)
    x, y = _pair(data, "data")
    if options.validation_split is not None:
        if validation is not None:
            raise ConfigError("fit got both validation and validation_split; pass one of them")
        seed = options.seed if state is None else state.seed
        (x, y), validation = _split(x, y, options.validation_split, seed)
    _check_optimizer(model, optimizer)
    mixed = policy(options.precision)
    if mixed is not None:
        mixed.check(model)
    name, dtype = _model_placement(model)
    n = batches.rows(x)
    batch_size = _check_batch_size(options.batch_size, n)
    x, y = _inputs_to_model(x, name, dtype), _to_model(y, name, dtype)
    if validation is not None:
        vx, vy = _pair(validation, "validation")
        validation = (_inputs_to_model(vx, name, dtype), _to_model(vy, name, dtype))
    metric_fns = resolve_metrics(options.metrics, y)
    if state is None:
        state = TrainState(model, optimizer, options.seed, callbacks=list(options.callbacks or ()))
    elif options.callbacks is not None or options.seed is not None:
        raise ValueError("pass seed and callbacks either to fit or to the TrainState, not both")
    elif state.model is not model or state.optimizer is not optimizer:
        raise ValueError("the TrainState belongs to another model or optimizer")
    state.precision = mixed
    save_to = None if options.checkpoint is None else _checkpoint.checkpoint_path(options.checkpoint)
    state.settings = {**run_settings(optimizer, state.seed, batch_size, options.shuffle, options.run_config),
                      **(extra_settings or {})}
    if options.validation_split is not None:
        state.settings["validation_split"] = float(options.validation_split)
    if mixed is not None:
        state.settings["precision"] = mixed.dtype
    if options.resume:
        if save_to is None:
            raise ValueError("resume=True needs checkpoint=DIR, the directory to resume from")
        if save_to.is_file():
            _checkpoint.restore_train_state(save_to, state, allow_changes=options.allow_changes)
    _check_data(model, loss, x, y, "data")
    if validation is not None:
        _check_data(model, loss, *validation, "validation")
    return Prepared((x, y), validation, batch_size, metric_fns, state, save_to)


class _StepCount:
    """fit's work between a step's backward and its update: the step's sums and the non-finite guard.

    Per step at most one small array leaves the device, and only when the guard
    or the progress bar needs it; otherwise the sums stay on the device until
    the end of the epoch. A backend whose arrays live in host memory has no
    transfer to save: its numbers are read one by one, every step.
    """

    def __init__(self, model: Layer, metric_fns: dict[str, Metric], check_finite: bool, need_host: bool,
                 check_gradients: bool = True) -> None:
        self.model, self.metric_fns, self.check_finite, self.need_host = model, metric_fns, check_finite, need_host
        self.check_gradients = check_gradients  # False under loss scaling: its overflows are skipped steps
        self.params = model.parameters()
        self.host_memory = all(_backend.get(_backend.backend_of(p.data)).host_memory for p in self.params)
        self.keys = ["loss", *metric_fns]
        self.epoch = 0
        self.begin_epoch(0)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.host_sums = [0.0] * len(self.keys)
        self.device_sums: Any = None
        self.seen = 0
        self._logs: dict[str, float] | None = {}

    def __call__(self, x: Any, y: Any, value: Any, output: Any) -> None:
        xp = _backend.namespace_of(value)
        count = batches.rows(x)
        self.step += 1
        self.seen += count
        parts = [value * count]
        for fn in self.metric_fns.values():
            parts.append(fn(output, y))
        if self.check_finite and self.check_gradients:
            # one number screens every gradient: a NaN or an infinity makes the sum of squares
            # non-finite (a finite overflow only costs the closer look below, which then finds
            # nothing). A dot product reads the gradient once, at about twice the speed of a sum.
            checksum = None
            for p in self.params:
                g = p.grad
                if g is not None:
                    flat = xp.reshape(g, (-1,))
                    sq = flat @ flat
                    checksum = sq if checksum is None else checksum + sq
            parts.append(value * 0 if checksum is None else checksum)
        if self.host_memory:  # reading a number costs no transfer: read each, skip the stack
            got = [float(v) for v in parts]
        else:
            dtype = value.dtype
            numbers = xp.stack([v if v.dtype == dtype else xp.astype(v, dtype) for v in parts])
            if not self.need_host:
                numbers = numbers[:len(self.keys)]
                self.device_sums = numbers if self.device_sums is None else self.device_sums + numbers
                return
            got = _backend.to_host(numbers).tolist()
        if self.check_finite:
            if not math.isfinite(got[0]):
                _raise_non_finite(f"the loss is {got[0] / count}; the first non-finite value, in forward "
                                  f"order, comes from", self.epoch, self.step, _first_bad_forward(self.model, x))
            if self.check_gradients and not math.isfinite(got[-1]):
                bad = _first_bad_gradient(self.model)
                if bad is not None:
                    _raise_non_finite("the loss is finite but a gradient is not; the first non-finite "
                                      "gradient, in backward order, is at", self.epoch, self.step, bad)
        sums = self.host_sums
        for i in range(len(self.keys)):
            sums[i] += got[i]
        self._logs = None

    @property
    def logs(self) -> dict[str, float]:
        """The epoch's means so far (built when asked: by the progress bar or a callback)."""
        if self._logs is None:
            self._logs = {k: self.host_sums[i] / self.seen for i, k in enumerate(self.keys)} if self.seen else {}
        return self._logs

    def epoch_sums(self) -> list[float]:
        """The epoch's sums (loss times batch size, metric counts) so far, on the host (one transfer,
        if they stayed on the device); :attr:`seen` counts the samples they cover."""
        if self.device_sums is not None:
            self.host_sums = [float(v) for v in _backend.to_host(self.device_sums)]
        return list(self.host_sums)

    def epoch_logs(self) -> dict[str, float]:
        """The epoch's means over the samples seen."""
        sums = self.epoch_sums()
        return {k: sums[i] / self.seen for i, k in enumerate(self.keys)}


def _run(model: Layer, loss: Loss, optimizer: Optimizer, run: Prepared, options: FitOptions, world: World,
         bar: Progress) -> None:
    """The epochs of :func:`fit`, on data already on the device; each step is this rank's share
    (``world.share``) of the batch of a single process, checkpoints go to ``run.save_to``."""
    (x, y), state, batch_size, epochs = run.data, run.state, run.batch_size, options.epochs
    xp = _backend.namespace_of(y)
    n = int(y.shape[0])
    name = _backend.backend_of(y)
    step_size = batch_size * world.size
    steps_per_epoch = math.ceil(n / step_size)
    show_steps = bar.wants_step_numbers
    mixed = state.precision
    count = _StepCount(model, run.metric_fns, options.check_finite, options.check_finite or show_steps,
                       check_gradients=mixed is None or mixed.scaler is None)
    weight = 1.0

    def before_update(xb: Any, yb: Any, value: Any, output: Any) -> None:
        world.sum_gradients(weight)
        count(xb, yb, value, output)

    for cb in state.callbacks:
        cb.on_train_begin(state)
    while state.epoch < epochs and not state.stop:
        epoch = state.epoch + 1
        started = time.perf_counter()
        model.train()
        for cb in state.callbacks:
            cb.on_epoch_begin(state)
        # each batch is gathered on its own: a shuffled copy of the whole data set would double its
        # memory and, fresh each epoch, be paged in again (on a VM, more than a tenth of an epoch)
        order = _backend.to_device(_random.permutation(state.rng, n), name) if options.shuffle else None
        bar.begin_epoch(epoch, steps_per_epoch)
        count.begin_epoch(epoch)
        for b in range(steps_per_epoch):
            a, z, weight = world.share(b * step_size, min((b + 1) * step_size, n))
            if z > a:
                if order is None:
                    xb, yb = batches.cut(x, a, z), y[a:z, ...]
                else:
                    rows = order[a:z]
                    xb, yb = batches.take(x, rows), xp.take(y, rows, axis=0)
                train_step(model, loss, optimizer, xb, yb, before_update=before_update, precision=mixed)
            else:  # no sample of the tail for this rank: it still takes part in the sum, with zeros
                optimizer.zero_grad()
                world.sum_gradients(weight)
                if mixed is None:
                    optimizer.step()
                else:
                    mixed.step(optimizer)
            state.step += 1
            if show_steps:
                bar.step(count.logs)
            for cb in state.callbacks:
                cb.on_step_end(state, count.logs)
            if state.stop:
                break
        world.end_epoch(model)
        sums = world.sum_host([*count.epoch_sums(), float(count.seen)], "the sum of the epoch's metrics")
        logs = {k: float(sums[i]) / sums[-1] for i, k in enumerate(count.keys)}
        if run.validation is not None:
            scores = _evaluate_shared(world, model, loss, run.validation, max(batch_size, 1024), run.metric_fns)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = float(optimizer.lr)
        logs["seconds"] = time.perf_counter() - started
        state.epoch = epoch
        state.history.append(logs)
        bar.end_epoch(logs)
        for cb in state.callbacks:
            cb.on_epoch_end(state, logs)
        state.stop = bool(world.sum_host([float(state.stop)], "the agreement to stop")[0] > 0)
        if run.save_to is not None and world.rank == 0:
            _checkpoint.save_train_state(run.save_to, state)
    model.train()
    for cb in state.callbacks:
        cb.on_train_end(state)


def _evaluate_shared(world: World, model: Layer, loss: Loss, data: tuple[Any, Any], batch_size: int,
                     metric_fns: dict[str, Metric]) -> dict[str, float]:
    """:func:`evaluate` on data already on the device, the samples split over the ranks and the sums added up."""
    x, y = data
    n = int(y.shape[0])
    a, z, _ = world.share(0, n)
    keys = ["loss", *metric_fns]
    local = (_sums(model, loss, batches.cut(x, a, z), y[a:z, ...], batch_size, metric_fns) if z > a
             else [0.0] * len(keys))
    sums = world.sum_host(local, "the sum of the validation metrics")
    return {k: float(sums[i]) / n for i, k in enumerate(keys)}


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
    n = int(y.shape[0])
    batch_size = _check_batch_size(batch_size, n)
    x, y = _inputs_to_model(x, name, dtype), _to_model(y, name, dtype)
    metric_fns = resolve_metrics(metrics, y)
    keys = (["loss"] if loss is not None else []) + list(metric_fns)
    if not keys:
        return {}
    return {k: v / n for k, v in zip(keys, _sums(model, loss, x, y, batch_size, metric_fns))}


def _sums(model: Layer, loss: Loss | None, x: Any, y: Any, batch_size: int, metric_fns: dict[str, Metric]) -> list[float]:
    """The loss (times the samples) and metric sums over the samples ``x`` (on the device), in evaluation mode."""
    xp = _backend.namespace_of(y)
    n = int(y.shape[0])
    with model.inference():  # evaluation mode, nothing kept for a backward
        sums: Any = None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb, yb = (x, y) if stop - start == n else (batches.cut(x, start, stop), y[start:stop, ...])
            output = batches.forward(model, xb)
            parts = []
            if loss is not None:
                value = loss.forward(output, yb)
                loss.drop_saved()
                parts.append(value * (stop - start))
            parts.extend(fn(output, yb) for fn in metric_fns.values())
            numbers = xp.stack([xp.astype(v, output.dtype) for v in parts])
            sums = numbers if sums is None else sums + numbers
    return [float(v) for v in _backend.to_host(sums)]


def predict(model: Layer, x: Any, batch_size: int | None = 1024) -> Any:
    """The model's outputs for inputs ``x`` (evaluation mode), as one array on the model's backend.

    Inputs already on the model's backend in its dtype are used as they are (batches are
    slices of them, and one batch is ``x`` itself); the layers keep nothing for a backward
    (:meth:`Layer.inference`).
    """
    name, dtype = _model_placement(model)
    x = _inputs_to_model(batches.check_named(x, "predict"), name, dtype)
    n = batches.rows(x)
    batch_size = _check_batch_size(batch_size, n)
    with model.inference():
        if n <= batch_size:  # one batch (or no samples: the model's empty output)
            outputs = [batches.forward(model, x)]
        else:
            outputs = [batches.forward(model, batches.cut(x, s, min(s + batch_size, n)))
                       for s in range(0, n, batch_size)]
    xp = _backend.namespace_of(outputs[0])
    return outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)


def _final_layers(model: Layer) -> tuple[Layer | None, ClassLabels | None]:
    """The last computing layer (a leaf that is not a ClassLabels) and the model's ClassLabels, if any."""
    leaves = [m for _, m in model.named_modules() if not list(m.named_children())]
    labels = next((m for m in reversed(leaves) if isinstance(m, ClassLabels)), None)
    last = next((m for m in reversed(leaves) if not isinstance(m, ClassLabels)), None)
    return last, labels


def predict_proba(model: Layer, x: Any, batch_size: int | None = 1024) -> Any:
    """Class probabilities, ``(samples, classes)`` on the model's backend.

    The outputs' softmax, for a model that ends in scores (logits, as trained
    with :class:`~nnx.SoftmaxCrossEntropy`); a model that ends in
    :class:`~nnx.Softmax` gives its outputs as they are; a single output that
    ends in :class:`~nnx.Sigmoid` (or a single logit) is ``p`` of the second
    class, giving columns ``1 - p`` and ``p``.
    """
    return _probabilities(model, _class_outputs(model, x, batch_size))


def _class_outputs(model: Layer, x: Any, batch_size: int | None) -> Any:
    """The model's outputs, which must be one row of class scores per sample."""
    out = predict(model, x, batch_size)
    if out.ndim != 2:
        raise ShapeError(f"class predictions need outputs of shape (samples, classes), the model gives "
                         f"{tuple(out.shape)}")
    return out


def _probabilities(model: Layer, out: Any) -> Any:
    last, _ = _final_layers(model)
    xp = _backend.namespace_of(out)
    if out.shape[1] == 1:
        p = out if isinstance(last, Sigmoid) else 1 / (1 + xp.exp(-out))
        return xp.concat([1 - p, p], axis=1)
    if isinstance(last, Softmax):
        return out
    shifted = xp.exp(out - xp.max(out, axis=1, keepdims=True))
    return shifted / xp.sum(shifted, axis=1, keepdims=True)


def output_classes(model: Layer, out: Any) -> Any:
    """Class numbers (on the outputs' backend) for the outputs ``out`` of ``model``: the arg-max of
    several columns; for one column, class 1 where its probability exceeds 0.5."""
    xp = _backend.namespace_of(out)
    if out.shape[1] == 1:
        return xp.astype(_probabilities(model, out)[:, 1] > 0.5, xp.int64)
    return xp.argmax(out, axis=1)


def predict_classes(model: Layer, x: Any, batch_size: int | None = 1024) -> Any:
    """The predicted class of each sample as a host NumPy array: the model's original labels when it
    ends in a :class:`~nnx.preprocessing.ClassLabels`, class numbers otherwise.

    The class is the arg-max of the outputs; a single output is class 1 when
    its probability (see :func:`predict_proba`) exceeds 0.5.
    """
    classes = output_classes(model, _class_outputs(model, x, batch_size))
    _, labels = _final_layers(model)
    if labels is None:
        return _backend.to_host(classes).astype("int64")
    return _backend.to_host(labels.decode(classes))


__all__ = ["FitOptions", "Prepared", "evaluate", "fit", "output_classes", "predict", "predict_classes", "predict_proba",
           "prepare"]
