"""Host-side random numbers: the one source of every random draw in nnx.

The array API has no random module, so initial weights, shuffling orders and
dropout masks are drawn here, in float64 on the host, from a seeded NumPy
generator, and then moved to the backend. One seed therefore gives the same
numbers on every backend.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

HostRNG = Union[np.random.Generator, np.random.RandomState]

_default: list[np.random.Generator] = [np.random.default_rng(0)]


def reseed(seed: int) -> None:
    """Reset the default host generator (used when no seed or rng is given)."""
    _default[0] = np.random.default_rng(seed)


def default() -> np.random.Generator:
    """The default host generator (seeded with 0 at import, or by :func:`reseed`)."""
    return _default[0]


def make_rng(seed: Any = None) -> HostRNG:
    """A host generator from ``None`` (the default), an int seed, or a generator.

    A ``numpy.random.Generator`` or a legacy ``numpy.random.RandomState`` is
    used as it is, so draws continue its stream.
    """
    if seed is None:
        return default()
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"expected an int seed, a numpy.random.Generator or RandomState, got {type(seed).__name__}"
    )


def legacy(seed: int) -> np.random.RandomState:
    """NumPy's legacy generator: ``legacy(1)`` draws what ``np.random.seed(1)`` then
    ``np.random.random(...)`` / ``np.random.rand(...)`` / ``np.random.normal(...)`` draw."""
    return np.random.RandomState(seed)


def uniform(rng: HostRNG, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """Uniform on [low, high), computed as ``low + (high - low) * u`` in float64."""
    return low + (high - low) * rng.random(shape)


def normal(rng: HostRNG, shape: tuple[int, ...], mean: float, std: float) -> np.ndarray:
    """Normal draws in float64 (the generator's own ``normal``)."""
    return np.asarray(rng.normal(mean, std, shape), dtype=np.float64)


def permutation(rng: HostRNG, n: int) -> np.ndarray:
    """A random order of ``range(n)``."""
    return np.asarray(rng.permutation(n))


def bernoulli(rng: HostRNG, shape: tuple[int, ...], p_keep: float) -> np.ndarray:
    """A float64 mask of ones (probability ``p_keep``) and zeros."""
    return (rng.random(shape) < p_keep).astype(np.float64)


def full(shape: tuple[int, ...], value: float) -> np.ndarray:
    """A float64 host array of one value."""
    return np.full(shape, value, dtype=np.float64)


def asarray(values: Any) -> np.ndarray:
    """Values the user gave (lists, NumPy arrays) as a float64 host array."""
    return np.array(values, dtype=np.float64, copy=True)


def get_state(rng: HostRNG) -> Any:
    """A copy of a generator's state (to replay its draws with :func:`set_state`)."""
    if isinstance(rng, np.random.RandomState):
        return rng.get_state()
    return rng.bit_generator.state


def set_state(rng: HostRNG, state: Any) -> None:
    """Restore a state taken with :func:`get_state`."""
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state
