"""TransformerDecoderBlock: causal self-attention, cross-attention to an encoder's output, MLP (pre-LayerNorm)."""

from __future__ import annotations

from typing import Any, Callable

from nnx import random as _random
from nnx.errors import ShapeError
from nnx.layers.activations import GELU
from nnx.layers.attention import MultiHeadAttention
from nnx.layers.base import Layer, holds_no_arrays
from nnx.layers.checks import check_arguments, check_float
from nnx.layers.dropout import Dropout
from nnx.layers.linear import Linear
from nnx.layers.norm import LayerNorm
from nnx.layers.registry import register_layer


@register_layer
class TransformerDecoderBlock(Layer):
    """A pre-LayerNorm decoder block on targets ``x`` ``(batch, seq, embed_dim)`` and an encoder's
    output ``memory`` ``(batch, seq_m, embed_dim)``:

    ``x = x + drop1(self_attn(norm1(x)))`` (causal), ``x = x + drop2(cross_attn(norm2(x), memory))``,
    then ``x = x + drop3(fc2(gelu(fc1(norm3(x)))))``, as ``torch.nn.TransformerDecoderLayer(norm_first=True)``
    with a tanh-GELU. ``forward(x, memory, memory_key_padding_mask=None, key_padding_mask=None, cache=None)``:
    ``memory_key_padding_mask`` (boolean ``(batch, seq_m)``, ``True`` = padded) hides padded encoder
    positions, ``key_padding_mask`` padded targets; ``cache`` (a :class:`~nnx.KVCache`) decodes
    incrementally. ``backward(grad)`` returns ``(d_x, d_memory)``.
    """

    _children = ("norm1", "self_attn", "drop1", "norm2", "cross_attn", "drop2", "norm3", "fc1", "act", "fc2",
                 "drop3")
    takes_cache = True
    arguments = ("embed_dim", "num_heads", "hidden_dim", "dropout", "eps", "dtype")

    def __init__(self, embed_dim: int, num_heads: int, hidden_dim: int | None = None, dropout: float = 0.0,
                 eps: float = 1e-5, *, seed: Any = None, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or 4 * embed_dim
        check_arguments("TransformerDecoderBlock", dtype, embed_dim=embed_dim, num_heads=num_heads,
                        hidden_dim=hidden_dim)
        self.embed_dim, self.num_heads, self.hidden_dim = embed_dim, num_heads, hidden_dim
        self.dropout, self.eps, self.dtype = float(dropout), float(eps), dtype
        seeds = [int(s) for s in _random.make_rng(seed).integers(0, 2**31, 7)]
        f = {"dtype": dtype, "backend": backend}
        self.norm1 = LayerNorm(embed_dim, eps, **f)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout, causal=True, seed=seeds[0], **f)
        self.drop1 = Dropout(dropout, seed=seeds[1])
        self.norm2 = LayerNorm(embed_dim, eps, **f)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads, dropout, seed=seeds[2], **f)
        self.drop2 = Dropout(dropout, seed=seeds[3])
        self.norm3 = LayerNorm(embed_dim, eps, **f)
        self.fc1 = Linear(embed_dim, hidden_dim, seed=seeds[4], **f)
        self.act = GELU()
        self.fc2 = Linear(hidden_dim, embed_dim, seed=seeds[5], **f)
        self.drop3 = Dropout(dropout, seed=seeds[6])

    def forward(self, x: Any, memory: Any = None, *, memory_key_padding_mask: Any = None,
                key_padding_mask: Any = None, cache: Any = None) -> Any:
        check_float(x, self)
        for name, t in (("x", x), ("memory", memory)):
            if t is None or t.ndim != 3 or t.shape[-1] != self.embed_dim:
                got = "nothing" if t is None else f"shape {tuple(t.shape)}"
                raise ShapeError(f"{self!r} expected {name} of shape (batch, seq, {self.embed_dim}), got {got}"
                                 f"{'; pass the encoder output as memory' if name == 'memory' else ''}")
        if memory.shape[0] != x.shape[0]:
            raise ShapeError(f"{self!r} expected memory of the targets' batch size {x.shape[0]}, got "
                             f"{tuple(memory.shape)}")
        a = self.self_attn.forward(self.norm1.forward(x), key_padding_mask=key_padding_mask, cache=cache)
        x = x + self.drop1.forward(a)
        c = self.cross_attn.forward(self.norm2.forward(x), memory, memory, key_padding_mask=memory_key_padding_mask,
                                    cache=cache)
        x = x + self.drop2.forward(c)
        m = self.fc2.forward(self.act.forward(self.fc1.forward(self.norm3.forward(x))))
        return x + self.drop3.forward(m)

    def backward(self, grad: Any) -> tuple[Any, Any]:
        g = self.fc1.backward(self.act.backward(self.fc2.backward(self.drop3.backward(grad))))
        grad = grad + self.norm3.backward(g)
        dq, dk, dv = self.cross_attn.backward(self.drop2.backward(grad))
        grad = grad + self.norm2.backward(dq)
        return grad + self.norm1.backward(self.self_attn.backward(self.drop1.backward(grad))), dk + dv

    config_size = holds_no_arrays  # its arrays are its children's

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """``None``: it takes two inputs (targets and memory), so it runs inside a model that makes both."""
        return None


__all__ = ["TransformerDecoderBlock"]
