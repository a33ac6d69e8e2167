"""Embedding: integer indices (token ids) to rows of a learned table."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import random as _random
from nnx.arguments import integer
from nnx.errors import DTypeError, IndexRangeError
from nnx.layers.base import Parameter, ParamLayer, count
from nnx.layers.checks import check_arguments
from nnx.layers.registry import register_layer
from nnx.layers.sizes import reshape_sizes

# Rows of the one-hot matrix the weight gradient is built from, at most, per matrix product.
_CHUNK_ELEMENTS = 2**22


@register_layer
class Embedding(ParamLayer):
    """Rows of a ``(num_embeddings, embedding_dim)`` table for integer indices of any shape:
    ``(batch, length)`` → ``(batch, length, embedding_dim)``.

    ``padding_idx``: a row that starts at zero and never receives a gradient
    (for the padding token of sequences of different lengths). Indices are
    checked against the table on every forward (CuPy would otherwise wrap an
    out-of-range index silently): one small device-to-host read per call.
    Initial rows are drawn from ``init`` (standard normal by default) with ``seed``.
    The gradient of the table is a matrix product with one-hot rows (the array
    API has no scatter-add), in chunks, so memory stays bounded.
    """

    takes_indices = True

    arguments = ("num_embeddings", "embedding_dim", "padding_idx", "dtype")

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        init: str | _init.Initializer = "normal",
        seed: Any = None,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        num_embeddings, embedding_dim = check_arguments("Embedding", dtype, num_embeddings=num_embeddings,
                                                        embedding_dim=embedding_dim)
        if padding_idx is not None:  # a bool would pick row 0 or 1 and zero it
            padding_idx = integer(padding_idx, "padding_idx", "Embedding", 0, num_embeddings - 1)
        self.num_embeddings, self.embedding_dim, self.padding_idx, self.dtype = (
            num_embeddings, embedding_dim, padding_idx, dtype)
        shape = (num_embeddings, embedding_dim)
        table = _init.draw(init, shape, _random.make_rng(seed), shape)
        if padding_idx is not None:
            table[padding_idx] = 0.0
        self.weight = Parameter(_backend.to_device(table, backend or _backend.current(), dtype), "weight")

    def forward(self, indices: Any) -> Any:
        where = repr(self)
        _backend.check_backend(indices, _backend.backend_of(self.weight.data), where)
        xp = _backend.namespace_of(indices)
        if not xp.isdtype(indices.dtype, "integral"):
            raise DTypeError(f"{where} expected integer indices, got dtype {_backend.dtype_name(indices)}; "
                             f"move token ids with nnx.to_device(ids, dtype='int64')")
        flat = xp.astype(xp.reshape(indices, (-1,)), xp.int64)  # uint8 ids compared with 256 must not wrap
        if (_backend.holds_values(flat) and flat.shape[0]
                and bool(xp.any(flat < 0) | xp.any(flat >= self.num_embeddings))):
            lo, hi = int(xp.min(flat)), int(xp.max(flat))
            bad = lo if lo < 0 else hi
            raise IndexRangeError(f"{where} got index {bad} (indices range from {lo} to {hi}), but the table has "
                                  f"{self.num_embeddings} rows: valid indices are 0 to {self.num_embeddings - 1}")
        self.save_for_backward(flat)
        rows = xp.take(self.weight.data, flat, axis=0)
        return xp.reshape(rows, reshape_sizes((*indices.shape, self.embedding_dim)))

    def backward(self, grad: Any) -> None:
        """Adds into the table's gradient; returns ``None``: integer indices have no gradient."""
        (flat,) = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        g = xp.reshape(grad, (-1, self.embedding_dim))
        device = _backend.device_of(grad)
        rows = xp.arange(self.num_embeddings, dtype=flat.dtype, device=device)
        if self.padding_idx is not None:
            rows = xp.where(rows == self.padding_idx, -1, rows)  # matches no index: no gradient
        n, step = int(flat.shape[0]), max(1, _CHUNK_ELEMENTS // self.num_embeddings)
        total = None
        for start in range(0, n, step):
            stop = min(start + step, n)
            onehot = xp.astype(flat[start:stop, None] == rows, g.dtype)
            part = xp.matrix_transpose(onehot) @ g[start:stop, ...]
            total = part if total is None else total + part
        if total is None:
            total = xp.zeros(tuple(self.weight.data.shape), dtype=g.dtype, device=device)
        self.weight.accumulate(total)
        return None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape, self.embedding_dim)

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return count(config.get("num_embeddings")) * count(config.get("embedding_dim"))

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Sequences of 8 indices into the table."""
        return rng.integers(0, self.num_embeddings, (batch, 8))


__all__ = ["Embedding"]
