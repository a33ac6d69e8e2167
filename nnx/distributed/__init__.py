"""Data-parallel training over MPI (mpi4py), with NCCL between CUDA GPUs (CuPy).

Launch one process per CPU socket, machine or GPU with ``mpiexec -n N``; in
each, ``nnx.fit(..., world=nnx.distributed.init())`` trains its
shard of every step and the gradients are summed over the processes. mpi4py
and CuPy are imported only when a run needs them, so ``import nnx`` works
without them.

* :func:`init` / :class:`World`: rank, world size, collectives with a deadline; the
  world :func:`nnx.fit` trains in (``timeout``, ``bucket_bytes``).
* :class:`GradientBuckets`: gradients summed in a few flat buffers.
* :func:`broadcast_model`, :func:`check_same_model`, :func:`average_buffers`:
  one model over the ranks.
* :mod:`~nnx.distributed.shards`: which samples each rank takes, the uneven tail.
"""

from nnx.distributed import shards
from nnx.distributed.buckets import GradientBuckets, plan_buckets
from nnx.distributed.sync import average_buffers, broadcast_model, check_same_model
from nnx.distributed.world import World, init

__all__ = ["GradientBuckets", "World", "average_buffers", "broadcast_model", "check_same_model",
           "init", "plan_buckets", "shards"]
