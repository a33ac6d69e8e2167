"""Checkpoints: everything training needs to resume exactly, in one atomic file.

A checkpoint is an nnx model file (see :mod:`nnx.io`) whose description also
holds the optimizer's and learning-rate schedule's ``state_dict()``, the host
random generator's state (NumPy's ``bit_generator.state`` as JSON), epoch,
step, history and any extra JSON the caller adds. Arrays inside those states
are stored as tensors named ``state/...``; everything else is JSON. The file
is replaced atomically, so a crash during a save leaves the previous
checkpoint intact, and ``nnx.load`` reads a checkpoint's model like a model
file's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnx import backend as _backend
from nnx import io as _io
from nnx.backend import host
from nnx.errors import CorruptModelFileError, ModelFileError, TensorMismatchError
from nnx.layers import Layer, Sequential

# The file a checkpoint directory holds (see ``checkpoint_path``).
CHECKPOINT_NAME = "checkpoint" + _io.SUFFIX
_TENSOR_KEY = "__tensor__"


def checkpoint_path(directory: str | os.PathLike[str]) -> Path:
    """The checkpoint file inside ``directory``, which need not exist yet."""
    return Path(directory) / CHECKPOINT_NAME


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint in ``directory``, or ``None`` when there is none yet."""
    path = checkpoint_path(directory)
    return path if path.is_file() else None


# host random generators -------------------------------------------------------------


def rng_state(rng: host.HostRNG | None = None) -> dict[str, Any]:
    """The state of a host generator (default: nnx's) as JSON-able data plus host arrays."""
    rng = host.default() if rng is None else rng
    if isinstance(rng, np.random.RandomState):
        return {"kind": "RandomState", "state": rng.get_state(legacy=False)}
    if isinstance(rng, np.random.Generator):
        return {"kind": "Generator", "state": rng.bit_generator.state}
    raise TypeError(f"expected a numpy.random.Generator or RandomState, got {type(rng).__name__}")


def set_rng_state(rng: host.HostRNG | None, state: dict[str, Any]) -> None:
    """Put ``rng`` (default: nnx's generator) back into a state from :func:`rng_state`.

    Raises ``ValueError`` when the state is for another kind of generator.
    """
    rng = host.default() if rng is None else rng
    kind = type(rng).__name__
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else state
        raise ValueError(f"the saved random state is for a {got!r}, but the generator given is a {kind}")
    try:
        if isinstance(rng, np.random.RandomState):
            rng.set_state(state["state"])
        else:
            rng.bit_generator.state = state["state"]
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"the saved random state does not fit this {kind}: {exc}") from None


def _random_layers(layer: Layer, prefix: str = "") -> list[tuple[str, Layer]]:
    """``(path, layer)`` for each layer with its own generator (``random_state``), e.g. seeded dropout."""
    found = [(prefix.rstrip(".") or "model", layer)] if hasattr(layer, "random_state") else []
    children = layer.layers if isinstance(layer, Sequential) else getattr(layer, "children", lambda: [])()
    for i, child in enumerate(children):
        found += _random_layers(child, f"{prefix}{i}.")
    return found


# state trees: JSON with arrays moved out into tensors --------------------------------


def _encode(value: Any, where: str, tensors: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k == _TENSOR_KEY:
                raise TypeError(f"cannot save {where}: key {k!r} (keys must be strings other than {_TENSOR_KEY!r})")
            out[k] = _encode(v, f"{where}.{k}", tensors)
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]", tensors) for i, v in enumerate(value)]
    try:
        array = _backend.to_host(value) if not isinstance(value, np.ndarray) else value
    except Exception:
        array = None
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise TypeError(f"cannot save {where}: a {type(value).__name__} is neither JSON nor an array")
    name = f"{_io.STATE_PREFIX}{len(tensors)}"
    tensors[name] = array
    return {_TENSOR_KEY: name}


