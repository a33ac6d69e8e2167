"""Incremental decoding with a KVCache against the full forward, sampling, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ArgumentError, BackendMismatchError, ConfigError, DTypeError, ShapeError

F64 = {"dtype": "float64"}


def _gpt(positions: str = "learned") -> nnx.Sequential:
    first = (nnx.PositionalEmbedding(16, 8, seed=1, **F64) if positions == "learned" else nnx.SinusoidalPositions(8))
    return nnx.Sequential(nnx.Embedding(11, 8, seed=0, **F64), first,
                          nnx.TransformerBlock(8, 2, causal=True, seed=2, **F64),
                          nnx.TransformerBlock(8, 4, hidden_dim=12, causal=True, seed=3, **F64),
                          nnx.LayerNorm(8, **F64), nnx.Linear(8, 11, seed=4, **F64))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
@pytest.mark.parametrize("chunks", [(1,) * 12, (5, 1, 3, 1, 2)])
def test_cached_logits_are_the_full_forward_at_every_position(nnx_backend: str, positions: str,
                                                              chunks: tuple[int, ...]) -> None:
    with nnx.use(nnx_backend):
        model = _gpt(positions).eval()
    ids = np.random.default_rng(0).integers(0, 11, (3, 12))
    full = nnx.to_host(model.forward(nnx.to_device(ids, nnx_backend)))
    cache, start = nnx.KVCache(16), 0
    for n in chunks:  # the prompt in one piece, then a token or a few at a time
        step = nnx.to_host(model.forward(nnx.to_device(ids[:, start:start + n], nnx_backend), cache=cache))
        np.testing.assert_allclose(step, full[:, start:start + n], rtol=1e-12, atol=1e-12)
        start += n
        assert cache.length == start
    cache.reset()
    again = nnx.to_host(model.forward(nnx.to_device(ids[:, :4], nnx_backend), cache=cache))
    np.testing.assert_allclose(again, full[:, :4], rtol=1e-12, atol=1e-12)


def test_a_cached_attention_layer_alone_is_its_causal_forward(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        attn = nnx.MultiHeadAttention(6, 3, causal=True, seed=5, **F64)
    x = nnx.to_device(np.random.default_rng(1).standard_normal((2, 7, 6)), nnx_backend, "float64")
    full = nnx.to_host(attn.forward(x))
    cache = nnx.KVCache(7)
    parts = [nnx.to_host(attn.forward(x[:, i:i + 1, :], cache=cache)) for i in range(7)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-12)


def test_the_cache_is_preallocated_and_written_in_place() -> None:
    model = _gpt().eval()
    cache = nnx.KVCache(16)
    model.forward(nnx.to_device(np.zeros((1, 3), dtype=np.int64)), cache=cache)
    buffers = [(s.keys, s.values) for s in cache._slots.values() if s.keys is not None]
    assert len(buffers) == 2 and all(k.shape == (1, h, 16, 8 // h) for (k, _), h in zip(buffers, (2, 4)))
    model.forward(nnx.to_device(np.ones((1, 1), dtype=np.int64)), cache=cache)
    assert [(s.keys, s.values) for s in cache._slots.values() if s.keys is not None] == buffers


def test_bad_caches_and_prompts_are_refused_naming_the_argument() -> None:
    model = _gpt().eval()
    ids = nnx.to_device(np.zeros((2, 3), dtype=np.int64))
    cache = nnx.KVCache(4)
    model.forward(ids, cache=cache)
    with pytest.raises(ShapeError, match="batch size 2 .*argument cache"):
        model.forward(ids[:1, :1], cache=cache)
    with pytest.raises(ShapeError, match="max_len"):
        model.forward(ids, cache=cache)  # 3 + 3 > 4
    with pytest.raises(DTypeError, match="argument cache"):
        model.to(dtype="float32").forward(ids[:, :1], cache=cache)
    with nnx.use("array_api_strict"):
        strict = _gpt().eval()
    with pytest.raises(BackendMismatchError, match="argument cache"):
        strict.forward(nnx.to_device(np.zeros((2, 1), dtype=np.int64), "array_api_strict"), cache=cache)
    with pytest.raises(ShapeError, match="argument prompt"):
        nnx.generate(model, np.zeros((1, 5), dtype=np.int64), 4, cache=nnx.KVCache(7))  # 5 + 3 fed
    assert nnx.to_host(nnx.generate(model, np.zeros((1, 5), dtype=np.int64), 4, cache=nnx.KVCache(8))).shape == (1, 9)
    rnn = nnx.Sequential(nnx.Embedding(11, 8, seed=0, **F64), nnx.LSTM(8, 8, seed=1, **F64))
    with pytest.raises(ConfigError, match="position by position"):
        rnn.forward(ids, cache=nnx.KVCache(4))
    with pytest.raises(ConfigError, match="cache=False"):
        nnx.generate(nnx.Linear(2, 3), np.zeros((1, 2), dtype=np.int64), 1)
    for bad in ({"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ArgumentError):
            nnx.generate(model, np.zeros((1, 2), dtype=np.int64), 2, **bad)


def test_greedy_decoding_with_and_without_the_cache_picks_the_argmax(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        model = _gpt().eval()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    cached = nnx.to_host(nnx.generate(model, nnx.to_device(prompt, nnx_backend), 8, temperature=0))
    plain = nnx.to_host(nnx.generate(model, prompt, 8, temperature=0, cache=False))
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached[:, :3], prompt)
    for t in range(3, 11):  # each new token is the argmax of the full forward over the tokens before it
        logits = nnx.to_host(model.forward(nnx.to_device(cached[:, :t], nnx_backend)))
        np.testing.assert_array_equal(cached[:, t], np.argmax(logits[:, -1], axis=-1))


@pytest.mark.nnx_backends("numpy", "array_api_strict", "torch")
def test_one_seed_gives_the_same_text_on_every_backend(nnx_backend: str) -> None:
    with nnx.use("numpy"):
        reference = nnx.to_host(nnx.generate(_gpt().eval(), np.array([1, 2]), 12, temperature=1.3, top_k=6,
                                             top_p=0.9, seed=7))
    with nnx.use(nnx_backend):
        model = _gpt().eval()
    out = nnx.to_host(nnx.generate(model, np.array([1, 2]), 12, temperature=1.3, top_k=6, top_p=0.9, seed=7))
    np.testing.assert_array_equal(out, reference)
    other = nnx.to_host(nnx.generate(model, np.array([1, 2]), 12, temperature=1.3, top_k=6, top_p=0.9, seed=8))
    assert out.shape == (14,) and not np.array_equal(out, other)


def test_sampling_draws_each_token_with_its_probability() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 20000))
    rng = nnx.random.make_rng(0)
    counts = np.bincount(nnx.random.sample_tokens(rng, logits, 1.0, None, None), minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    top_k = np.bincount(nnx.random.sample_tokens(rng, logits, 1.0, 2, None), minlength=4) / 20000
    np.testing.assert_allclose(top_k, [0.625, 0.375, 0, 0], atol=0.015)
    top_p = np.bincount(nnx.random.sample_tokens(rng, logits, 1.0, None, 0.9), minlength=4) / 20000
    np.testing.assert_allclose(top_p, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], atol=0.015)
    hot = np.bincount(nnx.random.sample_tokens(rng, logits, 2.0, None, None), minlength=4) / 20000
    p = np.sqrt([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(hot, p / p.sum(), atol=0.015)
    assert (nnx.random.sample_tokens(rng, logits[:3], 0.0, None, None) == 0).all()
