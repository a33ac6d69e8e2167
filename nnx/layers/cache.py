"""KVCache: what a decoder has already computed for earlier positions, so each new position costs one step.

A forward given ``cache=`` (``MultiHeadAttention``, ``TransformerBlock``,
``TransformerDecoderBlock``, ``PositionalEmbedding``, ``SinusoidalPositions``, or a
``Sequential`` of them and position-wise layers) processes only the new positions: each
self-attention layer writes its new keys and values into buffers preallocated to
``max_len`` positions and attends over everything written so far; position layers
continue from the positions already seen; a cross-attention layer projects its memory
once. The first forward fixes the cache's batch size, dtype and backend; a later one that
differs, or one that would run past ``max_len``, is refused.
"""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.arguments import integer
from nnx.errors import BackendMismatchError, ConfigError, DTypeError, ShapeError
from nnx.layers import activations
from nnx.layers.dropout import Dropout
from nnx.layers.embedding import Embedding
from nnx.layers.linear import Linear
from nnx.layers.norm import LayerNorm, RMSNorm

# layers whose output at a position depends on that position's input alone: a cached forward
# may run them on the new positions only
_POSITIONWISE = (Linear, Embedding, LayerNorm, RMSNorm, Dropout, activations.Elementwise)


def check_positionwise(layer: Any, where: str) -> None:
    """Refuse ``layer`` in a cached forward unless it works position by position (or takes the cache)."""
    if not isinstance(layer, _POSITIONWISE) or isinstance(layer, activations.Softmax) and layer.axis not in (-1, 2):
        raise ConfigError(f"{where}: {layer!r} neither takes a cache nor works position by position, so a cached "
                          f"forward would be wrong; decode without the cache (run the whole sequence)")


class _Slot:
    """One layer's part of the cache: how many positions it holds, and its buffers."""

    __slots__ = ("layer", "length", "keys", "values", "memory")

    def __init__(self, layer: Any) -> None:
        self.layer, self.length = layer, 0
        self.keys = self.values = self.memory = None


class KVCache:
    """Keys and values of the positions decoded so far, for every attention layer of a model.

    Parameters
    ----------
    max_len : int
        The most positions the cache holds (its buffers are allocated once, at this size).

    ``length`` is how many positions it holds; ``reset()`` empties it (keeping its buffers)
    for a new sequence of the same batch size.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = integer(max_len, "max_len", "KVCache", minimum=1)
        self._slots: dict[int, _Slot] = {}
        self._kind: tuple[str, Any, int] | None = None  # backend, dtype, batch: fixed by the first forward

    @property
    def length(self) -> int:
        """How many positions the cache holds (the most any of its layers has seen)."""
        return max((s.length for s in self._slots.values()), default=0)

    def reset(self) -> None:
        """Forget every position (and every cross-attention memory); the buffers stay allocated."""
        for slot in self._slots.values():
            slot.length, slot.memory = 0, None

    def check(self, x: Any, where: Any) -> None:
        """Refuse ``x`` (``(batch, seq, ...)``) of another backend, float dtype or batch size than the
        cache's first forward, or one whose new positions would not fit."""
        kind = (_backend.backend_of(x), x.dtype, int(x.shape[0]))
        if self._kind is None:
            self._kind = kind
        backend, dtype, batch = self._kind
        if kind[0] != backend:
            raise BackendMismatchError(f"{where} got a cache filled on {backend!r} for an input on {kind[0]!r} "
                                       f"(argument cache); make a new nnx.KVCache for this backend")
        if kind[1] != dtype:
            raise DTypeError(f"{where} got a cache of dtype {_backend.dtype_name_of(dtype)} for an input of dtype "
                             f"{_backend.dtype_name(x)} (argument cache); make a new nnx.KVCache")
        if kind[2] != batch:
            raise ShapeError(f"{where} got a cache of batch size {batch} for an input of batch size {kind[2]} "
                             f"(argument cache); make a new nnx.KVCache, or keep the batch size")

    def _slot(self, layer: Any) -> _Slot:
        slot = self._slots.get(id(layer))
        if slot is None or slot.layer is not layer:
            slot = self._slots[id(layer)] = _Slot(layer)
        return slot

    def _fits(self, slot: _Slot, new: int, where: Any) -> int:
        start = slot.length
        if start + new > self.max_len:
            raise ShapeError(f"{where} got {new} new positions for a cache holding {start} of at most "
                             f"{self.max_len} (cache max_len); make an nnx.KVCache with a larger max_len")
        return start

    def positions(self, layer: Any, x: Any) -> int:
        """The position of ``x``'s first step (``(batch, seq, ...)``) for ``layer``; counts its steps."""
        self.check(x, layer)
        slot = self._slot(layer)
        start = self._fits(slot, x.shape[1], layer)
        slot.length = start + x.shape[1]
        return start

    def append(self, layer: Any, k: Any, v: Any) -> tuple[Any, Any, int]:
        """Write new keys and values (``(batch, heads, new, d)``) after ``layer``'s earlier ones; return all
        keys and values held and the position of the first new one."""
        slot = self._slot(layer)
        start = self._fits(slot, k.shape[2], layer)
        if slot.keys is None:
            xp, device = _backend.namespace_of(k), _backend.device_of(k)
            slot.keys = xp.zeros((*k.shape[:2], self.max_len, k.shape[3]), dtype=k.dtype, device=device)
            slot.values = xp.zeros((*v.shape[:2], self.max_len, v.shape[3]), dtype=v.dtype, device=device)
        end = start + k.shape[2]
        slot.keys[:, :, start:end, :] = k
        slot.values[:, :, start:end, :] = v
        slot.length = end
        return slot.keys[:, :, :end, :], slot.values[:, :, :end, :], start

    def memory(self, layer: Any, key: Any, value: Any) -> tuple[Any, Any] | None:
        """The projected keys and values ``layer`` stored for this ``key``/``value`` pair (the same
        objects), or ``None``; a different pair is projected again."""
        held = self._slot(layer).memory
        return held[2] if held is not None and held[0] is key and held[1] is value else None

    def keep_memory(self, layer: Any, key: Any, value: Any, projected: tuple[Any, Any]) -> None:
        """Store ``layer``'s projected keys and values of ``key``/``value``."""
        self._slot(layer).memory = (key, value, projected)


__all__ = ["KVCache"]
