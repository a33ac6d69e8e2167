"""LSTM, GRU and their cells: against PyTorch in float64 (outputs, final states, every gradient,
packed sequences), against a per-step loop written from the equations, padding, the cells'
stack of steps, files and errors. The gradchecks are in ``tests/gradcheck_cases.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from nnx.errors import DTypeError, ShapeError, StateError


def _f64(values: Any, backend: str = "numpy") -> Any:
    return nnx.to_device(np.asarray(values), backend, dtype="float64")


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# against PyTorch ----------------------------------------------------------------------------


def _torch_run(kind: str, layers: int, bidirectional: bool, lengths: list[int] | None, batch_first: bool,
               return_sequences: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(4, 3, num_layers=layers, bidirectional=bidirectional,
                                     batch_first=batch_first, dtype=torch.float64)
    ours = getattr(nnx, kind)(4, 3, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                              return_sequences=return_sequences, dtype="float64")
    assert [n for n, _ in ours.named_parameters()] == list(dict(theirs.named_parameters()))
    for name, p in ours.named_parameters():
        p.data = _f64(getattr(theirs, name).detach().numpy())
    directions, batch, steps = 2 if bidirectional else 1, 3, 5
    x = _normal((batch, steps, 4) if batch_first else (steps, batch, 4), 1)
    states = {"h0": _normal((layers * directions, batch, 3), 2)}
    if kind == "LSTM":
        states["c0"] = _normal((layers * directions, batch, 3), 3)
    xt = torch.tensor(x, requires_grad=True)
    st = {k: torch.tensor(v, requires_grad=True) for k, v in states.items()}
    start = st["h0"] if kind == "GRU" else (st["h0"], st["c0"])
    if lengths is None:
        out, final = theirs(xt, start)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                                         enforce_sorted=False)
        out, final = theirs(packed, start)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
    h_n = final if kind == "GRU" else final[0]
    if not return_sequences:  # the top layer's final hidden state of each direction
        out = torch.cat([h_n[-directions + d] for d in range(directions)], dim=1)
    r = _normal(tuple(out.shape), 4)
    (out * torch.tensor(r)).sum().backward()

    y = ours.forward(_f64(x), lengths, **{k: _f64(v) for k, v in states.items()})
    dx = ours.backward(_f64(r))
    close = {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(nnx.to_host(y), out.detach().numpy(), **close)
    np.testing.assert_allclose(nnx.to_host(ours.h_n), h_n.detach().numpy(), **close)
    if kind == "LSTM":
        np.testing.assert_allclose(nnx.to_host(ours.c_n), final[1].detach().numpy(), **close)
    np.testing.assert_allclose(nnx.to_host(dx), xt.grad.numpy(), **close)
    for k, v in st.items():
        np.testing.assert_allclose(nnx.to_host(getattr(ours, f"{k}_grad")), v.grad.numpy(), **close, err_msg=k)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(nnx.to_host(p.grad), getattr(theirs, name).grad.numpy(), **close, err_msg=name)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers, bidirectional, lengths, batch_first, return_sequences", [
    (1, False, None, True, True),
    (2, True, None, False, True),
    (2, True, [5, 2, 3], True, True),
    (1, True, [1, 5, 4], False, False),
    (2, False, [3, 5, 1], True, False),
], ids=["plain", "2 layers, bidirectional, time first", "packed, 2 layers, bidirectional",
        "packed, bidirectional, last state", "packed, 2 layers, last state"])
def test_agrees_with_torch_in_float64(kind: str, layers: int, bidirectional: bool, lengths: list[int] | None,
                                      batch_first: bool, return_sequences: bool) -> None:
    _torch_run(kind, layers, bidirectional, lengths, batch_first, return_sequences)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cells_agree_with_torch_over_a_loop(kind: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(4, 3, dtype=torch.float64)
    ours = getattr(nnx, kind)(4, 3, dtype="float64")
    assert [n for n, _ in ours.named_parameters()] == list(dict(theirs.named_parameters()))
    for name, p in ours.named_parameters():
        p.data = _f64(getattr(theirs, name).detach().numpy())
    lstm = kind == "LSTMCell"
    xs = [_normal((2, 4), 10 + t) for t in range(3)]
    h0, c0 = _normal((2, 3), 20), _normal((2, 3), 21)
    rs = [_normal((2, 3), 30 + t) for t in range(3)]
    xts = [torch.tensor(x, requires_grad=True) for x in xs]
    ht, ct = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    state, loss, expected = ((ht, ct) if lstm else ht), 0.0, []
    for xt, r in zip(xts, rs):
        state = theirs(xt, state)
        expected.append((state[0] if lstm else state).detach().numpy())
        loss = loss + ((state[0] if lstm else state) * torch.tensor(r)).sum()
    loss.backward()

    state = (_f64(h0), _f64(c0)) if lstm else _f64(h0)
    outs = []
    for x in xs:
        state = ours.forward(_f64(x), state)
        outs.append(state[0] if lstm else state)
    dh, dc, dxs = _f64(np.zeros((2, 3))), None, []
    for r in reversed(rs):
        if lstm:
            dx, (dh, dc) = ours.backward((_f64(r) + dh, dc))
        else:
            dx, dh = ours.backward(_f64(r) + dh)
        dxs.append(dx)
    close = {"rtol": 1e-12, "atol": 1e-13}
    for out, want in zip(outs, expected):
        np.testing.assert_allclose(nnx.to_host(out), want, **close)
    for dx, xt in zip(dxs[::-1], xts):
        np.testing.assert_allclose(nnx.to_host(dx), xt.grad.numpy(), **close)
    np.testing.assert_allclose(nnx.to_host(dh), ht.grad.numpy(), **close)
    if lstm:
        np.testing.assert_allclose(nnx.to_host(dc), ct.grad.numpy(), **close)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(nnx.to_host(p.grad), getattr(theirs, name).grad.numpy(), **close, err_msg=name)


# against the equations, written out step by step ------------------------------------------------


def _loop_lstm(x: np.ndarray, w: dict[str, np.ndarray], h: np.ndarray, c: np.ndarray) -> np.ndarray:
    outs = []
    for t in range(x.shape[1]):
        a = x[:, t] @ w["weight_ih_l0"].T + w["bias_ih_l0"] + h @ w["weight_hh_l0"].T + w["bias_hh_l0"]
        i, f, g, o = np.split(a, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, axis=1)


def _loop_gru(x: np.ndarray, w: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    outs = []
    wir, wiz, win = np.split(w["weight_ih_l0"], 3)
    whr, whz, whn = np.split(w["weight_hh_l0"], 3)
    bir, biz, bin_ = np.split(w["bias_ih_l0"], 3)
    bhr, bhz, bhn = np.split(w["bias_hh_l0"], 3)
    for t in range(x.shape[1]):
        xt = x[:, t]
        r = _sigmoid(xt @ wir.T + bir + h @ whr.T + bhr)
        z = _sigmoid(xt @ wiz.T + biz + h @ whz.T + bhz)
        n = np.tanh(xt @ win.T + bin_ + r * (h @ whn.T + bhn))
        h = (1 - z) * n + z * h
        outs.append(h)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_matches_a_loop_written_from_the_equations(nnx_backend: str, kind: str) -> None:
    layer = getattr(nnx, kind)(3, 4, seed=5, dtype="float64", backend=nnx_backend)
    w = {n: nnx.to_host(p.data) for n, p in layer.named_parameters()}
    x, h0, c0 = _normal((2, 6, 3), 6), _normal((2, 4), 7), _normal((2, 4), 8)
    if kind == "LSTM":
        expected = _loop_lstm(x, w, h0, c0)
        y = layer.forward(_f64(x, nnx_backend), h0=_f64(h0[None], nnx_backend), c0=_f64(c0[None], nnx_backend))
    else:
        expected = _loop_gru(x, w, h0)
        y = layer.forward(_f64(x, nnx_backend), h0=_f64(h0[None], nnx_backend))
    np.testing.assert_allclose(nnx.to_host(y), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nnx.to_host(layer.h_n)[0], expected[:, -1], rtol=1e-12, atol=1e-14)


# padding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_padded_steps_change_nothing(nnx_backend: str, kind: str) -> None:
    """Each sequence padded to the batch's length gives what it gives alone; whatever the padding
    holds, the outputs there are zero and the padding's gradient is zero."""
    layer = getattr(nnx, kind)(3, 4, num_layers=2, bidirectional=True, seed=9, dtype="float64",
                               backend=nnx_backend)
    lengths = [5, 2, 4]
    x = _normal((3, 5, 3), 10)
    padded = x.copy()
    for b, n in enumerate(lengths):
        padded[b, n:] = 1e3  # loud padding: it must not matter
    lens = nnx.to_device(lengths, nnx_backend, dtype="int64")
    y = nnx.to_host(layer.forward(_f64(padded, nnx_backend), lens))
    h_n = nnx.to_host(layer.h_n)
    grad = _normal(y.shape, 11)
    dx = nnx.to_host(layer.backward(_f64(grad, nnx_backend)))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(y[b, n:], 0.0)
        np.testing.assert_array_equal(dx[b, n:], 0.0)
        alone = nnx.to_host(layer.forward(_f64(x[b:b + 1, :n], nnx_backend)))
        np.testing.assert_allclose(y[b:b + 1, :n], alone, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b:b + 1], nnx.to_host(layer.h_n), rtol=1e-12, atol=1e-14)
        layer.drop_saved()


