"""Generating token sequences from a model of next-token logits (a GPT), with or without a KVCache."""

from __future__ import annotations

import math
from typing import Any

from nnx import backend as _backend
from nnx import random as _random
from nnx.arguments import integer
from nnx.errors import ArgumentError, ConfigError, DTypeError, ShapeError
from nnx.layers.cache import KVCache


def _check_sampling(temperature: Any, top_k: Any, top_p: Any) -> tuple[float, int | None, float | None]:
    t = float(temperature)
    if not (math.isfinite(t) and t >= 0):
        raise ArgumentError(f"generate expected temperature >= 0 (0 picks the most likely token), got {temperature!r}")
    k = None if top_k is None else integer(top_k, "top_k", "generate", minimum=1)
    p = None if top_p is None else float(top_p)
    if p is not None and not 0 < p <= 1:
        raise ArgumentError(f"generate expected top_p in (0, 1], got {top_p!r}")
    return t, k, p


def generate(model: Any, prompt: Any, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: Any = None, cache: bool | KVCache = True) -> Any:
    """The prompt followed by ``max_new_tokens`` tokens drawn one at a time from ``model``.

    Parameters
    ----------
    model : Layer
        Maps token ids ``(batch, seq)`` to next-token logits ``(batch, seq, vocab)``.
    prompt : integer array ``(batch, seq)`` (or ``(seq,)``), on the model's backend or the host
    max_new_tokens : int
    temperature : float
        Divides the logits before the softmax; ``0`` picks the most likely token (greedy).
    top_k : int, optional
        Draw only among the ``top_k`` most likely tokens.
    top_p : float, optional
        Draw only among the fewest most likely tokens whose probabilities add up to ``top_p``.
    seed : int or generator, optional
        The host generator of the draws (:func:`nnx.random.make_rng`): one seed gives the same
        tokens on every backend.
    cache : bool or KVCache
        ``True`` (default) decodes with a new :class:`~nnx.KVCache` of ``seq + max_new_tokens - 1``
        positions, so each token costs one position; ``False`` runs the whole sequence for every token;
        a ``KVCache`` continues that cache (an empty one for a new sequence).

    Returns
    -------
    integer array ``(batch, seq + max_new_tokens)`` on the model's backend (``(seq + max_new_tokens,)``
    for a 1-D prompt).
    """
    temperature, top_k, top_p = _check_sampling(temperature, top_k, top_p)
    new = integer(max_new_tokens, "max_new_tokens", "generate", minimum=0)
    params = model.parameters()
    name = _backend.backend_of(params[0].data) if params else _backend.current()
    host = _backend.to_host(prompt)
    if not _backend.dtype_name(host).startswith(("int", "uint")) or host.ndim not in (1, 2) or host.size == 0:
        raise DTypeError(f"generate expected a non-empty integer prompt of shape (batch, seq) or (seq,), got dtype "
                         f"{_backend.dtype_name(host)} and shape {tuple(host.shape)}")
    flat = host.ndim == 1
    tokens = host.reshape(1, -1) if flat else host
    if cache is not False and not getattr(model, "takes_cache", False):
        raise ConfigError(f"generate got a model that takes no cache ({type(model).__name__}.forward has no cache "
                          f"argument); pass cache=False to run the whole sequence for every token")
    fed = tokens.shape[1] + max(new - 1, 0)  # the prompt and every new token but the last go through the model
    if cache is True:
        cache = KVCache(fed)
    if cache is not False and cache.length + fed > cache.max_len:
        raise ShapeError(f"generate got a prompt of {tokens.shape[1]} tokens and max_new_tokens={new} for a cache "
                         f"holding {cache.length} of at most {cache.max_len} positions (argument prompt); make a "
                         f"KVCache(max_len={cache.length + fed}) or shorten the prompt")
    rng, xp = _random.make_rng(seed), _backend.namespace_of(tokens)
    out = [tokens]
    with model.inference():
        step = tokens
        for _ in range(new):
            ids = _backend.to_device(step, name, "int64")
            logits = model.forward(ids) if cache is False else model.forward(ids, cache=cache)
            if logits.ndim != 3:
                raise ShapeError(f"generate expected the model to return logits (batch, seq, vocab), got shape "
                                 f"{tuple(logits.shape)}")
            last = _backend.to_host(logits[:, -1, :])
            out.append(_random.sample_tokens(rng, last, temperature, top_k, top_p)[:, None].astype(tokens.dtype))
            step = xp.concat(out, axis=1) if cache is False else out[-1]
    result = xp.concat(out, axis=1)
    return _backend.to_device(result.reshape(-1) if flat else result, name, "int64")


__all__ = ["generate"]
