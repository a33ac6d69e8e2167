"""The processes of a data-parallel run: rank, world size, and the collectives nnx uses.

MPI (mpi4py) starts the processes and carries the host-side messages (small
sums, digests, the NCCL id); device arrays travel through MPI on a host copy
(NumPy, array-api-strict) or through NCCL between CUDA GPUs (CuPy, see
:mod:`nnx.distributed.nccl`). Every wait has a deadline: a rank that does not
answer within ``timeout`` seconds ends the job with a :class:`DistributedError`
message instead of a hang.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, NoReturn

import numpy as np

from nnx import backend as _backend
from nnx.backend import Backend
from nnx.backend.registry import load
from nnx.distributed import shards, sync
from nnx.distributed.buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from nnx.errors import DistributedError, NnxError

DEFAULT_TIMEOUT = 300.0
# how long an aborting rank waits for its last message to reach the launcher's output
_FORWARD_SECONDS = 0.5
_SPINS_BEFORE_SLEEP = 2000
_world: "World | None" = None


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"distributed training needs mpi4py and an MPI library ({exc}); install them with "
            f"pip install '.[distributed]' in nnx's clone (mpi4py and the mpich wheel) and launch with "
            f"mpiexec -n N python ..."
        ) from None
    return MPI


class World:
    """The ranks of one job: ``rank``, ``size``, host collectives with a deadline, and the device
    communicator for a backend (:meth:`device`)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self._devices: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    @property
    def timeout(self) -> float:
        """Seconds a rank waits for the others before it ends the job."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = _checked_timeout(seconds)

    @property
    def local_rank(self) -> int:
        """This process's rank among the processes of its machine (which GPU it takes)."""
        return self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_rank()

    # waiting with a deadline ------------------------------------------------------------

    def wait(self, done: Any, what: str) -> None:
        """Poll ``done()`` until it is true; past the deadline, end the job with a clear error."""
        deadline = time.monotonic() + self.timeout
        spins = 0
        while not done():
            spins += 1
            if spins > _SPINS_BEFORE_SLEEP:
                time.sleep(1e-4)
                if time.monotonic() > deadline:
                    self.abort(DistributedError(
                        f"rank {self.rank} of {self.size}: no answer from the other ranks within "
                        f"{self.timeout:g} s in {what}; a rank died, hangs or runs other code"))

    def _complete(self, request: Any, what: str) -> None:
        self.wait(request.Test, what)

    # host collectives ---------------------------------------------------------------------

    def allreduce_host(self, values: Any, what: str = "a sum over the ranks") -> np.ndarray:
        """The element-wise sum over the ranks of a host array (float64 or int64), on every rank."""
        buf = np.ascontiguousarray(np.array(values, copy=True))
        if self.size > 1:
            self._complete(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        return buf

    def allgather_host(self, values: Any, what: str = "a gather over the ranks") -> np.ndarray:
        """Every rank's host array, stacked by rank: shape ``(size, *values.shape)``."""
        buf = np.ascontiguousarray(np.array(values, copy=True))
        out = np.empty((self.size, *buf.shape), dtype=buf.dtype)
        if self.size > 1:
            self._complete(self.comm.Iallgather(buf, out), what)
        else:
            out[0] = buf
        return out

    def broadcast_host(self, values: Any, root: int = 0, what: str = "a broadcast") -> np.ndarray:
        """Rank ``root``'s host array on every rank (same shape and dtype everywhere)."""
        buf = np.ascontiguousarray(np.array(values, copy=True))
        if self.size > 1:
            self._complete(self.comm.Ibcast(buf, root=root), what)
        return buf

    # device arrays ------------------------------------------------------------------------

    def device(self, name: str) -> Any:
        """The communicator for flat arrays of backend ``name``: the one its record names
        (``Backend.communicator``: NCCL for CuPy, else MPI on the host)."""
        if name not in self._devices:
            record = _backend.lookup(name)
            self._devices[name] = load(record.communicator)(self, record)
        return self._devices[name]

    # ending the job -----------------------------------------------------------------------

    def abort(self, error: BaseException) -> NoReturn:
        """End every rank of the job after printing ``error`` (this rank's) to stderr.

        In a world of one the error is raised instead, as in a single-process run.
        """
        if self.size == 1:
            raise error
        if isinstance(error, NnxError):
            text = f"{type(error).__name__}: {error}"
        else:
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        print(f"nnx: rank {self.rank} of {self.size} stopped the job: {text}", file=sys.stderr, flush=True)
        for device in self._devices.values():
            device.abort()
        time.sleep(_FORWARD_SECONDS)  # let the launcher pass the message on before the abort tears it down
        self.comm.Abort(1)
        os._exit(1)  # MPI_Abort may return before the launcher ends this process; nothing else may run

    # the training world (nnx.train.world's interface, which nnx.fit(..., world=...) uses) ---------

    bucket_bytes: int = DEFAULT_BUCKET_BYTES  # the size of the flat buffers the gradients are summed in

    def settings(self) -> dict[str, Any]:
        """The run setting a checkpoint records: the number of ranks, ``world_size``."""
        return {"world_size": self.size}

    def begin(self, model: Any, loss: Any, optimizer: Any, run: Any) -> None:
        """Check that every rank built the same model and run, then give every rank rank 0's model."""
        sync.check_same_model(self, model)
        sync.check_same(self, sync.run_digest(run), "the run (settings, generator state, resumed epoch and step, "
                        "data)", "give every rank the same data, seed and arguments, and a checkpoint directory "
                        "that every rank sees (a shared file system)")
        sync.broadcast_model(self, model)
        self._adds = shards.loss_adds(loss)
        self._buckets = GradientBuckets(optimizer.params, self, self.bucket_bytes)

    def share(self, lo: int, hi: int) -> tuple[int, int, float]:
        """This rank's part of the samples ``[lo, hi)`` and its gradient's weight (:mod:`~nnx.distributed.shards`)."""
        a, z = shards.part(lo, hi, self.rank, self.size)
        return a, z, shards.weight(lo, hi, self.rank, self.size, getattr(self, "_adds", False))

    def sum_gradients(self, weight: float) -> None:
        """Sum the gradients over the ranks, bucket by bucket (:class:`~nnx.distributed.GradientBuckets`)."""
        self._buckets.reduce(weight)

    def sum_host(self, values: list[float], what: str) -> list[float]:
        """The element-wise sum over the ranks of host numbers."""
        return self.allreduce_host(values, what).tolist()

    def end_epoch(self, model: Any) -> None:
        """Average BatchNorm's running statistics over the ranks."""
        sync.average_buffers(self, model)


class MpiDevice:
    """All-reduce and broadcast of flat arrays of one backend through MPI: in place where the
    backend's arrays are writable host buffers (``Backend.host_buffer``), else on a host copy."""

    def __init__(self, world: World, record: Backend) -> None:
        self.world, self.name, self._in_place = world, record.name, record.host_buffer

    def allreduce(self, flat: Any, what: str) -> Any:
        """The element-wise sum over the ranks of the 1-d array ``flat`` (in place on a host buffer,
        else a new array)."""
        if self._in_place:
            view = memoryview(flat)
            if view.c_contiguous and not view.readonly:
                if self.world.size > 1:
                    self.world._complete(self.world.comm.Iallreduce(self.world.MPI.IN_PLACE, flat,
                                                                    op=self.world.MPI.SUM), what)
                return flat
        host = self.world.allreduce_host(_backend.to_host(flat), what)
        return _backend.to_device(host, self.name)

    def broadcast(self, flat: Any, root: int, what: str) -> Any:
        """Rank ``root``'s 1-d array ``flat`` on every rank (a new array)."""
        host = self.world.broadcast_host(_backend.to_host(flat), root, what)
        return _backend.to_device(host, self.name)

    def abort(self) -> None:
        """Nothing to release: MPI's own abort ends the transfers."""


def init(timeout: float | None = None) -> World:
    """Join the job this process was launched in (``mpiexec -n N``) and return its :class:`World`.

    The first call starts MPI; later calls return the same world. ``timeout``
    (seconds a rank waits for the others; default ``DEFAULT_TIMEOUT``, 300)
    sets the world's, or leaves it as it is when ``None``. A process started without ``mpiexec`` is a world
    of one. Where the selected backend's record binds a device (``Backend.bind_device``; cupy:
    the GPU of this process's local rank), ``init`` does it, so call ``init`` before building a
    model on cupy. Raises
    :class:`~nnx.errors.DistributedError` when mpi4py is not installed.
    """
    global _world
    if _world is None:
        _world = World(DEFAULT_TIMEOUT if timeout is None else timeout)
        record = _backend.lookup(_backend.current())  # no probe: it would take a GPU before binding one
        if record.bind_device is not None:
            load(record.bind_device)(_world)
    elif timeout is not None:
        _world.timeout = timeout
    return _world


def _checked_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


__all__ = ["DEFAULT_TIMEOUT", "MpiDevice", "World", "init"]
