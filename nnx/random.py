"""Host-side random numbers: the one source of every random draw in nnx.

The array API has no random module, so initial weights, shuffling orders and
dropout masks are drawn here, in float64 on the host, from a seeded NumPy
generator, and then moved to the backend. One seed therefore gives the same
numbers on every backend.

Use :func:`seed` to fix the default generator, pass ``seed=`` (an int, a
``numpy.random.Generator`` or a ``numpy.random.RandomState``) to layers,
initialisers and ``fit``, and :func:`legacy` to reproduce code written with
``np.random.seed(n)``. :func:`get_state` / :func:`set_state` are the one
encoding of a generator's state (plain JSON data), used by layers, ``fit``,
``TrainState`` and checkpoints.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

HostRNG = Union[np.random.Generator, np.random.RandomState]

_default: list[np.random.Generator] = [np.random.default_rng(0)]


def seed(value: int) -> None:
    """Reseed nnx's default host generator (used when a layer gets no seed)."""
    _default[0] = np.random.default_rng(value)


def default() -> np.random.Generator:
    """The default host generator (seeded with 0 at import, or by :func:`seed`)."""
    return _default[0]


def is_generator(value: Any) -> bool:
    """Whether ``value`` is a host generator nnx draws from."""
    return isinstance(value, (np.random.Generator, np.random.RandomState))


def make_rng(seed: Any = None) -> HostRNG:
    """A host generator from ``None`` (the default), an int seed, or a generator.

    A ``numpy.random.Generator`` or a legacy ``numpy.random.RandomState`` is
    used as it is, so draws continue its stream.
    """
    if seed is None:
        return default()
    if is_generator(seed):
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


def sample_tokens(rng: HostRNG, logits: np.ndarray, temperature: float, top_k: int | None,
                  top_p: float | None) -> np.ndarray:
    """One token per row of host ``logits`` ``(batch, vocab)``: the largest at ``temperature`` 0, else a draw
    from ``softmax(logits / temperature)`` limited to the ``top_k`` most likely tokens and to the fewest
    whose probabilities add up to ``top_p`` (one uniform draw per row, so a seed gives the same tokens
    for the same logits on every backend)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    order = np.argsort(-logits, axis=-1, kind="stable")  # most likely first; ties by index
    ranked = np.take_along_axis(logits, order, axis=-1) / temperature
    p = np.exp(ranked - ranked[:, :1])
    if top_k is not None:
        p[:, top_k:] = 0.0
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None:  # keep a token while the more likely ones before it add up to less than top_p
        before = np.cumsum(p, axis=-1) - p
        p[before >= top_p] = 0.0
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random(logits.shape[0])
    cdf = np.cumsum(p, axis=-1)
    pick = np.minimum((cdf < u[:, None]).sum(axis=-1), np.count_nonzero(p, axis=-1) - 1)
    return np.take_along_axis(order, pick[:, None], axis=-1)[:, 0]


def full(shape: tuple[int, ...], value: float) -> np.ndarray:
    """A float64 host array of one value."""
    return np.full(shape, value, dtype=np.float64)


def asarray(values: Any) -> np.ndarray:
    """Values the user gave (lists, NumPy arrays) as a float64 host array."""
    return np.array(values, dtype=np.float64, copy=True)


# the one state encoding -------------------------------------------------------------


def get_state(rng: HostRNG | None = None) -> dict[str, Any]:
    """The state of a host generator (default: nnx's) as plain JSON data.

    ``{"kind": "Generator", "state": <bit_generator.state>}`` or
    ``{"kind": "RandomState", "state": <get_state(legacy=False)> with the key as a list}``.
    """
    rng = default() if rng is None else rng
    if isinstance(rng, np.random.RandomState):
        state = rng.get_state(legacy=False)
        inner = dict(state["state"])
        inner["key"] = [int(k) for k in np.asarray(inner["key"]).reshape(-1)]
        return {"kind": "RandomState", "state": {**state, "state": inner}}
    if isinstance(rng, np.random.Generator):
        return {"kind": "Generator", "state": rng.bit_generator.state}
    raise TypeError(f"expected a numpy.random.Generator or RandomState, got {type(rng).__name__}")


def set_state(rng: HostRNG | None, state: Any) -> None:
    """Put ``rng`` (default: nnx's generator) back into a state from :func:`get_state`.

    Also reads what nnx 0.1 checkpoints saved for a layer's own generator: a
    bare ``bit_generator.state`` dict or a legacy ``RandomState.get_state()``
    tuple. Raises ``ValueError`` when the state
    is for another kind of generator or does not fit it.
    """
    rng = default() if rng is None else rng
    kind = type(rng).__name__
    if isinstance(state, dict) and "bit_generator" in state and "kind" not in state:
        state = {"kind": kind, "state": state}
    elif isinstance(state, (list, tuple)) and len(state) == 5 and state[0] == "MT19937":
        name, key, pos, has_gauss, gauss = state
        state = {"kind": "RandomState", "state": {"bit_generator": name, "state": {"key": key, "pos": pos},
                                                  "has_gauss": has_gauss, "gauss": gauss}}
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"the saved random state is for a {got!r}, but the generator given is a {kind}")
    try:
        if isinstance(rng, np.random.RandomState):
            value = dict(state["state"])
            inner = dict(value["state"])
            inner["key"] = np.asarray(inner["key"], dtype=np.uint32)
            rng.set_state({**value, "state": inner})
        else:
            rng.bit_generator.state = state["state"]
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"the saved random state does not fit this {kind}: {exc}") from None


__all__ = [
    "HostRNG",
    "bernoulli",
    "default",
    "full",
    "get_state",
    "is_generator",
    "legacy",
    "make_rng",
    "normal",
    "permutation",
    "seed",
    "set_state",
    "uniform",
]
