"""The processes of a run, as :func:`nnx.fit` sees them: one epoch loop for one process or many.

A world has a ``rank`` and a ``size`` and says what the loop does between
processes: checks and copies before the first epoch (:meth:`begin`), this
rank's part of a step and its weight (:meth:`share`), the sum of the gradients
between backward and update (:meth:`sum_gradients`), sums of host numbers
(:meth:`sum_host`), the end of an epoch (:meth:`end_epoch`) and a failure
(:meth:`abort`). Rank 0 shows progress and writes the checkpoint.
:class:`LocalWorld`, the default, is one process; :func:`nnx.distributed.init`
gives the world of an MPI job.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol


class World(Protocol):
    """What the epoch loop needs from the processes of a run (see the module)."""

    rank: int
    size: int

    def settings(self) -> dict[str, Any]:
        """Run settings a checkpoint records beside fit's own (resuming checks them)."""

    def begin(self, model: Any, loss: Any, optimizer: Any, run: Any) -> None:
        """Before the first epoch: make every rank's model and run the same."""

    def share(self, lo: int, hi: int) -> tuple[int, int, float]:
        """This rank's samples ``[a, z)`` of the step over ``[lo, hi)`` and its gradient's weight."""

    def sum_gradients(self, weight: float) -> None:
        """Replace every gradient by the sum over the ranks of ``weight`` times it."""

    def sum_host(self, values: list[float], what: str) -> list[float]:
        """The element-wise sum over the ranks of host numbers."""

    def end_epoch(self, model: Any) -> None:
        """At the end of each epoch (before validation and the checkpoint)."""

    def abort(self, error: BaseException) -> NoReturn:
        """Stop the run on every rank with ``error``."""


class LocalWorld:
    """A world of one process: every operation is the identity."""

    rank = 0
    size = 1

    def __repr__(self) -> str:
        return "LocalWorld()"

    def settings(self) -> dict[str, Any]:
        return {}

    def begin(self, model: Any, loss: Any, optimizer: Any, run: Any) -> None:
        pass

    def share(self, lo: int, hi: int) -> tuple[int, int, float]:
        return lo, hi, 1.0

    def sum_gradients(self, weight: float) -> None:
        pass

    def sum_host(self, values: list[float], what: str) -> list[float]:
        return values

    def end_epoch(self, model: Any) -> None:
        pass

    def abort(self, error: BaseException) -> NoReturn:
        raise error


__all__ = ["LocalWorld", "World"]
