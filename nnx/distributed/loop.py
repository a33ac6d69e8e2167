"""Data-parallel :func:`fit`: every rank trains a copy of the model on its shard of each step.

How a run over ``N`` ranks (``mpiexec -n N``) goes:

* Every rank passes the same model, optimizer, seed and data. Before the first
  epoch the ranks compare their architectures, settings, generator states,
  data and resumed epoch (any difference stops every rank with a
  :class:`~nnx.errors.DistributedError`), then take rank 0's parameters and buffers.
* Each epoch's order comes from the shared seeded host generator, the same on
  every rank; a step covers ``N * batch_size`` samples of it, the batch of a
  single process with that batch size, and each rank trains on its part
  (:mod:`nnx.distributed.shards`, which also states the policy for the uneven tail).
* Between backward and update, the gradients are summed over the ranks in a
  few flat buckets (:mod:`nnx.distributed.buckets`), weighted so the sum is the
  single process's gradient; every rank then makes the same update.
* BatchNorm: each rank normalises with the statistics of its own part of the
  batch (local, as in a single process with batch ``batch_size``), and the
  running mean and variance are averaged over the ranks at the end of every
  epoch, before validation and the checkpoint.
* The epoch's loss and metrics are summed over the ranks; validation is split
  over the ranks the same way. Progress and logs are rank 0's; the numbers
  shown during an epoch are rank 0's own, the epoch's line is of all ranks.
* Rank 0 writes the checkpoint (atomically); on resume every rank reads it, so
  the checkpoint directory must be on a file system every rank sees.
* An exception on any rank prints that rank's message and ends the whole job
  (``MPI_Abort``); a rank that stops answering ends it after ``timeout`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Iterable, TextIO

import numpy as np

from nnx import backend as _backend
from nnx import checkpoint as _checkpoint
from nnx import random as _random
from nnx.distributed import shards
from nnx.distributed.buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from nnx.distributed.sync import average_buffers, broadcast_model, check_same, check_same_model
from nnx.distributed.world import World, init
from nnx.layers import Layer, set_finite_checks
from nnx.losses import Loss
from nnx.optim import Optimizer
from nnx.train.callbacks import Callback
from nnx.train.loop import _StepCount, evaluate, prepare
from nnx.train.metrics import Metric
from nnx.train.progress import Progress
from nnx.train.state import History, TrainState
from nnx.train.step import train_step


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
    allow_changes: bool = False,
    run_config: Any = None,
    world: World | None = None,
    timeout: float | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> History:
    """:func:`nnx.fit` over the ranks of an ``mpiexec`` job (see the module's description).

    The arguments are :func:`nnx.fit`'s, with ``batch_size`` each rank's part
    of a step (a step trains on ``world.size * batch_size`` samples, as one
    process with that batch size would), plus ``world`` (default:
    :func:`nnx.distributed.init`), ``timeout`` (seconds a rank waits for the
    others before it ends the job; ``None`` keeps the world's, by default
    300) and ``bucket_bytes`` (the size of the flat
    gradient buffers). The checkpoint records the number of ranks as the
    setting ``world_size``. Every rank returns the same :class:`~nnx.History`.

    In a world of more than one rank, an exception on any rank prints
    ``nnx: rank R of N stopped the job: ...`` to stderr and ends every rank;
    in a world of one it is raised as :func:`nnx.fit` would.
    """
    if world is None:
        world = init(timeout)
    elif timeout is not None:
        world.timeout = timeout
    try:
        return _fit(world, model, loss, optimizer, data, epochs, batch_size, shuffle, validation, callbacks,
                    seed, progress, metrics, check_finite, state, stream, checkpoint, resume, allow_changes,
                    run_config, bucket_bytes)
    except BaseException as exc:  # any failure on one rank must end all of them, never leave them waiting
        world.abort(exc)


def _fit(world: World, model: Layer, loss: Loss, optimizer: Optimizer, data: tuple[Any, Any], epochs: int,
         batch_size: int | None, shuffle: bool, validation: Any, callbacks: Any, seed: Any, progress: Any,
         metrics: Any, check_finite: bool, state: TrainState | None, stream: TextIO | None, checkpoint: Any,
         resume: bool, allow_changes: bool, run_config: Any, bucket_bytes: int) -> History:
    run = prepare(model, loss, optimizer, data, epochs, batch_size, shuffle, validation, callbacks, seed, state,
                  checkpoint, resume, allow_changes, run_config, metrics, {"world_size": world.size})
    check_same_model(world, model)
    check_same(world, _run_digest(run), "the run (settings, generator state, resumed epoch and step, data)",
               "give every rank the same data, seed and arguments, and a checkpoint directory that every rank "
               "sees (a shared file system)")
    broadcast_model(world, model)
    bar = Progress(progress if world.rank == 0 else False, epochs, stream if stream is not None else sys.stdout)
    old_checks = set_finite_checks(False)
    try:
        _run(world, model, loss, optimizer, run.data, run.validation, epochs, run.batch_size, shuffle,
             run.metric_fns, check_finite, run.state, bar, run.save_to, GradientBuckets(optimizer.params, world,
                                                                                         bucket_bytes))
    finally:
        set_finite_checks(old_checks)
    return run.state.history


def _run_digest(run: Any) -> bytes:
    """What must agree over the ranks before training: settings, generators, epoch, step and the data."""
    state = run.state
    text = json.dumps({"settings": state.settings, "rng": _random.get_state(state.rng),
                       "layer_rngs": state.model.random_states(), "epoch": state.epoch, "step": state.step,
                       "history": state.history.to_dict() if state.epoch else None}, sort_keys=True, default=str)
    h = hashlib.sha256(text.encode("utf-8"))
    for values in (*run.data, *(run.validation or ())):
        host = _backend.to_host(values)
        h.update(repr((host.shape, str(host.dtype))).encode("utf-8"))
        h.update(np.ascontiguousarray(host).tobytes())
    return h.digest()


def _run(world: World, model: Layer, loss: Loss, optimizer: Optimizer, data: tuple[Any, Any], validation: Any,
         epochs: int, batch_size: int, shuffle: bool, metric_fns: dict[str, Metric], check_finite: bool,
         state: TrainState, bar: Progress, save_to: Any, buckets: GradientBuckets) -> None:
    """The epochs of the data-parallel fit, on data already on the device."""
    x, y = data
    xp = _backend.namespace_of(x)
    n = int(x.shape[0])
    name = _backend.backend_of(x)
    step_size = batch_size * world.size
    steps_per_epoch = math.ceil(n / step_size)
    adds = shards.loss_adds(loss)
    count = _StepCount(model, metric_fns, check_finite, check_finite or bar.wants_step_numbers)

    for cb in state.callbacks:
        cb.on_train_begin(state)
    while state.epoch < epochs and not state.stop:
        epoch = state.epoch + 1
        started = time.perf_counter()
        model.train()
        for cb in state.callbacks:
            cb.on_epoch_begin(state)
        if shuffle:
            order = _backend.to_device(_random.permutation(state.rng, n), name)
            xs, ys = xp.take(x, order, axis=0), xp.take(y, order, axis=0)
        else:
            xs, ys = x, y
        bar.begin_epoch(epoch, steps_per_epoch)
        count.begin_epoch(epoch)
        for b in range(steps_per_epoch):
            lo, hi = b * step_size, min((b + 1) * step_size, n)
            a, z = shards.part(lo, hi, world.rank, world.size)
            w = shards.weight(lo, hi, world.rank, world.size, adds)

            def before_update(xb: Any, yb: Any, value: Any, output: Any) -> None:
                buckets.reduce(w)
                count(xb, yb, value, output)

            if z > a:
                train_step(model, loss, optimizer, xs[a:z, ...], ys[a:z, ...], before_update=before_update)
            else:  # no sample of the tail for this rank: it still takes part in the sum, with zeros
                optimizer.zero_grad()
                buckets.reduce(w)
                optimizer.step()
            state.step += 1
            bar.step(count.logs)
            for cb in state.callbacks:
                cb.on_step_end(state, count.logs)
            if state.stop:
                break
        average_buffers(world, model)
        logs = _epoch_logs(world, count)
        if validation is not None:
            scores = _evaluate(world, model, loss, validation, max(batch_size, 1024), metric_fns)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = float(optimizer.lr)
        logs["seconds"] = time.perf_counter() - started
        state.epoch = epoch
        state.history.append(logs)
        bar.end_epoch(logs)
        for cb in state.callbacks:
            cb.on_epoch_end(state, logs)
        state.stop = bool(world.allreduce_host([float(state.stop)], "the agreement to stop")[0] > 0)
        if save_to is not None and world.rank == 0:
            _checkpoint.save_train_state(save_to, state)
    model.train()
    for cb in state.callbacks:
        cb.on_train_end(state)


def _epoch_logs(world: World, count: _StepCount) -> dict[str, float]:
    """The epoch's means over the samples of every rank."""
    sums = world.allreduce_host([*count.epoch_sums(), float(count.seen)], "the sum of the epoch's metrics")
    seen = sums[-1]
    return {k: float(sums[i]) / seen for i, k in enumerate(count.keys)}


def _evaluate(world: World, model: Layer, loss: Loss, data: tuple[Any, Any], batch_size: int,
              metric_fns: dict[str, Metric]) -> dict[str, float]:
    """:func:`nnx.evaluate` with the samples split over the ranks and the sums added up."""
    x, y = data
    n = int(x.shape[0])
    a, z = shards.part(0, n, world.rank, world.size)
    keys = ["loss", *metric_fns]
    local = [0.0] * len(keys)
    if z > a:
        scores = evaluate(model, loss, (x[a:z, ...], y[a:z, ...]), batch_size=batch_size, metrics=metric_fns)
        local = [scores[k] * (z - a) for k in keys]
    sums = world.allreduce_host(local, "the sum of the validation metrics")
    return {k: float(sums[i]) / n for i, k in enumerate(keys)}


__all__ = ["fit"]
