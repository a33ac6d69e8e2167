"""NCCL between CUDA GPUs (CuPy's ``cupy.cuda.nccl``), bootstrapped over MPI.

One process per GPU: each process takes the GPU of its rank on its machine
(:func:`select_gpu`), rank 0 draws NCCL's unique id and broadcasts it over MPI,
and every rank joins the communicator with it. Collectives run on the current
CuPy stream; the host waits for them with the world's deadline. CuPy is
imported only here, and only when a run on the cupy backend asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnx.errors import DistributedError

if TYPE_CHECKING:
    from nnx.backend import Backend
    from nnx.distributed.world import World

_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES


def _cupy() -> tuple[Any, Any]:
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as exc:
        raise DistributedError(f"data-parallel training on cupy needs CuPy with NCCL ({exc}); install "
                               f"cupy-cuda12x and nvidia-nccl-cu12") from None
    if not nccl.available:
        raise DistributedError("this CuPy has no NCCL support; install nvidia-nccl-cu12 (or the NCCL "
                               "wheel for your CUDA version) beside cupy")
    return cupy, nccl


def select_gpu(world: "World") -> int:
    """Make the GPU of this process's local rank the current CuPy device; returns its index (the
    cupy record's ``bind_device``).

    More processes on a machine than GPUs is refused: NCCL needs one GPU per rank.
    """
    cupy, _ = _cupy()
    count = cupy.cuda.runtime.getDeviceCount()
    local = world.local_rank
    if local >= count:
        raise DistributedError(f"rank {world.rank} is process {local} on its machine, which has {count} "
                               f"GPU(s); start one process per GPU (mpiexec -n {count} per machine)")
    cupy.cuda.Device(local).use()
    return local


class NcclDevice:
    """All-reduce and broadcast of flat CuPy arrays through one NCCL communicator (the cupy
    record's ``communicator``)."""

    def __init__(self, world: "World", record: "Backend") -> None:
        cupy, nccl = _cupy()
        self.world, self.cupy, self.nccl, self.name = world, cupy, nccl, record.name
        uid = np.zeros(_ID_BYTES, dtype=np.int64)
        if world.rank == 0:
            uid[:] = nccl.get_unique_id()
        uid = world.broadcast_host(uid, 0, "the broadcast of the NCCL unique id")
        self.comm = nccl.NcclCommunicator(world.size, tuple(int(v) for v in uid), world.rank)
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                       "float16": nccl.NCCL_FLOAT16, "int64": nccl.NCCL_INT64}

    def _type(self, flat: Any) -> int:
        name = str(flat.dtype)
        if name not in self._types:
            raise DistributedError(f"NCCL transfers of {name} arrays on {self.name} are not supported; "
                                   f"use one of {sorted(self._types)}")
        return self._types[name]

    def _finish(self, what: str) -> None:
        stream = self.cupy.cuda.get_current_stream()
        self.world.wait(lambda: stream.done, what)

    def allreduce(self, flat: Any, what: str) -> Any:
        """The element-wise sum over the ranks of the contiguous 1-d CuPy array ``flat``, in place."""
        flat = self.cupy.ascontiguousarray(flat)
        stream = self.cupy.cuda.get_current_stream()
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._type(flat), self.nccl.NCCL_SUM,
                            stream.ptr)
        self._finish(what)
        return flat

    def broadcast(self, flat: Any, root: int, what: str) -> Any:
        """Rank ``root``'s contiguous 1-d CuPy array ``flat`` on every rank, in place."""
        flat = self.cupy.ascontiguousarray(flat)
        stream = self.cupy.cuda.get_current_stream()
        self.comm.bcast(flat.data.ptr, flat.size, self._type(flat), root, stream.ptr)
        self._finish(what)
        return flat

    def abort(self) -> None:
        """Abort the NCCL communicator, so no GPU waits on a rank that is gone."""
        self.comm.abort()


__all__ = ["NcclDevice", "select_gpu"]
