"""The transformer block (pre-LayerNorm) and position information for sequences of vectors."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import random as _random
from nnx.errors import ShapeError
from nnx.layers.activations import GELU
from nnx.layers.attention import MultiHeadAttention
from nnx.layers.base import Layer, Parameter, ParamLayer, count, holds_no_arrays, takes_any_input
from nnx.arguments import integer
from nnx.layers.checks import check_arguments, check_float, check_switches
from nnx.layers.dropout import Dropout
from nnx.layers.linear import Linear
from nnx.layers.norm import LayerNorm
from nnx.layers.registry import register_layer


def _check_sequence(x: Any, dim: int, where: Any) -> None:
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ShapeError(f"{where} expected input of shape (batch, seq, {dim}), got {tuple(x.shape)}")


#: the initialisations TransformerBlock draws by name
BLOCK_INITS = ("default", "gpt2")


@register_layer
class TransformerBlock(Layer):
    """A pre-LayerNorm transformer block on ``(batch, seq, embed_dim)``:

    ``x = x + dropout(attn(norm1(x)))`` then ``x = x + dropout(fc2(gelu(fc1(norm2(x)))))``.

    ``attn`` is a :class:`MultiHeadAttention` (``causal=True`` for a decoder such as
    GPT; ``key_padding_mask``/``attn_mask`` pass through ``forward``), ``fc1`` maps
    to ``hidden_dim`` (default ``4 * embed_dim``) and ``fc2`` back. ``dropout``
    applies to the attention weights and to both branches. Sub-layers draw their
    weights and dropout generators from ``seed``. The GELU is nnx's tanh form.

    ``bias=False`` leaves out the biases of the attention's and the MLP's products (the
    norms keep their shift). ``init="gpt2"`` draws those products' weights as GPT-2 does:
    ``Normal(0, 0.02)``, and the two projections back into the residual stream (``attn``'s
    output and ``fc2``) ``Normal(0, 0.02 / sqrt(2 * num_blocks))``, for a stack of
    ``num_blocks`` blocks; biases start at 0. ``init="default"`` keeps each layer's own.
    ``cache`` (a :class:`~nnx.KVCache`) passes on to ``attn`` for incremental decoding.
    """

    takes_cache = True

    _children = ("norm1", "attn", "drop1", "norm2", "fc1", "act", "fc2", "drop2")

    arguments = ("embed_dim", "num_heads", "hidden_dim", "dropout", "causal", "eps", "bias", "dtype")

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        eps: float = 1e-5,
        *,
        bias: bool = True,
        init: str = "default",
        num_blocks: int = 1,
        seed: Any = None,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        hidden_dim = 4 * integer(embed_dim, "embed_dim", "TransformerBlock") if hidden_dim is None else hidden_dim
        embed_dim, num_heads, hidden_dim = check_arguments(
            "TransformerBlock", dtype, embed_dim=embed_dim, num_heads=num_heads, hidden_dim=hidden_dim)
        (causal,) = check_switches("TransformerBlock", causal=causal)
        self.embed_dim, self.num_heads, self.hidden_dim = embed_dim, num_heads, hidden_dim
        (bias,) = check_switches("TransformerBlock", bias=bias)
        if init not in BLOCK_INITS:
            raise ValueError(f"TransformerBlock init must be one of {BLOCK_INITS}, got {init!r}")
        (num_blocks,) = check_arguments("TransformerBlock", dtype, num_blocks=num_blocks)
        self.dropout, self.causal, self.eps, self.dtype = float(dropout), causal, float(eps), dtype
        self.bias = bias
        rng = _random.make_rng(seed)
        seeds = [int(s) for s in rng.integers(0, 2**31, 5)]
        f = {"dtype": dtype, "backend": backend}
        self.norm1 = LayerNorm(embed_dim, eps, **f)
        self.attn = MultiHeadAttention(embed_dim, num_heads, dropout, bias, causal=causal, seed=seeds[0], **f)
        self.drop1 = Dropout(dropout, seed=seeds[1])
        self.norm2 = LayerNorm(embed_dim, eps, **f)
        self.fc1 = Linear(embed_dim, hidden_dim, bias, seed=seeds[2], **f)
        self.act = GELU()
        self.fc2 = Linear(hidden_dim, embed_dim, bias, seed=seeds[3], **f)
        self.drop2 = Dropout(dropout, seed=seeds[4])
        if init == "gpt2":
            residual = 0.02 / math.sqrt(2 * num_blocks)
            for p, std in ((self.attn.in_proj_weight, 0.02), (self.attn.out_proj_weight, residual),
                           (self.fc1.weight, 0.02), (self.fc2.weight, residual)):
                p.data = _backend.to_device(_random.normal(rng, p.shape, 0.0, std), backend or _backend.current(),
                                            dtype)

    def forward(self, x: Any, *, key_padding_mask: Any = None, attn_mask: Any = None, cache: Any = None) -> Any:
        check_float(x, self)
        _check_sequence(x, self.embed_dim, self)
        a = self.attn.forward(self.norm1.forward(x), key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                              cache=cache)
        x = x + self.drop1.forward(a)
        m = self.fc2.forward(self.act.forward(self.fc1.forward(self.norm2.forward(x))))
        return x + self.drop2.forward(m)

    def backward(self, grad: Any) -> Any:
        g = self.fc1.backward(self.act.backward(self.fc2.backward(self.drop2.backward(grad))))
        grad = grad + self.norm2.backward(g)
        return grad + self.norm1.backward(self.attn.backward(self.drop1.backward(grad)))

    config_size = holds_no_arrays  # its arrays are its children's

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal sequences of 8 vectors of ``embed_dim``."""
        return _random.normal(rng, (batch, 8, self.embed_dim), 0.0, 1.0)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.attn.output_shape(input_shape)

    def __repr__(self) -> str:
        return (f"TransformerBlock({self.embed_dim}, {self.num_heads}, hidden_dim={self.hidden_dim}, "
                f"dropout={self.dropout}, causal={self.causal})")