def _decode(value: Any, tensors: dict[str, np.ndarray], used: set[str], path: Path, depth: int = 0) -> Any:
    if depth > _io.MAX_DEPTH:
        raise CorruptModelFileError(path, f"the training state nests too deeply (over {_io.MAX_DEPTH} levels)")
    if isinstance(value, list):
        return [_decode(v, tensors, used, path, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_TENSOR_KEY}:
        name = value[_TENSOR_KEY]
        if not (isinstance(name, str) and name.startswith(_io.STATE_PREFIX) and name in tensors) or name in used:
            raise CorruptModelFileError(path, f"the training state refers to a missing or reused tensor {name!r:.100}")
        used.add(name)
        return tensors[name].copy()
    return {k: _decode(v, tensors, used, path, depth + 1) for k, v in value.items()}


# save and load ------------------------------------------------------------------------


def _state_of(obj: Any, what: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    method = getattr(obj, "state_dict", None)
    if method is None:
        raise TypeError(f"cannot checkpoint the {what} {obj!r}: it has no state_dict()")
    return {"type": type(obj).__name__, "state": method()}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Any = None,
    *,
    schedule: Any = None,
    rng: host.HostRNG | None = None,
    epoch: int = 0,
    step: int = 0,
    history: Any = None,
    extra: Any = None,
) -> Path:
    """Atomically write everything needed to resume training to ``path``; returns the path.

    ``optimizer`` and ``schedule`` are saved through their ``state_dict()``;
    ``rng`` is the host generator training draws from (default: nnx's own).
    ``history`` and ``extra`` are JSON data (arrays in them become tensors).
    If the process dies during the save, the previous file at ``path`` stays.
    The directory is created if needed.
    """
    fields, tensors = _io.model_tensors(model, path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": int(epoch),
        "step": int(step),
        "optimizer": _state_of(optimizer, "optimizer"),
        "schedule": _state_of(schedule, "learning-rate schedule"),
        "rng": rng_state(rng),
        "layer_rngs": {name: layer.random_state() for name, layer in _random_layers(model)},
        "history": history,
        "extra": extra,
    }
    found: dict[str, np.ndarray] = {}
    encoded = _encode(state, "checkpoint", found)
    tensors.update(found)
    description = {**_io.header_fields("checkpoint"), **fields, "checkpoint": encoded}
    return _io.write_tensors(path, tensors, description)


@dataclass(repr=False)
class Checkpoint:
    """A validated checkpoint: training position and states, and the model's tensors."""

    file: _io.ModelFile = field(repr=False)
    epoch: int
    step: int
    history: Any
    extra: Any
    optimizer_state: dict[str, Any] | None = field(repr=False)
    schedule_state: dict[str, Any] | None = field(repr=False)
    rng_state: dict[str, Any] = field(repr=False)
    layer_rngs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.file.path

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, epoch={self.epoch}, step={self.step})"

    def build_model(self, backend: str | None = None) -> Layer:
        """A fresh model with the checkpoint's architecture and values on ``backend``."""
        return _io.build_model(self.file, backend)

    def restore(
        self,
        model: Layer | None = None,
        optimizer: Any = None,
        schedule: Any = None,
        rng: host.HostRNG | None = None,
    ) -> None:
        """Put the saved values into existing objects, built the same way as when saved.

        ``model`` gets its parameters, buffers and its layers' own generators
        (seeded dropout), on the backend it lives on; ``optimizer`` and
        ``schedule`` their ``load_state_dict``, and ``rng`` (default: nnx's
        generator) its state. Objects left as ``None`` are untouched, except
        the generator, which is always restored.
        """
        if model is not None:
            self._restore_model(model)
        for obj, saved, what in ((optimizer, self.optimizer_state, "optimizer"),
                                 (schedule, self.schedule_state, "learning-rate schedule")):
            if obj is not None:
                self._restore_state(obj, saved, what)
        try:
            set_rng_state(rng, self.rng_state)
        except ValueError as exc:
            raise ModelFileError(self.path, str(exc)) from None

    def _restore_model(self, model: Layer) -> None:
        described = self.file.description.get("model")
        architecture = _io.architecture(model, self.path)
        if architecture != described:
            raise TensorMismatchError(
                self.path, f"the checkpoint's architecture {described!r:.300} differs from the model "
                           f"given, {architecture!r:.300}; build the model exactly as it was built when saved")
        _io.fill_model(model, self.file, model.backend or _backend.current())
        for name, layer in _random_layers(model):
            if name in self.layer_rngs:
                try:
                    layer.set_random_state(self.layer_rngs[name])
                except Exception as exc:  # the state came from a file: whatever it makes the setter do
                    raise ModelFileError(self.path, f"the saved generator state of layer {name} does not fit: {exc}") from None

    def _restore_state(self, obj: Any, saved: dict[str, Any] | None, what: str) -> None:
        if saved is None:
            raise ModelFileError(self.path, f"the checkpoint holds no {what} state to restore into {obj!r}")
        if saved["type"] != type(obj).__name__:
            raise ModelFileError(
                self.path, f"the checkpoint's {what} is a {saved['type']}, not a {type(obj).__name__}")
        try:
            obj.load_state_dict(saved["state"])
        except Exception as exc:  # the state came from a file: whatever it makes load_state_dict do
            raise ModelFileError(
                self.path, f"the saved {what} state does not fit {obj!r}: {type(exc).__name__}: {exc}") from None


