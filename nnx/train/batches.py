"""Inputs with more than one array per sample (named inputs) for fit, evaluate, predict and train_step.

The protocol: a model's inputs are one array, or a dict of arrays with one row per
sample, such as ``{"x": ids, "lengths": lengths, "decoder_input": shifted}``. A
batch takes the same rows of every array, and the model is called as
``model.forward(batch["x"], **the_rest)``: the key ``"x"`` is the first argument,
every other key a keyword argument (``LSTM.forward(x, lengths=...)``,
``TransformerDecoderBlock.forward(x, memory=..., memory_key_padding_mask=...)``,
or a model's own ``forward(self, x, *, lengths, decoder_input)``).
"""

from __future__ import annotations

from typing import Any, Callable

from nnx import backend as _backend
from nnx.errors import ShapeError


def is_named(x: Any) -> bool:
    """Whether ``x`` holds named inputs (a dict of arrays) rather than one array."""
    return isinstance(x, dict)


def check_named(x: Any, what: str) -> Any:
    """``x`` as it is, or, for named inputs, a dict of arrays (host lists made arrays) with a key ``"x"``
    and the same number of rows in each."""
    if not is_named(x):
        return x
    if "x" not in x or not all(isinstance(k, str) for k in x):
        raise ShapeError(f"{what}: named inputs need the key 'x' (the model's first argument; the other keys are "
                         f"its keyword arguments), got keys {sorted(map(str, x))}")
    x = {k: (v if hasattr(v, "shape") else _backend.to_host(v)) for k, v in x.items()}
    rows = {k: int(v.shape[0]) if v.ndim else None for k, v in x.items()}
    if len(set(rows.values())) != 1 or None in rows.values():
        raise ShapeError(f"{what}: every named input needs one row per sample, got rows {rows}")
    return x


def rows(x: Any) -> int:
    """How many samples ``x`` holds."""
    return int((x["x"] if is_named(x) else x).shape[0])


def each(x: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the array ``x`` or to every array of named inputs."""
    return {k: fn(v) for k, v in x.items()} if is_named(x) else fn(x)


def arrays(x: Any) -> list[tuple[str, Any]]:
    """``(name, array)`` for every array of ``x`` (the name ``"inputs"`` for one array)."""
    return [(f"inputs[{k!r}]", v) for k, v in x.items()] if is_named(x) else [("inputs", x)]


def cut(x: Any, a: int, z: int) -> Any:
    """Rows ``a:z`` of ``x``."""
    return each(x, lambda v: v[a:z, ...])


def take(x: Any, at: Any) -> Any:
    """The rows of ``x`` at the integer array ``at`` (on ``x``'s backend)."""
    return each(x, lambda v: _backend.namespace_of(v).take(v, at, axis=0))


def forward(model: Any, x: Any) -> Any:
    """The model's output for a batch: ``model.forward(x)``, or ``model.forward(x["x"], **the_rest)``."""
    if not is_named(x):
        return model.forward(x)
    rest = {k: v for k, v in x.items() if k != "x"}
    return model.forward(x["x"], **rest)


__all__ = ["arrays", "check_named", "cut", "each", "forward", "is_named", "rows", "take"]
