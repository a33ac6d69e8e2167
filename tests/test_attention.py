"""Attention against its definition written as loops, against PyTorch, and its edge cases.

The backward of every layer and mask kind is checked against finite
differences in the gradcheck table (tests/gradcheck_cases.py); here the
forward is checked against independent definitions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import nnx
from attention_cases import additive_mask, dropout_mask, padding_mask


def _dev(host: np.ndarray, backend: str) -> object:
    return nnx.to_device(host, backend, dtype="float64") if host.dtype.kind == "f" else nnx.to_device(host, backend)


def _loop_attention(q, k, v, causal=False, padding=None, additive=None, drop=None):
    """Attention by the definition, one query at a time, in plain Python floats."""
    batch, heads, sq, d = q.shape
    sk = k.shape[2]
    out = np.zeros((batch, heads, sq, v.shape[-1]))
    for b in range(batch):
        for h in range(heads):
            for i in range(sq):
                scores = {}
                for j in range(sk):
                    if causal and j > i or padding is not None and padding[b, j]:
                        continue
                    extra = 0.0 if additive is None else additive[i, j]
                    if extra == -math.inf:
                        continue
                    scores[j] = sum(q[b, h, i, t] * k[b, h, j, t] for t in range(d)) / math.sqrt(d) + extra
                if not scores:
                    continue  # every key blocked: zero weights, zero output
                top = max(scores.values())
                total = sum(math.exp(s - top) for s in scores.values())
                for j, s in scores.items():
                    w = math.exp(s - top) / total * (1.0 if drop is None else drop[b, h, i, j])
                    out[b, h, i, :] += w * v[b, h, j, :]
    return out


@pytest.mark.parametrize("kind", ["plain", "causal", "padding", "additive", "all"])
def test_the_op_is_the_loop_definition(nnx_backend: str, kind: str) -> None:
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((3, 2, 4, 3)), rng.standard_normal((3, 2, 5, 3)), rng.standard_normal((3, 2, 5, 2))
    masks = {"causal": kind in ("causal", "all"),
             "padding": padding_mask(3, 5) if kind in ("padding", "all") else None,
             "additive": additive_mask(4, 5) if kind in ("additive", "all") else None,
             "drop": dropout_mask((3, 2, 4, 5)) if kind == "all" else None}
    out, _ = nnx.scaled_dot_product_attention(
        _dev(q, nnx_backend), _dev(k, nnx_backend), _dev(v, nnx_backend), causal=masks["causal"],
        key_padding_mask=None if masks["padding"] is None else _dev(masks["padding"], nnx_backend),
        attn_mask=None if masks["additive"] is None else _dev(masks["additive"], nnx_backend),
        dropout_mask=None if masks["drop"] is None else _dev(masks["drop"], nnx_backend))
    np.testing.assert_allclose(nnx.to_host(out), _loop_attention(q, k, v, **masks), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_fully_masked_row_gives_zeros_and_zero_gradient(nnx_backend: str, dtype: str) -> None:
    attn = nnx.MultiHeadAttention(4, 2, causal=True, seed=0, dtype=dtype, backend=nnx_backend)
    x = nnx.to_device(np.random.default_rng(1).standard_normal((2, 3, 4)), nnx_backend, dtype=dtype)
    pad = np.zeros((2, 3), dtype=bool)
    pad[1, :] = True
    blocked = np.zeros((3, 3))
    blocked[0, 0] = -np.inf  # with causal, query 0 has no key left in either sample
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no NaN, no inf on the way
        y = nnx.to_host(attn.forward(x, key_padding_mask=nnx.to_device(pad, nnx_backend),
                                     attn_mask=nnx.to_device(blocked, nnx_backend, dtype=dtype)))
        dx = nnx.to_host(attn.backward(nnx.to_device(np.ones((2, 3, 4)), nnx_backend, dtype=dtype)))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    bias = nnx.to_host(attn.out_proj_bias.data)
    np.testing.assert_array_equal(y[1], np.broadcast_to(bias, (3, 4)))  # attention output 0, then out_proj
    np.testing.assert_array_equal(y[0, 0], bias)
    np.testing.assert_array_equal(dx[1], 0.0)
    assert all(np.all(np.isfinite(nnx.to_host(p.grad))) for p in attn.parameters())


def _copy_from_torch(attn: nnx.MultiHeadAttention, module: object, backend: str) -> None:
    """The one naming rule between the two: PyTorch's ``out_proj.weight`` is ``out_proj_weight``."""
    state = {name.replace("out_proj.", "out_proj_"): t.detach().numpy() for name, t in module.state_dict().items()}
    attn.load_state_dict({n: nnx.to_device(a, backend) for n, a in state.items()})