def test_a_zero_length_keeps_the_initial_state(nnx_backend: str) -> None:
    gru = nnx.GRU(2, 3, seed=0, dtype="float64", backend=nnx_backend)
    h0 = _normal((1, 2, 3), 1)
    y = gru.forward(_f64(_normal((2, 4, 2), 2), nnx_backend), nnx.to_device([0, 4], nnx_backend, dtype="int64"),
                    h0=_f64(h0, nnx_backend))
    np.testing.assert_array_equal(nnx.to_host(y)[0], 0.0)
    np.testing.assert_array_equal(nnx.to_host(gru.h_n)[0, 0], h0[0, 0])


def test_given_passes_lengths_through_sequential(nnx_backend: str) -> None:
    lstm = nnx.LSTM(3, 4, return_sequences=False, seed=1, dtype="float64", backend=nnx_backend)
    model = nnx.Sequential(lstm, nnx.Linear(4, 2, seed=2, dtype="float64", backend=nnx_backend))
    x = _f64(_normal((2, 5, 3), 3), nnx_backend)
    lengths = nnx.to_device([5, 3], nnx_backend, dtype="int64")
    with lstm.given(lengths=lengths):
        y = nnx.to_host(model.forward(x))
    model.drop_saved()  # forwards compared, no backward
    direct = nnx.to_host(model[1].forward(lstm.forward(x, lengths)))
    model.drop_saved()
    np.testing.assert_array_equal(y, direct)
    assert not np.array_equal(nnx.to_host(model.forward(x)), y)  # outside the block: no lengths
    with pytest.raises(TypeError, match="c0"):
        with nnx.GRU(3, 4).given(c0=None):
            pass


