"""Shapes with sizes not known until run time.

The array API lets ``x.shape`` hold ``None`` for a size a library does not know
yet: ndonnx's arrays, which record an ONNX graph, have ``None`` on a dynamic
batch axis. Layers that build a shape from their input's shape go through
these two helpers, which give the plain call wherever every size is known
(NumPy, CuPy, torch: the same arrays, bit for bit).
"""

from __future__ import annotations

from typing import Any, Sequence

from nnx import backend as _backend
from nnx.errors import ShapeError


def reshape_sizes(shape: Sequence[int | None]) -> tuple[int, ...]:
    """``shape`` for ``reshape``, an unknown size (``None``) as ``-1``; two unknown sizes are a
    :class:`~nnx.errors.ShapeError` (a reshape can infer one size, not two)."""
    if sum(d is None for d in shape) > 1:
        raise ShapeError(f"cannot reshape to {tuple(shape)}: more than one size is unknown until run time (None); "
                         f"give all but one axis of the input a fixed size (an exported model's input_shape)")
    return tuple(-1 if d is None else d for d in shape)


def full_like_axes(x: Any, shape: Sequence[int | None], value: float, dtype: Any = None) -> Any:
    """``xp.full(shape, value)`` beside ``x``; an unknown size in ``shape`` (``None``) is ``x``'s size on
    the same axis, taken from ``x`` itself (zeros of a one-element slice of it, broadcast)."""
    xp = _backend.namespace_of(x)
    dtype = x.dtype if dtype is None else dtype
    if all(d is not None for d in shape):
        return xp.full(tuple(shape), value, dtype=dtype, device=_backend.device_of(x))
    probe = tuple(slice(None) if d is None else slice(0, 1) for d in shape) + (slice(0, 1),) * (x.ndim - len(shape))
    sizes = xp.zeros_like(x[probe], dtype=dtype)
    if x.ndim > len(shape):
        sizes = xp.reshape(sizes, reshape_sizes(tuple(d if d is None else 1 for d in shape)))
    known = tuple(1 if d is None else d for d in shape)
    full = sizes + xp.full(known, value, dtype=dtype, device=_backend.device_of(x))
    return xp.reshape(full, reshape_sizes(shape)) if sum(d is None for d in shape) == 1 else full  # pins the sizes


def product(*sizes: int | None) -> int | None:
    """The product of sizes, ``None`` if one is unknown (so ``reshape_sizes`` makes it ``-1``)."""
    total = 1
    for d in sizes:
        if d is None:
            return None
        total *= d
    return total
