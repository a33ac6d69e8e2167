"""Which samples each rank trains on, and how much its gradient weighs.

Every rank draws the same epoch order from the shared seeded host generator.
With ``size`` ranks and a per-rank batch ``b``, global step ``i`` covers the
samples ``order[i*G:(i+1)*G]`` with ``G = size * b`` (exactly the batch of a
single process with batch size ``G``), and rank ``r`` takes the ``r``-th of
``size`` contiguous, as-equal-as-possible parts of it. No sample is used twice
and none is dropped.

The uneven tail: the last step may hold ``m < G`` samples, split as evenly as
possible (ranks may get one sample more or less; with ``m < size`` some get
none). Each rank's gradient is weighted by its share, ``m_r / m`` for a loss
that averages over the batch (``reduction="mean"``) and 1 for a loss that adds
(``reduction="sum"``, :class:`~nnx.SumSquaredError`), so the summed gradient is
the single process's gradient of that step.
"""

from __future__ import annotations

from typing import Any


def part(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part ``[a, b)`` of the samples ``[lo, hi)`` split over ``size`` ranks."""
    m = hi - lo
    return lo + (rank * m) // size, lo + ((rank + 1) * m) // size


def loss_adds(loss: Any) -> bool:
    """Whether ``loss`` adds its samples' losses (then each rank's gradient weighs 1, else its share)."""
    from nnx.losses import SumSquaredError

    return isinstance(loss, SumSquaredError) or getattr(loss, "reduction", "mean") == "sum"


def weight(lo: int, hi: int, rank: int, size: int, adds: bool) -> float:
    """The weight of rank ``rank``'s gradient in the step over samples ``[lo, hi)``."""
    if adds:
        return 1.0
    a, b = part(lo, hi, rank, size)
    return (b - a) / (hi - lo)


__all__ = ["loss_adds", "part", "weight"]
