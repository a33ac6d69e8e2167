"""One step of an LSTM or a GRU: the step math (shared with the sequence layers in
``recurrent.py``) and the cells ``LSTMCell`` and ``GRUCell`` for loops of one's own.

The gates follow PyTorch's order and layout, so weights copy across both ways:
a weight ``weight_ih`` of shape ``(gates * hidden, input)``, ``weight_hh`` of
``(gates * hidden, hidden)``, biases ``bias_ih`` and ``bias_hh`` of
``(gates * hidden,)``; LSTM gates ``i, f, g, o``, GRU gates ``r, z, n``::

    LSTM: i, f, o = sigmoid(.), g = tanh(.)    of  x W_ih^T + b_ih + h W_hh^T + b_hh
          c' = f * c + i * g,  h' = o * tanh(c')
    GRU:  r, z = sigmoid(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T + b_h{r,z})
          n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),  h' = (1 - z) * n + z * h
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from nnx import backend as _backend
from nnx import init as _init
from nnx import ops
from nnx import random as _random
from nnx.errors import ArgumentError, ShapeError, StateError
from nnx.layers.base import Parameter, ParamLayer, count
from nnx.layers.checks import check_arguments, check_switches
from nnx.layers.registry import register_layer
from nnx.layers.sizes import full_like_axes


def add_gate_parameters(owner: Any, gates: int, input_size: int, hidden_size: int, bias: bool, rng: Any,
                        suffix: str, dtype: str, backend: str) -> None:
    """Set ``weight_ih{suffix}``, ``weight_hh{suffix}`` (and the biases) on ``owner``, drawn in that
    order from ``U(-1/sqrt(hidden), 1/sqrt(hidden))`` on the host, as PyTorch initialises them."""
    bound = 1.0 / math.sqrt(hidden_size)
    shapes = {"weight_ih": (gates * hidden_size, input_size), "weight_hh": (gates * hidden_size, hidden_size)}
    if bias:
        shapes.update(bias_ih=(gates * hidden_size,), bias_hh=(gates * hidden_size,))
    for name, shape in shapes.items():
        values = _init.Uniform(-bound, bound)(shape, rng)
        setattr(owner, name + suffix, Parameter(_backend.to_device(values, backend, dtype), name + suffix))


def gate_parameters_size(gates: int, input_size: int, hidden_size: int, bias: bool) -> int:
    """How many numbers :func:`add_gate_parameters` makes."""
    return gates * hidden_size * (input_size + hidden_size + (2 if bias else 0))


def lstm_step(gx: Any, h: Any, c: Any, w_hh: Any) -> tuple[Any, Any, tuple[Any, ...]]:
    """``(h', c', saved)`` from ``gx`` (the input's projection plus both biases), the state and ``W_hh``."""
    size = h.shape[-1]
    a = h @ w_hh.T
    a += gx
    gates = ops.sigmoid(a)  # one call for all four, then the g quarter is replaced by its tanh
    g = ops.tanh(a[:, 2 * size:3 * size])
    gates[:, 2 * size:3 * size] = g
    c_new = gates[:, size:2 * size] * c
    c_new += gates[:, :size] * g
    tc = ops.tanh(c_new)
    return gates[:, 3 * size:] * tc, c_new, (gates, c, tc)


def lstm_step_backward(dh: Any, dc: Any, saved: tuple[Any, ...]) -> tuple[Any, Any]:
    """``(d gates, dc_prev)``: the gradient of the gates' pre-activations and of the old cell state."""
    gates, c_prev, tc = saved
    size = tc.shape[-1]
    i, f, g, o = (gates[:, k * size:(k + 1) * size] for k in range(4))
    dc = dc + ops.tanh_backward(tc, dh * o)
    xp = _backend.namespace_of(dh)
    slope = 1 - gates
    slope *= gates  # the sigmoids' slopes; the g quarter's is tanh's
    slope[:, 2 * size:3 * size] = 1 - g * g
    slope *= xp.concat([dc * g, dc * c_prev, dc * i, dh * tc], axis=1)
    return slope, dc * f


def gru_step(gx: Any, h: Any, w_hh: Any, b_hh: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(h', saved)`` from ``gx`` (the input's projection plus ``b_ih``), the state, ``W_hh``, ``b_hh``."""
    size = h.shape[-1]
    gh = h @ w_hh.T
    if b_hh is not None:
        gh += b_hh
    rz = ops.sigmoid(gx[:, :2 * size] + gh[:, :2 * size])
    hn = gh[:, 2 * size:]
    n = ops.tanh(gx[:, 2 * size:] + rz[:, :size] * hn)
    h_new = h - n
    h_new *= rz[:, size:]
    h_new += n  # (1 - z) * n + z * h
    return h_new, (rz, n, hn, h)


def gru_step_backward(dh: Any, saved: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    """``(d input gates, d hidden gates, the part of dh_prev that skips W_hh)``."""
    rz, n, hn, h_prev = saved
    size = n.shape[-1]
    r, z = rz[:, :size], rz[:, size:]
    xp = _backend.namespace_of(dh)
    dan = ops.tanh_backward(n, dh - dh * z)
    dar = ops.sigmoid_backward(r, dan * hn)
    daz = ops.sigmoid_backward(z, dh * (h_prev - n))
    return xp.concat([dar, daz, dan], axis=1), xp.concat([dar, daz, dan * r], axis=1), dh * z


class _Cell(ParamLayer):
    """A cell: one step per forward. Each forward pushes what its backward needs onto a stack and
    each backward pops the newest, so a loop of forwards is followed by backwards in reverse order."""

    _gates = 0
    _keeps_steps = True

    arguments = ("input_size", "hidden_size", "bias", "dtype")

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, seed: Any = None,
                 dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        input_size, hidden_size = check_arguments(type(self).__name__, dtype, input_size=input_size,
                                                  hidden_size=hidden_size)
        (bias,) = check_switches(type(self).__name__, bias=bias)
        self.input_size, self.hidden_size, self.bias, self.dtype = input_size, hidden_size, bias, dtype
        add_gate_parameters(self, self._gates, input_size, hidden_size, self.bias, _random.make_rng(seed), "",
                            dtype, backend or _backend.current())

    def _state(self, x: Any, state: Any, what: str) -> Any:
        """``state`` checked against ``x``, or zeros."""
        shape = (x.shape[0], self.hidden_size)
        if state is None:
            return full_like_axes(x, shape, 0.0)
        self._check_input(state, f"{self!r} ({what})")
        if tuple(state.shape) != shape:
            raise ShapeError(f"{self!r} expected {what} of shape {shape}, got {tuple(state.shape)}")
        return state

    def _gx(self, x: Any) -> Any:
        self._check_input(x, self)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ShapeError(f"{self!r} expected input of shape (batch, {self.input_size}), got {tuple(x.shape)}")
        gx = x @ self.weight_ih.data.T
        if self.bias:
            gx += self.bias_ih.data
        return gx

    def _push(self, step: tuple[Any, ...]) -> None:
        if self._keeps:
            if self._saved is None:
                self._saved = []
            self._saved.append(step)

    def _pop(self) -> tuple[Any, ...]:
        if not self._saved:
            raise StateError(f"{self!r}.backward called more often than forward: every backward takes back "
                             f"the newest step a forward kept; call forward first")
        step = self._saved.pop()
        if not self._saved:
            self._saved = None
        return step

    def _accumulate(self, x: Any, h: Any, dgx: Any, dgh: Any, input_grad: bool) -> tuple[Any, Any]:
        """Add this step's weight gradients; return ``(dx or None, dgh @ W_hh)``."""
        self.weight_ih.accumulate(dgx.T @ x)
        self.weight_hh.accumulate(dgh.T @ h)
        if self.bias:
            xp = _backend.namespace_of(dgx)
            self.bias_ih.accumulate(xp.sum(dgx, axis=0))
            self.bias_hh.accumulate(xp.sum(dgh, axis=0))
        return (dgx @ self.weight_ih.data if input_grad else None), dgh @ self.weight_hh.data

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.hidden_size)


    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return gate_parameters_size(cls._gates, count(config.get("input_size")), count(config.get("hidden_size")),
                                    bool(config.get("bias", True)))

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal rows of ``input_size`` (one step)."""
        return _random.normal(rng, (batch, self.input_size), 0.0, 1.0)


@register_layer
class LSTMCell(_Cell):
    """One LSTM step: ``h', c' = cell.forward(x, (h, c))`` for ``x`` of shape ``(batch, input_size)``
    and states of ``(batch, hidden_size)`` (zeros when ``state`` is ``None``).

    ``dx, (dh, dc) = cell.backward((dh', dc'))`` takes the gradients of the new state
    (``dc'`` may be ``None``: zero) and returns those of the input and the old state,
    adding into the weights' gradients. The cell keeps one entry per forward on a stack
    and each backward takes the newest, so after ``T`` forwards call backward ``T`` times
    in reverse order, passing each step's state gradient back into the step before it.
    Parameters and initialisation as PyTorch's ``LSTMCell`` (see the module docstring).
    """

    _gates = 4

    def forward(self, x: Any, state: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        gx = self._gx(x)
        if not (state is None or (isinstance(state, (tuple, list)) and len(state) == 2)):
            shown = f"a {type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else (
                f"a {type(state).__name__}")
            raise ShapeError(f"{self!r} expected state as the pair (h, c), each (batch, {self.hidden_size}), or "
                             f"None for zeros; got {shown}")
        h, c = (None, None) if state is None else state
        h, c = self._state(x, h, "h"), self._state(x, c, "c")
        if self.bias:
            gx += self.bias_hh.data
        h_new, c_new, saved = lstm_step(gx, h, c, self.weight_hh.data)
        self._push((x, h, saved))
        return h_new, c_new

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        if not (isinstance(grad, tuple) and len(grad) == 2):
            raise ArgumentError(f"{self!r}.backward expects the pair (dh, dc) of the new state's gradients, "
                            f"got {type(grad).__name__}")
        x, h, saved = self._pop()
        dh, dc = grad
        if dc is None:
            dc = saved[1] * 0.0
        da, dc_prev = lstm_step_backward(self._state(x, dh, "dh"), self._state(x, dc, "dc"), saved)
        dx, dh_prev = self._accumulate(x, h, da, da, input_grad)
        return dx, (dh_prev, dc_prev)


@register_layer
class GRUCell(_Cell):
    """One GRU step: ``h' = cell.forward(x, h)`` for ``x`` of shape ``(batch, input_size)`` and
    ``h`` of ``(batch, hidden_size)`` (zeros when ``None``).

    ``dx, dh = cell.backward(dh')`` returns the gradients of the input and the old state,
    adding into the weights' gradients; as for :class:`LSTMCell`, each forward pushes one
    step and each backward pops the newest. Parameters as PyTorch's ``GRUCell``.
    """

    _gates = 3

    def forward(self, x: Any, h: Any = None) -> Any:
        gx = self._gx(x)
        h = self._state(x, h, "h")
        h_new, saved = gru_step(gx, h, self.weight_hh.data, self.bias_hh.data if self.bias else None)
        self._push((x, h, saved))
        return h_new

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        x, h, saved = self._pop()
        dgx, dgh, dh_skip = gru_step_backward(grad, saved)
        dx, dh_prev = self._accumulate(x, h, dgx, dgh, input_grad)
        return dx, dh_prev + dh_skip


__all__ = ["GRUCell", "LSTMCell"]