def _typed_state(value: Any, what: str, path: Path) -> dict[str, Any] | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"type", "state"} and isinstance(value["type"], str)):
        raise CorruptModelFileError(path, f"the {what} state is malformed")
    return value


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate the checkpoint at ``path`` (a file from :func:`save_checkpoint`)."""
    file = _io.read_tensors(path)
    path = file.path
    if file.description.get("kind") != "checkpoint":
        raise ModelFileError(path, "is a model file, not a checkpoint; load it with nnx.load")
    used: set[str] = set()
    state = _decode(file.description.get("checkpoint"), file.tensors, used, path)
    unused = {n for n in file.tensors if n.startswith(_io.STATE_PREFIX)} - used
    if unused:
        raise TensorMismatchError(path, f"has training-state tensors nothing refers to: {_io.quote_names(unused)}")
    if not isinstance(state, dict) or not {"epoch", "step", "rng"} <= set(state):
        raise CorruptModelFileError(path, "the training state lacks epoch, step or rng")
    for key in ("epoch", "step"):
        if not _io.is_count(state[key]):
            raise CorruptModelFileError(path, f"the training state's {key} is {state[key]!r}, not a count")
    return Checkpoint(
        file=file,
        epoch=state["epoch"],
        step=state["step"],
        history=state.get("history"),
        extra=state.get("extra"),
        optimizer_state=_typed_state(state.get("optimizer"), "optimizer", path),
        schedule_state=_typed_state(state.get("schedule"), "learning-rate schedule", path),
        rng_state=state["rng"],
        layer_rngs=state.get("layer_rngs") if isinstance(state.get("layer_rngs"), dict) else {},
    )


# fit's training state ----------------------------------------------------------------


def save_train_state(path: str | os.PathLike[str], state: Any) -> Path:
    """Checkpoint a :class:`~nnx.TrainState` (its model, optimizer, generator, position,
    history and callbacks, such as a learning-rate scheduler) to ``path`` atomically."""
    return save_checkpoint(
        path, state.model, state.optimizer, rng=state.rng, epoch=state.epoch, step=state.step,
        history=state.history.to_dict(), extra={"callbacks": [cb.state_dict() for cb in state.callbacks]},
    )


def restore_train_state(path: str | os.PathLike[str], state: Any) -> Checkpoint:
    """Put the checkpoint at ``path`` into a :class:`~nnx.TrainState` built as the saved run's was.

    Everything is checked before anything changes except the model, optimizer
    and generator, which :meth:`Checkpoint.restore` checks and fills in turn.
    """
    ck = load_checkpoint(path)
    saved = ck.extra.get("callbacks") if isinstance(ck.extra, dict) else None
    if not isinstance(saved, list) or not isinstance(ck.history, dict):
        raise ModelFileError(ck.path, "is not a checkpoint of nnx.fit (no callbacks or history in it)")
    if len(saved) != len(state.callbacks):
        raise ModelFileError(
            ck.path, f"the saved run had {len(saved)} callbacks, this one has {len(state.callbacks)}; "
                     f"pass the same callbacks to resume")
    ck.restore(state.model, state.optimizer, rng=state.rng)
    state.epoch, state.step = ck.epoch, ck.step
    state.history = type(state.history).from_dict(ck.history)
    for cb, s in zip(state.callbacks, saved):
        try:
            cb.load_state_dict(s)
        except Exception as exc:  # the state came from a file: whatever it makes load_state_dict do
            raise ModelFileError(
                ck.path, f"the saved state of callback {cb!r} does not fit: {type(exc).__name__}: {exc}") from None
    state.stop = False
    return ck


__all__ = [
    "CHECKPOINT_NAME",
    "Checkpoint",
    "checkpoint_path",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_train_state",
    "rng_state",
    "save_checkpoint",
    "save_train_state",
    "set_rng_state",
]
