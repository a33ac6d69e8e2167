"""Seeds and generators for nnx's host-side random draws.

Use :func:`seed` to fix the default generator, pass ``seed=`` (an int, a
``numpy.random.Generator`` or a ``numpy.random.RandomState``) to layers and
initialisers, and :func:`legacy` to reproduce code written with
``np.random.seed(n)``.
"""

from __future__ import annotations

from nnx.backend import host

legacy = host.legacy
make_rng = host.make_rng


def seed(value: int) -> None:
    """Reseed nnx's default host generator (used when a layer gets no seed)."""
    host.reseed(value)


__all__ = ["legacy", "make_rng", "seed"]