def test_multi_head_attention_matches_pytorch_with_masks() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        module.in_proj_bias.normal_()
        module.out_proj.bias.normal_()
    attn = nnx.MultiHeadAttention(8, 2, seed=1, dtype="float64", backend="numpy")
    _copy_from_torch(attn, module, "numpy")
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal((3, 5, 8)), rng.standard_normal((3, 5, 8))
    pad = np.zeros((3, 5), dtype=bool)
    pad[1, 3:] = True
    add = rng.uniform(-1, 1, (5, 5))
    add[np.triu_indices(5, 1)] = -np.inf
    xt = torch.tensor(x, requires_grad=True)
    pad_t = torch.where(torch.tensor(pad), -math.inf, 0.0).double()  # PyTorch wants both masks of one kind
    yt, _ = module(xt, xt, xt, key_padding_mask=pad_t, attn_mask=torch.tensor(add), need_weights=False)
    yt.backward(torch.tensor(g))
    y = attn.forward(x, key_padding_mask=pad, attn_mask=add)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(attn.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    grads = {name.replace("out_proj.", "out_proj_"): p.grad.numpy() for name, p in module.named_parameters()}
    for name, p in attn.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_cross_attention_with_other_key_and_value_sizes_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    module = torch.nn.MultiheadAttention(6, 3, kdim=4, vdim=5, batch_first=True, dtype=torch.float64)
    attn = nnx.MultiHeadAttention(6, 3, kdim=4, vdim=5, seed=1, dtype="float64", backend="numpy")
    _copy_from_torch(attn, module, "numpy")
    rng = np.random.default_rng(4)
    q, k, v, g = (rng.standard_normal(s) for s in ((2, 3, 6), (2, 4, 4), (2, 4, 5), (2, 3, 6)))
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    yt, _ = module(*ts, need_weights=False)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(attn.forward(q, k, v), yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    for mine, theirs in zip(attn.backward(g), ts):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-12, atol=1e-13)
    grads = {name.replace("out_proj.", "out_proj_"): p.grad.numpy() for name, p in module.named_parameters()}
    for name, p in attn.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_transformer_block_is_pytorchs_pre_norm_encoder_layer() -> None:
    """The same architecture: PyTorch's encoder layer with norm_first, tanh GELU and no dropout."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    module = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True,
                                              norm_first=True, activation=torch.nn.GELU(approximate="tanh"),
                                              dtype=torch.float64)
    block = nnx.TransformerBlock(8, 2, hidden_dim=12, causal=True, seed=0, dtype="float64", backend="numpy")
    t = {n: p.detach().numpy() for n, p in module.state_dict().items()}
    block.load_state_dict({
        "norm1.weight": t["norm1.weight"], "norm1.bias": t["norm1.bias"],
        "attn.in_proj_weight": t["self_attn.in_proj_weight"], "attn.in_proj_bias": t["self_attn.in_proj_bias"],
        "attn.out_proj_weight": t["self_attn.out_proj.weight"], "attn.out_proj_bias": t["self_attn.out_proj.bias"],
        "norm2.weight": t["norm2.weight"], "norm2.bias": t["norm2.bias"],
        "fc1.weight": t["linear1.weight"], "fc1.bias": t["linear1.bias"],
        "fc2.weight": t["linear2.weight"], "fc2.bias": t["linear2.bias"],
    })
    rng = np.random.default_rng(6)
    x, g = rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 5, 8))
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt, src_mask=torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64),
                is_causal=True)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(block.forward(x), yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(block.backward(g), xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(block.fc1.weight.grad, module.linear1.weight.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(block.attn.in_proj_weight.grad, module.self_attn.in_proj_weight.grad.numpy(),
                               rtol=1e-11, atol=1e-12)


def test_sinusoidal_positions_are_the_closed_form(nnx_backend: str) -> None:
    table = nnx.to_host(nnx.sinusoidal_positions(6, 5, dtype="float64", backend=nnx_backend))
    for pos in range(6):
        for i in range(5):
            angle = pos / 10000 ** (2 * (i // 2) / 5)
            assert table[pos, i] == pytest.approx(math.sin(angle) if i % 2 == 0 else math.cos(angle), abs=1e-12)
    x = nnx.to_device(np.zeros((2, 4, 5)), nnx_backend, dtype="float64")
    np.testing.assert_allclose(nnx.to_host(nnx.SinusoidalPositions(5).forward(x))[1], table[:4], atol=1e-15)


def test_positional_embedding_adds_its_rows_and_trains_only_the_used_ones(nnx_backend: str) -> None:
    pos = nnx.PositionalEmbedding(6, 3, seed=0, dtype="float64", backend=nnx_backend)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    y = nnx.to_host(pos.forward(_dev(x, nnx_backend)))
    np.testing.assert_array_equal(y, x + nnx.to_host(pos.weight.data)[:4])
    pos.backward(_dev(np.ones((2, 4, 3)), nnx_backend))
    grad = nnx.to_host(pos.weight.grad)
    np.testing.assert_array_equal(grad[:4], 2.0)
    np.testing.assert_array_equal(grad[4:], 0.0)
    with pytest.raises(nnx.errors.ShapeError, match="max_len"):
        pos.forward(_dev(np.ones((1, 7, 3)), nnx_backend))


def test_attention_refuses_bad_masks_and_arguments(nnx_backend: str) -> None:
    attn = nnx.MultiHeadAttention(4, 2, seed=0, dtype="float64", backend=nnx_backend)
    x = _dev(np.ones((2, 3, 4)), nnx_backend)
    with pytest.raises(nnx.errors.ShapeError, match=r"key_padding_mask of shape \(batch, seq_k\) = \(2, 3\)"):
        attn.forward(x, key_padding_mask=nnx.to_device(np.zeros((2, 4), dtype=bool), nnx_backend))
    with pytest.raises(nnx.errors.DTypeError, match="boolean key_padding_mask"):
        attn.forward(x, key_padding_mask=_dev(np.zeros((2, 3)), nnx_backend))
    with pytest.raises(nnx.errors.DTypeError, match="additive float attn_mask"):
        attn.forward(x, attn_mask=nnx.to_device(np.zeros((3, 3), dtype=bool), nnx_backend))
    with pytest.raises(nnx.errors.ShapeError, match="broadcastable"):
        attn.forward(x, attn_mask=_dev(np.zeros((3, 4)), nnx_backend))
    with pytest.raises(nnx.errors.NonFiniteError, match="NaN or \\+inf"):
        attn.forward(x, attn_mask=_dev(np.full((3, 3), np.nan), nnx_backend))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, seq, 4\)"):
        attn.forward(_dev(np.ones((2, 3, 5)), nnx_backend))
    with pytest.raises(nnx.errors.ShapeError, match="both key and value"):
        attn.forward(x, x)
    with pytest.raises(ValueError, match="divisible"):
        nnx.MultiHeadAttention(6, 4)
    with pytest.raises(nnx.errors.ShapeError, match="pass key and value"):
        nnx.MultiHeadAttention(4, 2, kdim=3, dtype="float64", backend=nnx_backend).forward(x)


def _tiny_gpt() -> nnx.Sequential:
    f = {"dtype": "float64"}
    return nnx.Sequential(nnx.Embedding(9, 8, seed=0, **f), nnx.PositionalEmbedding(6, 8, seed=1, **f),
                          nnx.SinusoidalPositions(8),
                          nnx.TransformerBlock(8, 2, dropout=0.1, causal=True, seed=2, **f),
                          nnx.TransformerBlock(8, 4, hidden_dim=16, seed=3, **f),
                          nnx.LayerNorm(8, **f), nnx.Linear(8, 9, seed=4, **f))


def test_a_tiny_gpt_saves_and_loads_on_every_backend(nnx_backend: str, tmp_path: Path) -> None:
    with nnx.use("numpy"):
        model = _tiny_gpt()
        ids = nnx.to_device(np.random.default_rng(0).integers(0, 9, (3, 6)), "numpy")
        model.forward(ids)  # dropout draws: the generators move on and are saved as they are
        path = nnx.save(model, tmp_path / "gpt.nnx")
        reference = nnx.to_host(model.eval().forward(ids))
    loaded = nnx.load(path, backend=nnx_backend).eval()
    assert repr(loaded) == repr(model)
    out = nnx.to_host(loaded.forward(nnx.to_device(nnx.to_host(ids), nnx_backend)))
    if nnx_backend in ("numpy", "array_api_strict"):  # the same NumPy kernels: bit for bit
        np.testing.assert_array_equal(out, reference)
    else:
        np.testing.assert_allclose(out, reference, rtol=1e-12, atol=1e-13)
    assert loaded.random_states().keys() == model.random_states().keys()


def test_causal_outputs_ignore_later_tokens(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        model = _tiny_gpt().eval()
    ids = np.random.default_rng(1).integers(0, 9, (2, 6))
    changed = ids.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 9
    y1, y2 = (nnx.to_host(model.forward(nnx.to_device(i, nnx_backend))) for i in (ids, changed))
    # the second block is not causal, so only a fully causal model would keep positions 0..3; check the first
    first = model.layers[:4]
    h1, h2 = ids, changed
    h1, h2 = (nnx.to_device(h, nnx_backend) for h in (h1, h2))
    for layer in first:
        h1, h2 = layer.forward(h1), layer.forward(h2)
    np.testing.assert_array_equal(nnx.to_host(h1)[:, :4], nnx.to_host(h2)[:, :4])
    assert not np.allclose(nnx.to_host(h1)[:, 4:], nnx.to_host(h2)[:, 4:])
    assert not np.allclose(y1[:, :4], y2[:, :4])  # the non-causal block lets them through
