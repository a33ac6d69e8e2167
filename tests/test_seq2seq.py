"""Sequence-to-sequence pieces against PyTorch in float64: the decoder block and gradients into final states."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ArgumentError, ShapeError

CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def _assign(param: nnx.Parameter, value: np.ndarray) -> None:
    """Copy a PyTorch weight in, in whichever layout nnx's parameter has ((out, in) or (in, out))."""
    value = value if param.shape == value.shape else value.T
    param.data = nnx.to_device(np.ascontiguousarray(value), "numpy", "float64")


def _grad(param: nnx.Parameter, like: np.ndarray) -> np.ndarray:
    g = nnx.to_host(param.grad)
    return g if g.shape == like.shape else g.T


def test_decoder_block_is_pytorchs_pre_norm_decoder_layer() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.TransformerDecoderLayer(
        8, 2, dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=True, dtype=torch.float64,
        activation=lambda t: torch.nn.functional.gelu(t, approximate="tanh"))
    block = nnx.TransformerDecoderBlock(8, 2, hidden_dim=12, dtype="float64")
    names = {"norm1": "norm1", "norm2": "norm2", "norm3": "norm3", "fc1": "linear1", "fc2": "linear2"}
    pairs = [(getattr(block, ours).weight, getattr(module, theirs).weight) for ours, theirs in names.items()]
    pairs += [(getattr(block, ours).bias, getattr(module, theirs).bias) for ours, theirs in names.items()]
    for ours, theirs in (("self_attn", "self_attn"), ("cross_attn", "multihead_attn")):
        a, m = getattr(block, ours), getattr(module, theirs)
        pairs += [(a.in_proj_weight, m.in_proj_weight), (a.in_proj_bias, m.in_proj_bias),
                  (a.out_proj_weight, m.out_proj.weight), (a.out_proj_bias, m.out_proj.bias)]
    for p, t in pairs:
        _assign(p, t.detach().numpy())
    rng = np.random.default_rng(1)
    x, memory, r = rng.standard_normal((3, 5, 8)), rng.standard_normal((3, 6, 8)), rng.standard_normal((3, 5, 8))
    pad = np.zeros((3, 6), dtype=bool)
    pad[1, 4:] = pad[2, 1:] = True
    xt, mt = torch.tensor(x, requires_grad=True), torch.tensor(memory, requires_grad=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    yt = module(xt, mt, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=torch.tensor(pad))
    (yt * torch.tensor(r)).sum().backward()

    y = block.forward(nnx.to_device(x, "numpy", "float64"), nnx.to_device(memory, "numpy", "float64"),
                      memory_key_padding_mask=nnx.to_device(pad, "numpy"))
    dx, dmemory = block.backward(nnx.to_device(r, "numpy", "float64"))
    np.testing.assert_allclose(nnx.to_host(y), yt.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(nnx.to_host(dx), xt.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(nnx.to_host(dmemory), mt.grad.numpy(), **CLOSE)
    assert len(pairs) == len(block.parameters())
    for p, t in pairs:
        np.testing.assert_allclose(_grad(p, t.grad.numpy()), t.grad.numpy(), **CLOSE, err_msg=p.name)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradients_into_the_final_states_agree_with_pytorch(kind: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(4, 3, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    ours = getattr(nnx, kind)(4, 3, num_layers=2, bidirectional=True, dtype="float64")
    for name, p in ours.named_parameters():
        p.data = nnx.to_device(getattr(theirs, name).detach().numpy(), "numpy", "float64")
    rng = np.random.default_rng(2)
    x, lengths = rng.standard_normal((3, 5, 4)), [5, 2, 3]
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, final = theirs(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
    finals = [final] if kind == "GRU" else list(final)
    r = [rng.standard_normal(tuple(t.shape)) for t in [out, *finals]]
    sum((t * torch.tensor(w)).sum() for t, w in zip([out, *finals], r)).backward()

    ours.forward(nnx.to_device(x, "numpy", "float64"), nnx.to_device(lengths, "numpy", "int64"))
    states = {f"{s}_n_grad": nnx.to_device(w, "numpy", "float64") for s, w in zip(ours._states, r[1:])}
    dx = ours.backward(nnx.to_device(r[0], "numpy", "float64"), **states)
    np.testing.assert_allclose(nnx.to_host(dx), xt.grad.numpy(), **CLOSE)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(nnx.to_host(p.grad), getattr(theirs, name).grad.numpy(), **CLOSE, err_msg=name)


def test_bad_final_state_gradients_and_memories_are_refused() -> None:
    lstm, gru = nnx.LSTM(2, 3, dtype="float64"), nnx.GRU(2, 3, dtype="float64")
    x = nnx.to_device(np.ones((2, 4, 2)), "numpy", "float64")
    grad = nnx.to_device(np.ones((2, 4, 3)), "numpy", "float64")
    lstm.forward(x)
    with pytest.raises(ShapeError, match="h_n_grad"):
        lstm.backward(grad, h_n_grad=nnx.to_device(np.ones((2, 3)), "numpy", "float64"))
    gru.forward(x)
    with pytest.raises(ArgumentError, match="no cell state"):
        gru.backward(grad, c_n_grad=nnx.to_device(np.ones((1, 2, 3)), "numpy", "float64"))
    with pytest.raises(ShapeError, match="lengths"):
        lstm.forward(x, nnx.to_device([5, 1], "numpy", "int64"))
    block = nnx.TransformerDecoderBlock(4, 2, dtype="float64")
    x4 = nnx.to_device(np.ones((2, 3, 4)), "numpy", "float64")
    with pytest.raises(ShapeError, match="memory of shape"):
        block.forward(x4, nnx.to_device(np.ones((2, 3, 5)), "numpy", "float64"))
    with pytest.raises(ShapeError, match="pass the encoder output as memory"):
        block.forward(x4)


def test_cached_decoder_blocks_are_their_full_forward(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        blocks = [nnx.TransformerDecoderBlock(8, 2, hidden_dim=12, seed=s, dtype="float64").eval() for s in (1, 2)]
    rng = np.random.default_rng(3)
    x, memory = (nnx.to_device(rng.standard_normal(s), nnx_backend, "float64") for s in ((2, 6, 8), (2, 5, 8)))
    pad = nnx.to_device(np.array([[False] * 5, [False] * 3 + [True] * 2]), nnx_backend)

    def run(h: object, cache: object = None) -> object:
        for b in blocks:
            h = b.forward(h, memory, memory_key_padding_mask=pad, cache=cache)
        return h

    full = nnx.to_host(run(x))
    cache = nnx.KVCache(6)
    steps = [nnx.to_host(run(x[:, i:i + 1, :], cache)) for i in range(6)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, **CLOSE)


def test_seq2seq_greedy_decoding_with_the_cache_is_the_full_forwards_argmax(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        model = nnx.TransformerSeq2Seq(7, 9, 5, 6, embed_dim=8, num_heads=2, num_layers=2, seed=3, dtype="float64")
    rng = np.random.default_rng(4)
    source = nnx.to_device(rng.integers(0, 7, (3, 5)), nnx_backend, "int64")
    pad = nnx.to_device(np.array([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]]), nnx_backend)
    decoded = nnx.to_host(model.generate(source, 6, 8, pad))
    with model.inference():
        for t in range(6):  # the start token, then the tokens decoded so far
            prefix = np.concatenate([np.full((3, 1), 8), decoded[:, :t]], axis=1)
            logits = model.forward(source, nnx.to_device(prefix, nnx_backend, "int64"), source_padding_mask=pad)
            np.testing.assert_array_equal(decoded[:, t], np.argmax(nnx.to_host(logits)[:, -1], axis=-1))
