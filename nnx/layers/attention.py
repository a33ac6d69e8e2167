"""Scaled dot-product attention (an op with its gradient) and MultiHeadAttention.

The op works on arrays of shape ``(..., seq, head_dim)`` and returns, beside
its output, what its backward needs; :class:`MultiHeadAttention` projects
``(batch, seq, embed)`` inputs into heads, calls it, and projects back. The
projection weights use PyTorch's ``(out, in)`` layout so weights copy across.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import ops
from nnx import random as _random
from nnx.errors import DTypeError, NonFiniteError, ShapeError
from nnx.layers.base import Parameter, ParamLayer, count
from nnx.arguments import number
from nnx.layers.checks import Where, check_arguments, check_float, check_same_dtype, check_switches
from nnx.layers.registry import register_layer
from nnx.layers.sizes import product, reshape_sizes


def _blocked(q: Any, k: Any, xp: Any, causal: bool, key_padding_mask: Any, attn_mask: Any, offset: int = 0) -> Any:
    """The boolean array (broadcastable to the scores) of query-key pairs no weight may fall on,
    or ``None`` if every pair is allowed. Validates the masks first."""
    where = "scaled_dot_product_attention"
    sq, sk = q.shape[-2], k.shape[-2]
    device = _backend.device_of(q)
    blocked = None
    if causal and sk - 1 > offset:  # query i sees keys 0..i + offset (0: aligned at the first, as PyTorch's is_causal)
        blocked = xp.arange(sk, device=device)[None, :] > xp.arange(offset, sq + offset, device=device)[:, None]
    if key_padding_mask is not None:
        _backend.check_backend(key_padding_mask, _backend.backend_of(q), f"{where} key_padding_mask")
        if key_padding_mask.dtype != xp.bool:
            raise DTypeError(f"{where} expected a boolean key_padding_mask (True = padded key), got dtype "
                             f"{_backend.dtype_name(key_padding_mask)}; build it with ids == pad_id")
        if q.ndim < 3 or tuple(key_padding_mask.shape) != (q.shape[0], sk):
            raise ShapeError(f"{where} expected key_padding_mask of shape (batch, seq_k) = {(q.shape[0], sk)} "
                             f"for queries {tuple(q.shape)} and keys {tuple(k.shape)}, got "
                             f"{tuple(key_padding_mask.shape)}")
        pad = xp.reshape(key_padding_mask, reshape_sizes((q.shape[0],) + (1,) * (q.ndim - 2) + (sk,)))
        blocked = pad if blocked is None else (blocked | pad)
    if attn_mask is not None:
        _backend.check_backend(attn_mask, _backend.backend_of(q), f"{where} attn_mask")
        if not xp.isdtype(attn_mask.dtype, "real floating"):
            raise DTypeError(f"{where} expected an additive float attn_mask (0 to allow, -inf to block), got "
                             f"dtype {_backend.dtype_name(attn_mask)}; for padded keys pass a boolean "
                             f"key_padding_mask, or turn a boolean mask into -inf where blocked")
        check_same_dtype(attn_mask, q.dtype, f"{where} attn_mask")
        shape, scores = tuple(attn_mask.shape), (*q.shape[:-1], sk)
        if len(shape) > len(scores) or any(a not in (1, s) for a, s in zip(shape[::-1], scores[::-1])):
            raise ShapeError(f"{where} expected an attn_mask broadcastable to the scores {scores} "
                             f"((seq_q, seq_k) = {(sq, sk)}, or with leading axes), got {shape}")
        if _backend.holds_values(attn_mask) and bool(xp.any(xp.isnan(attn_mask) | (attn_mask == math.inf))):
            raise NonFiniteError(f"{where} got NaN or +inf in attn_mask; use 0 to allow a pair and "
                                 f"-inf (or a large negative number) to block it")
        ninf = attn_mask == -math.inf
        blocked = ninf if blocked is None else (blocked | ninf)
    return blocked


def scaled_dot_product_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    causal: bool = False,
    key_padding_mask: Any = None,
    attn_mask: Any = None,
    dropout_mask: Any = None,
    scale: float | None = None,
    causal_offset: int = 0,
) -> tuple[Any, tuple[Any, ...]]:
    """``softmax(q @ k^T * scale + attn_mask) @ v`` and what its backward needs.

    Parameters
    ----------
    q, k, v : arrays of shape ``(..., seq_q, d)``, ``(..., seq_k, d)``, ``(..., seq_k, d_v)``
        Queries, keys and values with the same leading axes (batch, heads).
    causal : bool
        Query ``i`` attends only to keys ``0..i``.
    key_padding_mask : boolean array ``(batch, seq_k)``, optional
        ``True`` marks a padded key that receives no weight.
    attn_mask : float array broadcastable to ``(..., seq_q, seq_k)``, optional
        Added to the scores; ``-inf`` blocks a pair.
    dropout_mask : array of the scores' shape, optional
        Multiplies the attention weights (an inverted-dropout mask, already scaled).
    scale : float, optional
        Default ``1 / sqrt(d)``.
    causal_offset : int
        With ``causal``, query ``i`` attends to keys ``0..i + causal_offset`` (the position of the
        first query when earlier keys come from a :class:`~nnx.KVCache`).

    Returns
    -------
    out : array ``(..., seq_q, d_v)``
    saved : tuple
        For :func:`scaled_dot_product_attention_backward`.

    The softmax subtracts each row's maximum; a row whose keys are all blocked
    gets zero weights (its output and its gradients are zero, never NaN), and
    so does every row when there are no keys (``seq_k = 0``).
    """
    where = "scaled_dot_product_attention"
    xp = check_float(q, f"{where} (q)")
    for name, t in (("k", k), ("v", v)):
        _backend.check_backend(t, _backend.backend_of(q), f"{where} ({name})")
        check_same_dtype(t, q.dtype, f"{where} ({name})")
    if not (q.ndim == k.ndim == v.ndim >= 2 and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
            and q.shape[-1] == k.shape[-1] and k.shape[-2] == v.shape[-2]):
        raise ShapeError(f"scaled_dot_product_attention expected q (..., seq_q, d), k (..., seq_k, d) and "
                         f"v (..., seq_k, d_v) with the same leading axes, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)} and {tuple(v.shape)}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    (causal,) = check_switches(where, causal=causal)
    blocked = _blocked(q, k, xp, causal, key_padding_mask, attn_mask, causal_offset)
    s = q @ xp.matrix_transpose(k)
    s *= scale
    if attn_mask is not None:
        s = s + attn_mask
    if s.shape[-1] == 0:  # no keys: every row is fully blocked, so it gets zero (here: no) weights
        p = s
    elif blocked is None:
        p = ops.softmax(s, -1)
    elif key_padding_mask is None and attn_mask is None:
        # causal alone: query i sees key 0, so no row is fully blocked and -inf gives blocked pairs exactly 0
        p = ops.softmax(xp.where(blocked, -math.inf, s), -1)
    else:
        s = xp.where(blocked, xp.finfo(s.dtype).min, s)  # finite, so a fully blocked row stays finite
        e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
        e = xp.where(blocked, 0.0, e)
        total = xp.sum(e, axis=-1, keepdims=True)
        p = e / xp.where(total > 0, total, 1.0)
    weights = p if dropout_mask is None else p * dropout_mask
    return weights @ v, (q, k, v, p, dropout_mask, scale)


def scaled_dot_product_attention_backward(saved: tuple[Any, ...], grad: Any) -> tuple[Any, Any, Any]:
    """The gradients ``(dq, dk, dv)`` of :func:`scaled_dot_product_attention` for ``grad`` of its output."""
    q, k, v, p, dropout_mask, scale = saved
    xp = _backend.namespace_of(grad)
    weights = p if dropout_mask is None else p * dropout_mask
    dv = xp.matrix_transpose(weights) @ grad
    dp = grad @ xp.matrix_transpose(v)
    if dropout_mask is not None:
        dp *= dropout_mask
    ds = ops.softmax_backward(p, dp, -1)  # zero where p is zero: blocked pairs pass no gradient
    ds *= scale
    return ds @ k, xp.matrix_transpose(ds) @ q, dv


@register_layer
class MultiHeadAttention(ParamLayer):
    """Multi-head attention on ``(batch, seq, embed_dim)`` inputs (batch first).

    ``forward(x)`` is self-attention (so it fits in a :class:`~nnx.Sequential`);
    ``forward(query, key, value)`` attends from ``query`` to ``key``/``value``
    (``(batch, seq_k, kdim)`` and ``(batch, seq_k, vdim)``). Keyword arguments
    ``key_padding_mask`` (boolean ``(batch, seq_k)``, ``True`` = padded) and
    ``attn_mask`` (additive float, ``(seq_q, seq_k)`` or broadcastable to
    ``(batch, num_heads, seq_q, seq_k)``) apply to one call; ``causal=True``
    applies to every call. ``dropout`` drops attention weights in training,
    with masks from the host generator ``rng`` (made from ``seed``).
    ``cache`` (a :class:`~nnx.KVCache`) makes a forward incremental: self-attention
    attends from the new positions to every position the cache holds (causally
    from their place), cross-attention projects an unchanged key/value pair once;
    such a forward keeps nothing for a backward.

    Parameters follow PyTorch's ``nn.MultiheadAttention`` layout: ``in_proj_weight``
    ``(3 * embed_dim, embed_dim)`` (or ``q_proj_weight``, ``k_proj_weight``,
    ``v_proj_weight`` when ``kdim``/``vdim`` differ), ``in_proj_bias``, and
    ``out_proj_weight``/``out_proj_bias`` (PyTorch's ``out_proj.weight``/``.bias``).
    ``backward`` returns the input's gradient for self-attention and
    ``(d_query, d_key, d_value)`` otherwise.
    """

    takes_cache = True

    arguments = ("embed_dim", "num_heads", "dropout", "bias", "kdim", "vdim", "causal", "dtype")

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        causal: bool = False,
        *,
        seed: Any = None,
        dtype: str = "float32",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        kdim, vdim = (embed_dim if d is None else d for d in (kdim, vdim))
        embed_dim, num_heads, kdim, vdim = check_arguments(
            "MultiHeadAttention", dtype, embed_dim=embed_dim, num_heads=num_heads, kdim=kdim, vdim=vdim)
        bias, causal = check_switches("MultiHeadAttention", bias=bias, causal=causal)
        if embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        dropout = number(dropout, "dropout", "MultiHeadAttention", 0.0)
        if not dropout < 1.0:
            raise ValueError(f"MultiHeadAttention dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.kdim, self.vdim = embed_dim, num_heads, kdim, vdim
        self.dropout, self.bias, self.causal, self.dtype = dropout, bias, causal, dtype
        self.head_dim = embed_dim // num_heads
        self.rng = _random.make_rng(seed)
        name, e = backend or _backend.current(), embed_dim

        def weight(shape: tuple[int, int], label: str) -> Parameter:  # (out, in): fans (in, out)
            values = _init.draw("xavier_uniform", shape, self.rng, (shape[1], shape[0]))
            return Parameter(_backend.to_device(values, name, dtype), label)

        self.packed = kdim == e and vdim == e
        if self.packed:
            self.in_proj_weight = Parameter(_backend.to_device(
                _init.draw("xavier_uniform", (3 * e, e), self.rng, (e, e)), name, dtype), "in_proj_weight")
        else:
            self.q_proj_weight = weight((e, e), "q_proj_weight")
            self.k_proj_weight = weight((e, kdim), "k_proj_weight")
            self.v_proj_weight = weight((e, vdim), "v_proj_weight")
        zeros = _random.full((3 * e,), 0.0)
        self.in_proj_bias = Parameter(_backend.to_device(zeros, name, dtype), "in_proj_bias") if bias else None
        self.out_proj_weight = weight((e, e), "out_proj_weight")
        self.out_proj_bias = Parameter(_backend.to_device(zeros[:e], name, dtype), "out_proj_bias") if bias else None

    def _project(self, x: Any, xp: Any, part: int, width: int) -> Any:
        """``x @ W_part^T + b_part`` for ``x`` of shape ``(rows, width)``."""
        e = self.embed_dim
        w = self.in_proj_weight.data[part * e:(part + 1) * e, :] if self.packed else (
            self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[part].data
        y = x @ xp.matrix_transpose(w)
        if self.in_proj_bias is not None:
            y += self.in_proj_bias.data[part * e:(part + 1) * e]
        return y

    def _heads(self, x: Any, xp: Any, batch: int, seq: int) -> Any:
        """``(batch * seq, embed)`` → ``(batch, heads, seq, head_dim)``."""
        return xp.permute_dims(xp.reshape(x, reshape_sizes((batch, seq, self.num_heads, self.head_dim))), (0, 2, 1, 3))

    def _check(self, x: Any, width: int, what: str) -> None:
        self._check_input(x, Where(self, f" ({what})"))
        if x.ndim != 3 or x.shape[-1] != width:
            raise ShapeError(f"{self!r} expected {what} of shape (batch, seq, {width}), got {tuple(x.shape)}")

    def forward(self, query: Any, key: Any = None, value: Any = None, *,
                key_padding_mask: Any = None, attn_mask: Any = None, cache: Any = None) -> Any:
        self_attention = key is None and value is None
        if self_attention and not self.packed:
            raise ShapeError(f"{self!r} has kdim/vdim other than embed_dim: pass key and value")
        if not self_attention and (key is None or value is None):
            raise ShapeError(f"{self!r} expected both key and value (or neither, for self-attention)")
        self._check(query, self.embed_dim, "query")
        xp = _backend.namespace_of(query)
        b, sq, e = query.shape
        if cache is not None:
            cache.check(query, self)
        offset, held = 0, None
        if self_attention:
            x = xp.reshape(query, reshape_sizes((product(b, sq), e)))
            w = xp.matrix_transpose(self.in_proj_weight.data)
            qkv = x @ w
            if self.in_proj_bias is not None:
                qkv += self.in_proj_bias.data
            heads = reshape_sizes((b, sq, 3, self.num_heads, self.head_dim))
            qkv = xp.permute_dims(xp.reshape(qkv, heads), (2, 0, 3, 1, 4))
            q, k, v, inputs = qkv[0, ...], qkv[1, ...], qkv[2, ...], (x,)
            if cache is not None:  # attend over the keys and values of every position so far
                k, v, offset = cache.append(self, k, v)
            sk = k.shape[2]
        else:
            self._check(key, self.kdim, "key")
            self._check(value, self.vdim, "value")
            sk = key.shape[1]
            if key.shape[0] != b or tuple(value.shape[:2]) != (b, sk):
                raise ShapeError(f"{self!r} expected key and value of the same (batch, seq_k) and the query's "
                                 f"batch, got query {tuple(query.shape)}, key {tuple(key.shape)}, "
                                 f"value {tuple(value.shape)}")
            inputs = (xp.reshape(query, reshape_sizes((product(b, sq), e))),
                      xp.reshape(key, reshape_sizes((product(b, sk), self.kdim))),
                      xp.reshape(value, reshape_sizes((product(b, sk), self.vdim))))
            q = self._heads(self._project(inputs[0], xp, 0, e), xp, b, sq)
            held = None if cache is None else cache.memory(self, key, value)
            if held is None:
                held = tuple(self._heads(self._project(inputs[i], xp, i, width), xp, b, sk)
                             for i, width in ((1, self.kdim), (2, self.vdim)))
                if cache is not None:
                    cache.keep_memory(self, key, value, held)
            k, v = held
        drop = None
        if self.training and self.dropout > 0.0:
            keep = _random.bernoulli(self.rng, (b, self.num_heads, sq, sk), 1.0 - self.dropout)
            drop = _backend.to_device(keep * (1.0 / (1.0 - self.dropout)), _backend.backend_of(query),
                                      _backend.dtype_name(query))  # the compute dtype (mixed precision)
        o, attention = scaled_dot_product_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask,
                                                    attn_mask=attn_mask, dropout_mask=drop, causal_offset=offset)
        o = xp.reshape(xp.permute_dims(o, (0, 2, 1, 3)), reshape_sizes((product(b, sq), e)))
        y = o @ xp.matrix_transpose(self.out_proj_weight.data)
        if self.out_proj_bias is not None:
            y += self.out_proj_bias.data
        if cache is None:
            self.save_for_backward(inputs, attention, o, (b, sq, sk))
        else:  # the earlier positions' keys are in the cache, not differentiable from here: no backward
            self.drop_saved()
        return xp.reshape(y, reshape_sizes((b, sq, e)))

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        inputs, attention, o, (b, sq, sk) = self.saved_tensors()
        xp = _backend.namespace_of(grad)
        e, h, d = self.embed_dim, self.num_heads, self.head_dim
        g = xp.reshape(grad, (b * sq, e))
        self.out_proj_weight.accumulate(xp.matrix_transpose(g) @ o)
        if self.out_proj_bias is not None:
            self.out_proj_bias.accumulate(xp.sum(g, axis=0))
        do = xp.permute_dims(xp.reshape(g @ self.out_proj_weight.data, (b, sq, h, d)), (0, 2, 1, 3))
        dq, dk, dv = scaled_dot_product_attention_backward(attention, do)
        if len(inputs) == 1:  # self-attention: one product for the packed projection
            dqkv = xp.reshape(xp.permute_dims(xp.stack((dq, dk, dv)), (1, 3, 0, 2, 4)), (b * sq, 3 * e))
            self.in_proj_weight.accumulate(xp.matrix_transpose(dqkv) @ inputs[0])
            if self.in_proj_bias is not None:
                self.in_proj_bias.accumulate(xp.sum(dqkv, axis=0))
            return xp.reshape(dqkv @ self.in_proj_weight.data, (b, sq, e)) if input_grad else None
        grads = [xp.reshape(xp.permute_dims(t, (0, 2, 1, 3)), (b * s, e)) for t, s in ((dq, sq), (dk, sk), (dv, sk))]
        dw = [xp.matrix_transpose(gp) @ x for gp, x in zip(grads, inputs)]
        if self.packed:
            self.in_proj_weight.accumulate(xp.concat(dw, axis=0))
        else:
            for p, dwp in zip((self.q_proj_weight, self.k_proj_weight, self.v_proj_weight), dw):
                p.accumulate(dwp)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(xp.concat([xp.sum(gp, axis=0) for gp in grads]))
        if not input_grad:
            return None
        ws = [self.in_proj_weight.data[i * e:(i + 1) * e, :] for i in range(3)] if self.packed else [
            p.data for p in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)]
        return tuple(xp.reshape(gp @ w, (b, s, w.shape[1])) for gp, w, s in zip(grads, ws, (sq, sk, sk)))

    def _reference(self) -> Parameter:
        return self.out_proj_weight

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        e = count(config.get("embed_dim"))
        kdim, vdim = count(config.get("kdim")) or e, count(config.get("vdim")) or e
        return e * (e + kdim + vdim) + e * e + (4 * e if config.get("bias", True) else 0)

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal sequences of 8 vectors of ``embed_dim``."""
        return _random.normal(rng, (batch, 8, self.embed_dim), 0.0, 1.0)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3 or input_shape[-1] != self.embed_dim:
            raise ShapeError(f"{self!r} expected input of shape (batch, seq, {self.embed_dim}), got "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)


__all__ = ["MultiHeadAttention", "scaled_dot_product_attention", "scaled_dot_product_attention_backward"]
