"""Recurrent layers over whole sequences: LSTM and GRU, with backward through time.

Both take ``x`` of shape ``(batch, length, input_size)`` (``(length, batch, ...)`` with
``batch_first=False``) and return the top layer's outputs ``(batch, length, directions *
hidden_size)``, or with ``return_sequences=False`` only the top layer's final hidden
state of each direction, ``(batch, directions * hidden_size)`` (the last valid output of
each sequence going forward and the first going back), which is what a classifier reads.

Extra inputs are keyword arguments of ``forward``: ``lengths`` (one int per sequence;
steps at and after a sequence's length are padding: they leave the state unchanged,
output zeros and get no gradient), and initial states ``h0`` (and ``c0`` for the LSTM) of
shape ``(num_layers * directions, batch, hidden_size)``, zeros when not given. Inside a
:class:`~nnx.Sequential`, which passes only ``x``, give them for a block with
``with lstm.given(lengths=lengths): model.forward(x)``.
After a forward the final states are the attributes ``h_n`` (and ``c_n``), shaped as
``h0``; ``backward(grad, h_n_grad=..., c_n_grad=...)`` takes their gradients beside the output's
(an encoder whose final state starts a decoder); after a backward the initial states' gradients are
``h0_grad`` (and ``c0_grad``).
Weights are named and laid out as PyTorch's (``weight_ih_l0``, ``bias_hh_l1_reverse``...),
so they copy across to ``torch.nn.LSTM``/``GRU`` and back.
"""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.layers.recurrent_base import Recurrent
from nnx.layers.recurrent_cells import gru_step, gru_step_backward, lstm_step
from nnx.layers.registry import register_layer


@register_layer
class LSTM(Recurrent):
    """A (multi-layer, optionally bidirectional) LSTM over sequences; see the module docstring for
    inputs, outputs, lengths and states, and ``recurrent_cells`` for the equations.

    Parameters are those of ``torch.nn.LSTM`` with the same names, shapes and gate order
    (``i, f, g, o``), drawn from ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`` with ``seed``.
    """

    _gates = 4
    _states = ("h", "c")

    def forward(self, x: Any, lengths: Any = None, h0: Any = None, c0: Any = None) -> Any:
        return self._run(x, lengths, {"h0": h0, "c0": c0})

    @staticmethod
    def _input_bias(b_ih: Any, b_hh: Any) -> Any:
        return b_ih + b_hh

    def _direction(self, gx: Any, start: tuple[Any, ...], mask: Any, reverse: bool, w_hh: Any,
                   b_hh: Any) -> tuple[list[Any], tuple[Any, ...], list[Any]]:
        (h, c), xp = start, _backend.namespace_of(gx)
        ys: list[Any] = [None] * gx.shape[0]
        run: list[Any] = [None] * gx.shape[0]
        for t in self._order(gx.shape[0], reverse):
            h_new, c_new, step = lstm_step(gx[t, ...], h, c, w_hh)
            run[t] = (h, step)
            if mask is None:
                ys[t], h, c = h_new, h_new, c_new
            else:
                ys[t] = h_new * mask[1][t, ...]
                h, c = xp.where(mask[0][t, ...], h_new, h), xp.where(mask[0][t, ...], c_new, c)
        return ys, (h, c), run

    def _direction_backward(self, dys: Any, carry: tuple[Any, ...], mask: Any, run: list[Any], w_hh: Any,
                            reverse: bool) -> tuple[list[Any], list[Any], tuple[Any, ...]]:
        # recurrent_cells.lstm_step_backward's math with everything that does not depend on the carried gradients
        # computed once for all steps, so each step is a handful of operations
        xp, size = _backend.namespace_of(w_hh), self.hidden_size
        gates = xp.stack([r[1][0] for r in run])  # (length, batch, 4 * hidden): i, f, g, o
        c_prev, tc = xp.stack([r[1][1] for r in run]), xp.stack([r[1][2] for r in run])
        i, f, g, o = (gates[..., k * size:(k + 1) * size] for k in range(4))
        factor = 1 - gates
        factor *= gates  # the sigmoids' slopes; the g quarter's is tanh's
        factor[..., 2 * size:3 * size] = 1 - g * g
        factor *= xp.concat([g, c_prev, i, tc], axis=2)  # d(pre-activations) = [dc, dc, dc, dh] * factor
        through = 1 - tc * tc
        through *= o  # dc += dh * through
        dh, dc = carry
        das: list[Any] = [None] * len(run)
        for t in self._order(len(run), not reverse):
            gh = dh if dys is None else dh + dys[t, ...]
            if mask is not None:
                valid, skip = mask[1][t, ...], mask[2][t, ...]
                gh, dc, passed = gh * valid, dc * valid, (dh * skip, dc * skip)
            dc = dc + gh * through[t, ...]
            da = xp.concat([dc, dc, dc, gh], axis=1)
            da *= factor[t, ...]
            dh, dc = da @ w_hh, dc * f[t, ...]
            if mask is not None:
                dh, dc = dh + passed[0], dc + passed[1]
            das[t] = da
        return das, das, (dh, dc)


@register_layer
class GRU(Recurrent):
    """A (multi-layer, optionally bidirectional) GRU over sequences; see the module docstring for
    inputs, outputs, lengths and states, and ``recurrent_cells`` for the equations.

    Parameters are those of ``torch.nn.GRU`` with the same names, shapes and gate order
    (``r, z, n``; the new gate reads ``r * (W_hn h + b_hn)``), drawn as PyTorch draws them.
    """

    _gates = 3

    def forward(self, x: Any, lengths: Any = None, h0: Any = None) -> Any:
        return self._run(x, lengths, {"h0": h0})

    @staticmethod
    def _input_bias(b_ih: Any, b_hh: Any) -> Any:
        return b_ih

    def _direction(self, gx: Any, start: tuple[Any, ...], mask: Any, reverse: bool, w_hh: Any,
                   b_hh: Any) -> tuple[list[Any], tuple[Any, ...], list[Any]]:
        (h,), xp = start, _backend.namespace_of(gx)
        bias = None if b_hh is None else b_hh.data
        ys: list[Any] = [None] * gx.shape[0]
        run: list[Any] = [None] * gx.shape[0]
        for t in self._order(gx.shape[0], reverse):
            h_new, step = gru_step(gx[t, ...], h, w_hh, bias)
            run[t] = (h, step)
            if mask is None:
                ys[t] = h = h_new
            else:
                ys[t], h = h_new * mask[1][t, ...], xp.where(mask[0][t, ...], h_new, h)
        return ys, (h,), run

    def _direction_backward(self, dys: Any, carry: tuple[Any, ...], mask: Any, run: list[Any], w_hh: Any,
                            reverse: bool) -> tuple[list[Any], list[Any], tuple[Any, ...]]:
        (dh,) = carry
        dgxs: list[Any] = [None] * len(run)
        dghs: list[Any] = [None] * len(run)
        for t in self._order(len(run), not reverse):
            gh = dh if dys is None else dh + dys[t, ...]
            if mask is not None:
                gh = gh * mask[1][t, ...]
            dgxs[t], dghs[t], skip = gru_step_backward(gh, run[t][1])
            new = dghs[t] @ w_hh + skip
            dh = new if mask is None else new + dh * mask[2][t, ...]
        return dgxs, dghs, (dh,)


__all__ = ["GRU", "LSTM"]
