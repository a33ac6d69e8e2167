"""TransformerSeq2Seq: an encoder–decoder transformer over token ids, trained with teacher forcing and
decoded greedily with a KVCache."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import random as _random
from nnx.arguments import integer
from nnx.errors import ShapeError
from nnx.layers.base import Layer, holds_no_arrays
from nnx.layers.cache import KVCache
from nnx.layers.checks import check_arguments
from nnx.layers.collections import LayerList
from nnx.layers.decoder import TransformerDecoderBlock
from nnx.layers.embedding import Embedding
from nnx.layers.linear import Linear
from nnx.layers.norm import LayerNorm
from nnx.layers.registry import register_layer
from nnx.layers.transformer import PositionalEmbedding, TransformerBlock


@register_layer
class TransformerSeq2Seq(Layer):
    """Source ids ``(batch, S)`` (``S <= source_len``) to target logits ``(batch, T, target_vocab)``.

    The encoder is an Embedding, learned positions and ``num_layers`` :class:`~nnx.TransformerBlock`\\ s
    with a final LayerNorm; the decoder an Embedding, learned positions (``target_len`` of them) and
    ``num_layers`` :class:`~nnx.TransformerDecoderBlock`\\ s, a LayerNorm and a Linear head.
    ``forward(x, decoder_input, source_padding_mask=None)`` is teacher forcing: ``decoder_input`` holds
    the target shifted right behind a start token. Called with ``x`` alone (as ``nnx parity`` and a
    :class:`~nnx.Sequential` call layers), ``x`` is ``(batch, source_len + T)``: the source, then the
    decoder input. :meth:`generate` decodes greedily with a :class:`~nnx.KVCache`. ``backward``
    trains both halves (the memory's gradient flows into the encoder) and returns ``None`` (ids have none).
    """

    _children = ("src_embed", "src_pos", "encoder", "enc_norm", "tgt_embed", "tgt_pos", "decoder", "dec_norm",
                 "head")
    takes_indices = True
    arguments = ("source_vocab", "target_vocab", "source_len", "target_len", "embed_dim", "num_heads", "hidden_dim",
                 "num_layers", "dropout", "dtype")

    def __init__(self, source_vocab: int, target_vocab: int, source_len: int, target_len: int, embed_dim: int = 64,
                 num_heads: int = 4, hidden_dim: int | None = None, num_layers: int = 2, dropout: float = 0.0, *,
                 seed: Any = None, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or 4 * embed_dim
        check_arguments("TransformerSeq2Seq", dtype, source_vocab=source_vocab, target_vocab=target_vocab,
                        source_len=source_len, target_len=target_len, embed_dim=embed_dim, num_heads=num_heads,
                        hidden_dim=hidden_dim, num_layers=num_layers)
        self.source_vocab, self.target_vocab, self.source_len, self.target_len = (source_vocab, target_vocab,
                                                                                  source_len, target_len)
        self.embed_dim, self.num_heads, self.hidden_dim, self.num_layers = embed_dim, num_heads, hidden_dim, num_layers
        self.dropout, self.dtype = float(dropout), dtype
        rng = _random.make_rng(seed)
        f = {"dtype": dtype, "backend": backend}
        block = {"hidden_dim": hidden_dim, "dropout": dropout, **f}
        self.src_embed = Embedding(source_vocab, embed_dim, seed=rng, **f)
        self.src_pos = PositionalEmbedding(source_len, embed_dim, seed=rng, **f)
        self.encoder = LayerList(TransformerBlock(embed_dim, num_heads, seed=rng, **block) for _ in range(num_layers))
        self.enc_norm = LayerNorm(embed_dim, **f)
        self.tgt_embed = Embedding(target_vocab, embed_dim, seed=rng, **f)
        self.tgt_pos = PositionalEmbedding(target_len, embed_dim, seed=rng, **f)
        self.decoder = LayerList(TransformerDecoderBlock(embed_dim, num_heads, seed=rng, **block)
                                 for _ in range(num_layers))
        self.dec_norm = LayerNorm(embed_dim, **f)
        self.head = Linear(embed_dim, target_vocab, seed=rng, **f)

    def encode(self, source: Any, source_padding_mask: Any = None) -> Any:
        """The memory ``(batch, S, embed_dim)`` of source ids ``(batch, S)``."""
        h = self.src_pos.forward(self.src_embed.forward(source))
        for block in self.encoder:
            h = block.forward(h, key_padding_mask=source_padding_mask)
        return self.enc_norm.forward(h)

    def decode(self, decoder_input: Any, memory: Any, source_padding_mask: Any = None, cache: Any = None) -> Any:
        """Logits ``(batch, T, target_vocab)`` for decoder input ids ``(batch, T)`` (the new ones, with ``cache``)."""
        h = self.tgt_pos.forward(self.tgt_embed.forward(decoder_input), cache=cache)
        for block in self.decoder:
            h = block.forward(h, memory, memory_key_padding_mask=source_padding_mask, cache=cache)
        return self.head.forward(self.dec_norm.forward(h))

    def forward(self, x: Any, decoder_input: Any = None, *, source_padding_mask: Any = None) -> Any:
        if decoder_input is None:
            if x.ndim != 2 or x.shape[1] <= self.source_len:
                raise ShapeError(f"{self!r} called with x alone expected (batch, source_len + T) = (batch, "
                                 f"{self.source_len} + T) ids, the source then the decoder input, got "
                                 f"{tuple(x.shape)}; or pass decoder_input")
            x, decoder_input = x[:, :self.source_len], x[:, self.source_len:]
        return self.decode(decoder_input, self.encode(x, source_padding_mask), source_padding_mask)

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        g = self.dec_norm.backward(self.head.backward(grad))
        d_memory = None
        for block in reversed(list(self.decoder)):
            g, dm = block.backward(g)
            d_memory = dm if d_memory is None else d_memory + dm
        self.tgt_embed.backward(self.tgt_pos.backward(g), input_grad=False)
        g = self.enc_norm.backward(d_memory)
        for block in reversed(list(self.encoder)):
            g = block.backward(g)
        self.src_embed.backward(self.src_pos.backward(g), input_grad=False)
        return None

    def generate(self, source: Any, steps: int, start: int, source_padding_mask: Any = None) -> Any:
        """The ``steps`` most likely tokens after the start token ``start`` for source ids ``(batch, S)``,
        decoded one at a time with a :class:`~nnx.KVCache` (the memory is projected once), as ``(batch, steps)``."""
        steps = integer(steps, "steps", "TransformerSeq2Seq.generate", minimum=1, maximum=self.target_len)
        xp = _backend.namespace_of(source)
        token = xp.full((source.shape[0], 1), start, dtype=xp.int64, device=_backend.device_of(source))
        out, cache = [], KVCache(steps)
        with self.inference():
            memory = self.encode(source, source_padding_mask)
            for _ in range(steps):
                logits = self.decode(token, memory, source_padding_mask, cache)
                token = xp.astype(xp.argmax(logits[:, -1:, :], axis=-1), xp.int64)
                out.append(token)
        return xp.concat(out, axis=1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Mapping[str, Layer]) -> "TransformerSeq2Seq":
        model = cls(**{**config, "num_layers": 1})._take_children(children)  # the blocks come from the file
        model.num_layers = int(config["num_layers"])
        return model

    config_size = holds_no_arrays  # its arrays are its children's

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Random ids valid in both vocabularies: the source then the decoder input, ``(batch, source_len +
        target_len)``."""
        return rng.integers(0, min(self.source_vocab, self.target_vocab), (batch, self.source_len + self.target_len))


__all__ = ["TransformerSeq2Seq"]