@register_layer
class PositionalEmbedding(ParamLayer):
    """Adds a learned vector per position: ``x + weight[:seq]`` for ``x`` of shape
    ``(batch, seq, embed_dim)`` with ``seq <= max_len`` (place it after an
    :class:`~nnx.Embedding`). The table starts as draws from ``init`` (default ``Normal(0, 0.02)``)
    with ``seed``. With ``cache`` (a :class:`~nnx.KVCache`) positions continue from those it holds."""

    arguments = ("max_len", "embed_dim", "dtype")

    def __init__(self, max_len: int, embed_dim: int, *, init: str | _init.Initializer | None = None,
                 seed: Any = None, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        check_arguments("PositionalEmbedding", dtype, max_len=max_len, embed_dim=embed_dim)
        self.max_len, self.embed_dim, self.dtype = max_len, embed_dim, dtype
        shape = (max_len, embed_dim)
        table = _init.draw(init or _init.Normal(0.0, 0.02), shape, _random.make_rng(seed), shape)
        self.weight = Parameter(_backend.to_device(table, backend or _backend.current(), dtype), "weight")

    takes_cache = True

    def forward(self, x: Any, *, cache: Any = None) -> Any:
        self._check_input(x, self)
        _check_sequence(x, self.embed_dim, self)
        start = 0 if cache is None else cache.positions(self, x)
        if start + x.shape[1] > self.max_len:
            raise ShapeError(f"{self!r} holds {self.max_len} positions but got a sequence of {x.shape[1]}"
                             f"{f' after {start} cached ones' if start else ''}; build it with a larger max_len")
        if start:  # backward's table gradient assumes positions from 0: none after a later cached forward
            self.drop_saved()
        else:
            self.save_for_backward(x.shape[1])
        return x + self.weight.data[start:start + x.shape[1], :]

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        (seq,) = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        used = xp.sum(grad, axis=0)
        if seq < self.max_len:
            rest = xp.zeros((self.max_len - seq, self.embed_dim), dtype=grad.dtype, device=_backend.device_of(grad))
            used = xp.concat((used, rest), axis=0)
        self.weight.accumulate(used)
        return grad if input_grad else None

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return count(config.get("max_len")) * count(config.get("embed_dim"))

    example_input = takes_any_input



def _sinusoids(xp: Any, length: int, dim: int, dtype: Any, device: Any) -> Any:
    pos = xp.astype(xp.arange(length, device=device), xp.float64)[:, None]
    freq = xp.exp(xp.astype(xp.arange(0, dim, 2, device=device), xp.float64) * (-math.log(10000.0) / dim))
    angles = pos * freq[None, :]
    table = xp.reshape(xp.stack((xp.sin(angles), xp.cos(angles)), axis=-1), (length, -1))
    return xp.astype(table[:, :dim], dtype)


def sinusoidal_positions(length: int, dim: int, *, dtype: str = "float32", backend: str | None = None) -> Any:
    """The fixed ``(length, dim)`` position table of Vaswani et al. (2017): column ``2i`` is
    ``sin(pos / 10000^(2i/dim))`` and column ``2i + 1`` the cosine of the same angle."""
    check_arguments("sinusoidal_positions", dtype, length=length, dim=dim)
    name = backend or _backend.current()
    xp = _backend.namespace(name)
    return _sinusoids(xp, length, dim, getattr(xp, dtype), None)


@register_layer
class SinusoidalPositions(Layer):
    """Adds the fixed sine/cosine position table (:func:`sinusoidal_positions`) to
    ``(batch, seq, embed_dim)`` inputs; it has no parameters and takes any length. With ``cache``
    (a :class:`~nnx.KVCache`) positions continue from those it holds."""

    config_size = holds_no_arrays
    example_input = takes_any_input
    takes_cache = True

    arguments = ("embed_dim",)

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        check_arguments("SinusoidalPositions", embed_dim=embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: Any, *, cache: Any = None) -> Any:
        xp = check_float(x, self)
        _check_sequence(x, self.embed_dim, self)
        start = 0 if cache is None else cache.positions(self, x)
        self.save_for_backward(None)
        table = _sinusoids(xp, start + x.shape[1], self.embed_dim, x.dtype, _backend.device_of(x))
        return x + table[start:, :]

    def backward(self, grad: Any) -> Any:
        self.saved_tensors()
        return grad


__all__ = ["PositionalEmbedding", "SinusoidalPositions", "TransformerBlock", "sinusoidal_positions"]
