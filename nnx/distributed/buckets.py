"""Gradients summed over the ranks in a few flat buffers (buckets), not one call per parameter.

The parameters an optimizer updates are grouped by dtype, in order, into
buckets of at most ``bucket_bytes``; a step makes one flat array per bucket
(each gradient scaled by this rank's weight), sums it over the ranks, and cuts
the sum back into the parameters' gradients. Each bucket also carries one flag
per parameter (1 where this rank has a gradient), so a parameter gets a
gradient when any rank had one, and a rank that saw no samples this step
(the uneven tail) still takes part with zeros.
"""

from __future__ import annotations

from typing import Any, Sequence

from nnx import backend as _backend
from nnx.arguments import integer
from nnx.layers import Parameter

DEFAULT_BUCKET_BYTES = 25 * 2**20


def _itemsize(p: Parameter) -> int:
    xp = _backend.namespace_of(p.data)
    info = xp.finfo(p.data.dtype) if xp.isdtype(p.data.dtype, "real floating") else xp.iinfo(p.data.dtype)
    return info.bits // 8


def plan_buckets(params: Sequence[Parameter], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[list[Parameter]]:
    """Group ``params`` into buckets: one dtype and backend per bucket, in order, at most
    ``bucket_bytes`` each (a larger parameter gets a bucket of its own)."""
    bucket_bytes = integer(bucket_bytes, "bucket_bytes", "plan_buckets", minimum=1)
    open_buckets: dict[tuple[str, str], tuple[list[Parameter], int]] = {}
    buckets: list[list[Parameter]] = []
    for p in params:
        key = (_backend.backend_of(p.data), _backend.dtype_name(p.data))
        nbytes = p.size * _itemsize(p)
        current, used = open_buckets.get(key, ([], 0))
        if current and used + nbytes > bucket_bytes:
            current, used = [], 0
        if not current:
            buckets.append(current)
        current.append(p)
        open_buckets[key] = (current, used + nbytes)
    return buckets


class GradientBuckets:
    """Sums the gradients of ``params`` over the ranks of ``world``, bucket by bucket.

    ``reduce(weight)`` replaces each parameter's gradient ``g`` by the sum over
    the ranks of ``weight * g``; with weights that add up to 1 that is the
    weighted mean (see :mod:`nnx.distributed.shards` for the weights fit uses).
    """

    def __init__(self, params: Sequence[Parameter], world: Any, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.world = world
        self.buckets = plan_buckets(params, bucket_bytes)

    def __len__(self) -> int:
        return len(self.buckets)

    def reduce(self, weight: float) -> None:
        """Replace every gradient by the sum over the ranks of ``weight`` times it (see the class)."""
        for bucket in self.buckets:
            self._reduce_bucket(bucket, weight)

    def _reduce_bucket(self, bucket: list[Parameter], weight: float) -> None:
        ref = bucket[0].data
        xp = _backend.namespace_of(ref)
        name = _backend.backend_of(ref)
        parts = []
        flags = []
        for p in bucket:
            if p.grad is None:
                parts.append(xp.zeros((p.size,), dtype=ref.dtype, device=_backend.device_of(ref)))
                flags.append(0.0)
            else:
                parts.append(xp.reshape(p.grad, (p.size,)))
                flags.append(1.0)
        parts.append(_backend.to_device(flags, name, dtype=_backend.dtype_name(ref)))
        flat = xp.concat(parts)
        if weight != 1.0:  # the flags scale too: a rank with a gradient has a weight above 0
            flat = flat * weight
        flat = self.world.device(name).allreduce(flat, f"the all-reduce of {len(bucket)} gradient(s)")
        had = _backend.to_host(flat[-len(bucket):])
        offset = 0
        for p, flag in zip(bucket, had):
            if flag > 0:
                p.grad = xp.reshape(flat[offset:offset + p.size], p.shape)
            offset += p.size


__all__ = ["DEFAULT_BUCKET_BYTES", "GradientBuckets", "plan_buckets"]
