"""Making the ranks' models one model: the same architecture, rank 0's values, shared statistics."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from nnx import backend as _backend
from nnx import io as _io
from nnx import random as _random
from nnx.errors import DistributedError
from nnx.layers import Layer
from nnx.train import batches


def model_digest(model: Layer) -> bytes:
    """A 32-byte digest of the architecture and of every parameter's and buffer's name, shape and dtype."""
    layout = [[name, list(value.shape), _backend.dtype_name(value)] for name, value in model.state_dict().items()]
    text = json.dumps({"model": _io.architecture(model, "<memory>"), "tensors": layout}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).digest()


def check_same(world: Any, digest: bytes, what: str, fix: str) -> None:
    """Raise :class:`DistributedError` on every rank unless every rank has the same ``digest``."""
    digests = world.allgather_host(np.frombuffer(digest, dtype=np.uint8), f"the comparison of {what}")
    differ = [r for r in range(world.size) if not np.array_equal(digests[r], digests[0])]
    if differ:
        raise DistributedError(f"the ranks disagree on {what}: rank(s) {differ} differ from rank 0; {fix}")


def run_digest(run: Any) -> bytes:
    """What must agree over the ranks before training (a :class:`nnx.train.loop.Prepared`): settings,
    generators, epoch, step and the data."""
    state = run.state
    text = json.dumps({"settings": state.settings, "rng": _random.get_state(state.rng),
                       "layer_rngs": state.model.random_states(), "epoch": state.epoch, "step": state.step,
                       "history": state.history.to_dict() if state.epoch else None}, sort_keys=True, default=str)
    h = hashlib.sha256(text.encode("utf-8"))
    for part in (*run.data, *(run.validation or ())):
        for name, values in batches.arrays(part):  # named inputs: each array
            host = _backend.to_host(values)
            h.update(repr((name, host.shape, str(host.dtype))).encode("utf-8"))
            h.update(np.ascontiguousarray(host).tobytes())
    return h.digest()


def check_same_model(world: Any, model: Layer) -> None:
    """Stop every rank with a clear error unless all ranks built the same architecture."""
    check_same(world, model_digest(model), "the model's architecture (layers, tensor names, shapes, dtypes)",
               "build the model with the same code and arguments on every rank")


def broadcast_model(world: Any, model: Layer) -> None:
    """Give every rank rank 0's parameters and buffers (one flat transfer per backend and dtype)."""
    state = model.state_dict()
    groups: dict[tuple[str, str], list[str]] = {}
    for name, value in state.items():
        groups.setdefault((_backend.backend_of(value), _backend.dtype_name(value)), []).append(name)
    new = {}
    for (backend_name, _), names in groups.items():
        xp = _backend.namespace_of(state[names[0]])
        flat = xp.concat([xp.reshape(state[n], (-1,)) for n in names])
        flat = world.device(backend_name).broadcast(flat, 0, "the broadcast of the initial model")
        offset = 0
        for n in names:
            size = int(np.prod(state[n].shape, dtype=np.int64))
            new[n] = xp.reshape(flat[offset:offset + size], tuple(state[n].shape))
            offset += size
    model.load_state_dict(new, source="rank 0's model")


def average_buffers(world: Any, model: Layer) -> None:
    """Replace every floating-point buffer (BatchNorm's running mean and variance) by its mean over the ranks."""
    buffers = [(n, v) for n, v in model.named_buffers()
               if _backend.namespace_of(v).isdtype(v.dtype, "real floating")]
    for name, value in buffers:
        xp = _backend.namespace_of(value)
        flat = world.device(_backend.backend_of(value)).allreduce(
            xp.reshape(value, (-1,)), f"the average of buffer {name}")
        model.set_buffer(name, xp.reshape(flat / world.size, tuple(value.shape)))


__all__ = ["average_buffers", "broadcast_model", "check_same", "check_same_model", "model_digest", "run_digest"]