# the cells' stack of steps ----------------------------------------------------------------------


def test_a_cell_keeps_one_step_per_forward_and_nothing_in_inference(nnx_backend: str) -> None:
    cell = nnx.GRUCell(2, 3, seed=0, dtype="float64", backend=nnx_backend)
    x = _f64(_normal((4, 2), 1), nnx_backend)
    h = cell.forward(x)
    h = cell.forward(x, h)
    dh = _f64(np.ones((4, 3)), nnx_backend)
    cell.backward(dh)
    cell.backward(dh)
    with pytest.raises(StateError, match="more often than forward"):
        cell.backward(dh)
    with cell.inference():
        cell.forward(x)
    with pytest.raises(StateError):
        cell.backward(dh)
    cell.forward(x)
    cell.drop_saved()
    with pytest.raises(StateError):
        cell.backward(dh)


# files, initialisation, errors ------------------------------------------------------------------


def test_save_and_load_round_trip(nnx_backend: str, tmp_path: Path) -> None:
    model = nnx.Sequential(
        nnx.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0, backend=nnx_backend),
        nnx.GRU(8, 4, return_sequences=False, bias=False, seed=1, backend=nnx_backend),
        nnx.Linear(4, 2, seed=2, backend=nnx_backend))
    loaded = nnx.load(nnx.save(model, tmp_path / "rnn.nnx"), backend=nnx_backend)
    assert repr(loaded) == repr(model)
    x = nnx.to_device(_normal((2, 5, 3), 3), nnx_backend, dtype="float32")
    np.testing.assert_array_equal(nnx.to_host(loaded.forward(x)), nnx.to_host(model.forward(x)))
    cells = nnx.Sequential(nnx.LSTMCell(3, 2, seed=4), nnx.GRUCell(2, 2, bias=False, seed=5))
    again = nnx.load(nnx.save(cells, tmp_path / "cells.nnx"))
    for (name, a), (_, b) in zip(cells.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(nnx.to_host(a.data), nnx.to_host(b.data), err_msg=name)


def test_initial_weights_are_uniform_within_one_over_sqrt_hidden_and_seeded() -> None:
    a, b = nnx.LSTM(5, 16, seed=3, dtype="float64"), nnx.LSTM(5, 16, seed=3, dtype="float64")
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        values = nnx.to_host(p.data)
        assert np.abs(values).max() <= 0.25 and np.abs(values).max() > 0.2, name
        np.testing.assert_array_equal(values, nnx.to_host(q.data))
    assert a.num_parameters() == nnx.LSTM.config_size(a.config()) == 4 * 16 * (5 + 16 + 2)


def test_bad_inputs_are_refused_with_the_fix(nnx_backend: str) -> None:
    lstm = nnx.LSTM(3, 4, seed=0, dtype="float64", backend=nnx_backend)
    x = _f64(_normal((2, 5, 3), 0), nnx_backend)
    with pytest.raises(ShapeError, match=r"\(batch, length, 3\)"):
        lstm.forward(_f64(_normal((2, 5), 0), nnx_backend))
    with pytest.raises(ShapeError, match=r"shape \(2,\)"):
        lstm.forward(x, nnx.to_device([5, 5, 5], nnx_backend, dtype="int64"))
    with pytest.raises(ShapeError, match="between 0 and 5"):
        lstm.forward(x, nnx.to_device([6, 1], nnx_backend, dtype="int64"))
    with pytest.raises(DTypeError, match="integer lengths"):
        lstm.forward(x, _f64([5.0, 1.0], nnx_backend))
    with pytest.raises(ShapeError, match=r"h0 of shape \(1, 2, 4\)"):
        lstm.forward(x, h0=_f64(np.zeros((2, 4)), nnx_backend))
    with pytest.raises(DTypeError, match="float32"):
        lstm.forward(nnx.to_device(_normal((2, 5, 3), 0), nnx_backend, dtype="float32"))
    with pytest.raises(StateError):
        lstm.backward(_f64(np.ones((2, 5, 4)), nnx_backend))
    with pytest.raises(ValueError, match="bidirectional"):
        nnx.GRU(3, 4, bidirectional="yes")
    with pytest.raises(ValueError, match="hidden_size"):
        nnx.LSTMCell(3, 0)
    cell = nnx.LSTMCell(3, 4, dtype="float64", backend=nnx_backend)
    with pytest.raises(ShapeError, match=r"\(batch, 3\)"):
        cell.forward(x)
    cell.forward(x[:, 0, :])
    with pytest.raises(TypeError, match=r"\(dh, dc\)"):
        cell.backward(_f64(np.ones((2, 4)), nnx_backend))


def test_config_size_is_exact_and_instant_for_any_claim() -> None:
    for kind in (nnx.LSTM, nnx.GRU):
        layer = kind(3, 4, num_layers=3, bidirectional=True, bias=False)
        assert kind.config_size(layer.config()) == layer.num_parameters()
        huge = dict(layer.config(), num_layers=10**18)  # a hostile model file: answered without a loop
        assert kind.config_size(huge) > 10**18


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_backward_without_input_grad_skips_only_the_input_gradient(nnx_backend: str, kind: str) -> None:
    """As the first layer of a network: the same weight and initial-state gradients, no input gradient."""
    grads = []
    for input_grad in (True, False):
        layer = getattr(nnx, kind)(3, 4, num_layers=2, bidirectional=True, seed=2, dtype="float64",
                                   backend=nnx_backend)
        y = layer.forward(_f64(_normal((2, 5, 3), 3), nnx_backend), nnx.to_device([5, 2], nnx_backend))
        result = layer.backward(_f64(_normal(tuple(y.shape), 4), nnx_backend), input_grad=input_grad)
        assert (result is None) == (not input_grad)
        grads.append({n: nnx.to_host(p.grad) for n, p in layer.named_parameters()} | {"h0": nnx.to_host(layer.h0_grad)})
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)
