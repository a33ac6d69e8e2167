"""Layers that put attention's extra inputs (masks, keys and values) into the gradcheck table.

The table checks layers of one float input; these wrappers cut queries, keys
and values from that input, or hold fixed masks, so every mask kind and the
op itself are checked by the same harness.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nnx
from nnx.layers.base import holds_no_arrays, takes_any_input


def _on(host: Any, x: Any) -> Any:
    """A host array on the backend of ``x`` (floats in its dtype)."""
    if host is None:
        return None
    backend = nnx.backend.backend_of(x)
    if host.dtype == np.bool_:
        return nnx.to_device(host, backend)
    return nnx.to_device(host, backend, dtype=nnx.backend.dtype_name(x))


class AttentionOp(nnx.Layer):
    """``scaled_dot_product_attention`` on q, k, v cut from ``(batch, heads, seq, 3 * d)`` along the
    last axis; the queries are the first ``seq_q`` positions."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, causal: bool = False, padding: Any = None, additive: Any = None,
                 dropout: Any = None, seq_q: int | None = None) -> None:
        super().__init__()
        self.causal, self.padding, self.additive, self.dropout, self.seq_q = causal, padding, additive, dropout, seq_q

    def forward(self, x: Any) -> Any:
        d, seq = x.shape[-1] // 3, x.shape[-2]
        sq = self.seq_q or seq
        q, k, v = x[..., :sq, :d], x[..., d:2 * d], x[..., 2 * d:]
        out, saved = nnx.scaled_dot_product_attention(
            q, k, v, causal=self.causal, key_padding_mask=_on(self.padding, x), attn_mask=_on(self.additive, x),
            dropout_mask=_on(self.dropout, x))
        self.save_for_backward(saved, tuple(x.shape), sq)
        return out

    def backward(self, grad: Any) -> Any:
        saved, shape, sq = self.saved_tensors()
        xp = nnx.backend.namespace_of(grad)
        dq, dk, dv = nnx.layers.scaled_dot_product_attention_backward(saved, grad)
        if sq < shape[-2]:
            rest = xp.zeros((*shape[:-2], shape[-2] - sq, dq.shape[-1]), dtype=grad.dtype,
                            device=nnx.backend.device_of(grad))
            dq = xp.concat((dq, rest), axis=-2)
        return xp.concat((dq, dk, dv), axis=-1)


class WithMasks(nnx.Layer):
    """``layer.forward(x, key_padding_mask=..., attn_mask=...)`` with fixed host masks."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, layer: nnx.Layer, padding: Any = None, additive: Any = None) -> None:
        super().__init__()
        self.layer, self.padding, self.additive = layer, padding, additive

    def forward(self, x: Any) -> Any:
        return self.layer.forward(x, key_padding_mask=_on(self.padding, x), attn_mask=_on(self.additive, x))

    def backward(self, grad: Any) -> Any:
        return self.layer.backward(grad)


class CrossAttention(nnx.Layer):
    """``attn.forward(query, key, value)`` with the three cut from ``(batch, seq, E + kdim + vdim)``
    along the last axis; the queries are the first ``seq_q`` positions."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, attn: nnx.MultiHeadAttention, seq_q: int) -> None:
        super().__init__()
        self.attn, self.seq_q = attn, seq_q

    def forward(self, x: Any) -> Any:
        e, kd = self.attn.embed_dim, self.attn.kdim
        self.save_for_backward(tuple(x.shape))
        return self.attn.forward(x[:, :self.seq_q, :e], x[:, :, e:e + kd], x[:, :, e + kd:])

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        xp = nnx.backend.namespace_of(grad)
        dq, dk, dv = self.attn.backward(grad)
        rest = xp.zeros((shape[0], shape[1] - self.seq_q, dq.shape[-1]), dtype=grad.dtype,
                        device=nnx.backend.device_of(grad))
        return xp.concat((xp.concat((dq, rest), axis=1), dk, dv), axis=-1)


def padding_mask(batch: int, seq: int) -> np.ndarray:
    """Sample 0 unpadded, sample 1 padded after 2 keys, sample 2 (if any) fully padded."""
    mask = np.zeros((batch, seq), dtype=bool)
    mask[1, 2:] = True
    if batch > 2:
        mask[2, :] = True
    return mask


def additive_mask(seq_q: int, seq_k: int) -> np.ndarray:
    """Finite offsets, some pairs blocked by -inf, and the last query's row blocked entirely."""
    mask = np.random.default_rng(4).uniform(-1.0, 1.0, (seq_q, seq_k))
    mask[0, 1] = mask[1, 0] = -np.inf
    mask[-1, :] = -np.inf
    return mask


def dropout_mask(shape: tuple[int, ...], p: float = 0.3) -> np.ndarray:
    """An inverted-dropout keep mask, scaled by ``1 / (1 - p)``."""
    return (np.random.default_rng(5).random(shape) >= p) / (1.0 - p)


class Decoder(nnx.Layer):
    """``block.forward(x, memory, memory_key_padding_mask=...)`` with targets ``x`` (the first ``seq_t``
    positions of the first ``E`` features) and ``memory`` (the last ``E`` features) cut from ``(batch, seq, 2E)``."""

    config_size = holds_no_arrays
    example_input = takes_any_input

    def __init__(self, block: nnx.TransformerDecoderBlock, seq_t: int, padding: Any = None) -> None:
        super().__init__()
        self.block, self.seq_t, self.padding = block, seq_t, padding

    def forward(self, x: Any) -> Any:
        e = self.block.embed_dim
        self.save_for_backward(tuple(x.shape))
        return self.block.forward(x[:, :self.seq_t, :e], x[:, :, e:], memory_key_padding_mask=_on(self.padding, x))

    def backward(self, grad: Any) -> Any:
        (shape,) = self.saved_tensors()
        xp = nnx.backend.namespace_of(grad)
        dx, dmemory = self.block.backward(grad)
        rest = xp.zeros((shape[0], shape[1] - self.seq_t, dx.shape[-1]), dtype=grad.dtype,
                        device=nnx.backend.device_of(grad))
        return xp.concat((xp.concat((dx, rest), axis=1), dmemory), axis=-1)
