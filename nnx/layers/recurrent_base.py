"""What LSTM and GRU (``recurrent.py``) share: their parameters, input checks, sequence lengths as
masks, initial and final states, the loop over layers and directions, and the weight gradients
(one product over all steps per direction); each subclass runs one direction's steps."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import ArgumentError, DTypeError, ShapeError
from nnx.layers.base import ParamLayer, count
from nnx.layers.checks import check_arguments, check_same_dtype, check_switches
from nnx.layers.recurrent_cells import add_gate_parameters, gate_parameters_size
from nnx.layers.sizes import full_like_axes, product, reshape_sizes


class Recurrent(ParamLayer):
    """What LSTM and GRU share: parameters, checks, layers and directions, the weight gradients."""

    _gates = 0
    _states: tuple[str, ...] = ("h",)

    arguments = ("input_size", "hidden_size", "num_layers", "batch_first", "bidirectional", "bias", "return_sequences", "dtype")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 bidirectional: bool = False, bias: bool = True, return_sequences: bool = True, *,
                 seed: Any = None, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        input_size, hidden_size, num_layers = check_arguments(name, dtype, input_size=input_size,
                                                              hidden_size=hidden_size, num_layers=num_layers)
        batch_first, bidirectional, bias, return_sequences = check_switches(
            name, batch_first=batch_first, bidirectional=bidirectional, bias=bias, return_sequences=return_sequences)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.bidirectional, self.bias = batch_first, bidirectional, bias
        self.return_sequences, self.dtype = return_sequences, dtype
        self.directions = 2 if bidirectional else 1
        rng, where = _random.make_rng(seed), backend or _backend.current()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.directions
            for suffix in ("", "_reverse")[:self.directions]:
                add_gate_parameters(self, self._gates, size, hidden_size, bias, rng, f"_l{layer}{suffix}", dtype,
                                    where)
        self._given: dict[str, Any] = {}
        self._clear_states()

    def _clear_states(self) -> None:
        for s in self._states:
            setattr(self, f"{s}_n", None)
            setattr(self, f"{s}0_grad", None)

    def _to(self, name: str | None, dtype: str | None = None) -> None:
        super()._to(name, dtype)
        self._clear_states()

    @contextlib.contextmanager
    def given(self, **inputs: Any) -> Iterator["Recurrent"]:
        """Inside the block, forwards called with ``x`` alone (as a ``Sequential`` calls them) use
        these keyword inputs (``lengths``, ``h0``, ``c0``)."""
        unknown = sorted(set(inputs) - {"lengths", *(f"{s}0" for s in self._states)})
        if unknown:
            raise TypeError(f"{self!r}.given takes lengths and {', '.join(f'{s}0' for s in self._states)}, "
                            f"got {unknown}")
        old, self._given = self._given, dict(inputs)
        try:
            yield self
        finally:
            self._given = old

    def _weights(self, layer: int, direction: int) -> tuple[Any, ...]:
        suffix = f"_l{layer}{'_reverse' if direction else ''}"
        return tuple(getattr(self, n + suffix, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _mask(self, lengths: Any, steps: int, batch: int, x: Any) -> tuple[Any, Any, Any] | None:
        """``(valid as bool, as 1.0/0.0, padding as 1.0/0.0)``, each ``(length, batch, 1)``, or ``None``."""
        if lengths is None:
            return None
        host = _backend.to_host(lengths)
        if not _backend.dtype_name(host).startswith(("int", "uint")):
            raise DTypeError(f"{self!r} expected integer lengths, got dtype {_backend.dtype_name(host)}")
        if tuple(host.shape) != (batch,):
            raise ShapeError(f"{self!r} expected one length per sequence, shape ({batch},), got {tuple(host.shape)}")
        values = [int(v) for v in host.tolist()]
        if values and not 0 <= min(values) <= max(values) <= steps:
            raise ShapeError(f"{self!r} got lengths from {min(values)} to {max(values)} for sequences of {steps} "
                             f"steps; each length must be between 0 and {steps}")
        xp = _backend.namespace_of(x)
        at = _backend.to_device(host, _backend.backend_of(x), "int64")
        valid = xp.expand_dims(xp.arange(steps, dtype=xp.int64, device=_backend.device_of(x))[:, None]
                               < at[None, :], axis=2)
        ones = xp.astype(valid, x.dtype)
        return valid, ones, 1 - ones

    def _initial(self, given: Any, what: str, seq: Any, batch: int) -> Any:
        shape = (self.num_layers * self.directions, batch, self.hidden_size)
        if given is None:  # seq is (length, batch, features): the batch on the states' axis 1
            return full_like_axes(seq, shape, 0.0)
        self._check_input(given, f"{self!r} ({what})")
        if tuple(given.shape) != shape:
            raise ShapeError(f"{self!r} expected {what} of shape {shape} (num_layers * directions, batch, "
                             f"hidden_size), got {tuple(given.shape)}")
        return given

    def _run(self, x: Any, lengths: Any, initial: dict[str, Any]) -> Any:
        xp = self._check_input(x, self)
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            order = "(batch, length, " if self.batch_first else "(length, batch, "
            raise ShapeError(f"{self!r} expected input of shape {order}{self.input_size}), got {tuple(x.shape)}")
        seq = xp.permute_dims(x, (1, 0, 2)) if self.batch_first else x
        steps, batch = seq.shape[0], seq.shape[1]
        if steps == 0:  # no step, so no output and no last state to return
            raise ShapeError(f"{self!r} got sequences of length 0 (input {tuple(x.shape)}); it needs at least "
                             f"one time step: drop empty sequences, or pad them and pass their lengths")
        given = {k: (self._given.get(k) if v is None else v) for k, v in initial.items()}
        mask = self._mask(self._given.get("lengths") if lengths is None else lengths, steps, batch, x)
        states = [self._initial(given[f"{s}0"], f"{s}0", seq, batch) for s in self._states]
        saved, finals, inp = [], [], seq
        for layer in range(self.num_layers):
            flat = xp.reshape(inp, reshape_sizes((product(steps, batch), inp.shape[-1])))
            outs, runs = [], []
            for d in range(self.directions):
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                gx = flat @ w_ih.data.T
                if b_ih is not None:
                    gx += self._input_bias(b_ih.data, b_hh.data)
                gx = xp.reshape(gx, reshape_sizes((steps, batch, gx.shape[-1])))
                start = tuple(s[layer * self.directions + d, ...] for s in states)
                ys, final, run = self._direction(gx, start, mask, d == 1, _rows_transposed(w_hh.data), b_hh)
                outs.append(xp.stack(ys))
                runs.append(run)
                finals.append(final)
            saved.append((flat, runs))
            inp = outs[0] if self.directions == 1 else xp.concat(outs, axis=2)
        for i, s in enumerate(self._states):
            setattr(self, f"{s}_n", xp.stack([f[i] for f in finals]))
        self.save_for_backward(saved, mask, steps, batch)
        if not self.return_sequences:
            return xp.concat([f[0] for f in finals[-self.directions:]], axis=1)
        return xp.permute_dims(inp, (1, 0, 2)) if self.batch_first else inp

    def backward(self, grad: Any, *, input_grad: bool = True, h_n_grad: Any = None, c_n_grad: Any = None) -> Any:
        """The input's gradient for ``grad`` of the output and, optionally, the gradients of the final
        states ``h_n_grad`` (and ``c_n_grad`` for the LSTM), shaped as ``h_n``: what a decoder that starts
        from this layer's final state sends back."""
        finals = self._final_grads(grad, {"h": h_n_grad, "c": c_n_grad})
        saved, mask, steps, batch = self.saved_tensors()
        xp, size = _backend.namespace_of(grad), self.hidden_size
        zeros = xp.zeros((batch, size), dtype=grad.dtype, device=_backend.device_of(grad))
        g = None
        if self.return_sequences and self.batch_first:  # time first, each step's rows contiguous
            g = xp.reshape(xp.permute_dims(grad, (1, 0, 2)), (steps * batch, grad.shape[-1]))
            g = xp.reshape(g, (steps, batch, grad.shape[-1]))
        elif self.return_sequences:
            g = grad
        starts: list[Any] = [None] * (self.num_layers * self.directions)
        for layer in reversed(range(self.num_layers)):
            flat, runs = saved[layer]
            dx = None
            for d in range(self.directions):
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                at = layer * self.directions + d
                carry = [zeros if f is None else f[at, ...] for f in finals]
                if g is None:  # the top layer's final hidden state was the output
                    carry[0] = carry[0] + grad[:, d * size:(d + 1) * size]
                dys = None if g is None else g[:, :, d * size:(d + 1) * size]
                das, dghs, carry = self._direction_backward(dys, tuple(carry), mask, runs[d], w_hh.data, d == 1)
                starts[layer * self.directions + d] = carry
                da = xp.reshape(xp.stack(das), (steps * batch, das[0].shape[-1]))  # not -1: batch may be 0
                dgh = da if dghs is das else xp.reshape(xp.stack(dghs), (steps * batch, dghs[0].shape[-1]))
                h_prev = xp.reshape(xp.stack([r[0] for r in runs[d]]), (steps * batch, size))
                w_ih.accumulate(da.T @ flat)
                w_hh.accumulate(dgh.T @ h_prev)
                if b_ih is not None:
                    db = xp.sum(da, axis=0)
                    b_ih.accumulate(db)
                    b_hh.accumulate(xp.asarray(db, copy=True) if dgh is da else xp.sum(dgh, axis=0))
                if layer or input_grad:
                    part = da @ w_ih.data
                    dx = part if dx is None else dx + part
            g = None if dx is None else xp.reshape(dx, (steps, batch, dx.shape[-1]))
        for i, s in enumerate(self._states):
            setattr(self, f"{s}0_grad", xp.stack([c[i] for c in starts]))
        if not input_grad:
            return None
        return xp.permute_dims(g, (1, 0, 2)) if self.batch_first else g

    def _final_grads(self, grad: Any, given: dict[str, Any]) -> list[Any]:
        """The final states' gradients in ``self._states`` order (``None`` where not given), checked."""
        if given["c"] is not None and "c" not in self._states:
            raise ArgumentError(f"{self!r}.backward takes h_n_grad only (a GRU has no cell state)")
        finals = [given[s] for s in self._states]
        for s, f in zip(self._states, finals):
            if f is None:
                continue
            _backend.check_backend(f, _backend.backend_of(grad), f"{self!r}.backward ({s}_n_grad)")
            check_same_dtype(f, grad.dtype, f"{self!r}.backward ({s}_n_grad)")
            if self.h_n is None or tuple(f.shape) != tuple(self.h_n.shape):
                shape = None if self.h_n is None else tuple(self.h_n.shape)
                raise ShapeError(f"{self!r}.backward expected {s}_n_grad of the final state's shape {shape} "
                                 f"(num_layers * directions, batch, hidden_size), got {tuple(f.shape)}")
        return finals

    @staticmethod
    def _order(steps: int, reverse: bool) -> range:
        return range(steps - 1, -1, -1) if reverse else range(steps)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3 or input_shape[-1] != self.input_size:
            raise ShapeError(f"{self!r} expected a 3-D input ending in {self.input_size}, got {tuple(input_shape)}")
        width = self.directions * self.hidden_size
        if not self.return_sequences:
            return (input_shape[0 if self.batch_first else 1], width)
        return (*input_shape[:2], width)

    def __repr__(self) -> str:
        defaults = {"num_layers": 1, "batch_first": True, "bidirectional": False, "bias": True,
                    "return_sequences": True}
        extra = "".join(f", {k}={v!r}" for k, v in self.config().items() if k in defaults and v != defaults[k])
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        size, hidden = count(config.get("input_size")), count(config.get("hidden_size"))
        directions, bias = 2 if config.get("bidirectional") else 1, bool(config.get("bias", True))
        layers = count(config.get("num_layers", 1))
        if not layers:
            return 0
        first = gate_parameters_size(cls._gates, size, hidden, bias)
        later = gate_parameters_size(cls._gates, directions * hidden, hidden, bias)
        return directions * (first + (layers - 1) * later)  # closed form: a file may claim any num_layers

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Standard normal sequences of 6 steps."""
        shape = (batch, 6, self.input_size) if self.batch_first else (6, batch, self.input_size)
        return _random.normal(rng, shape, 0.0, 1.0)


def _rows_transposed(w: Any) -> Any:
    """``w`` with its transpose laid out row by row: ``w.T`` is then a plain matrix, and ``h @ w.T`` at
    every step reads it without a transposed operand (OpenBLAS: a third less time, the same values)."""
    xp = _backend.namespace_of(w)
    return xp.matrix_transpose(xp.reshape(xp.reshape(xp.matrix_transpose(w), (-1,)), (w.shape[1], w.shape[0])))

