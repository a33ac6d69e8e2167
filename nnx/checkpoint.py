"""Checkpoints: everything training needs to resume exactly, in one atomic file.

A checkpoint is an nnx model file (see :mod:`nnx.io`) whose description also
holds the run's state (:func:`run_state`): the optimizer's and learning-rate
schedule's ``state_dict()``, the host generator's and the layers' own
generators' states (:func:`nnx.random.get_state`), epoch, step, history and
any extra JSON the caller adds. :meth:`nnx.TrainState.state_dict` is that
same state, so ``fit`` and a hand-written loop save runs one way. Arrays inside those states
are stored as tensors named ``state/...``; everything else is JSON. The file
is replaced atomically, so a crash during a save leaves the previous
checkpoint intact, and ``nnx.load`` reads a checkpoint's model like a model
file's.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nnx import backend as _backend
from nnx import io as _io
from nnx import random as _random
from nnx.errors import (
    CheckpointInUseError,
    ConfigError,
    CorruptModelFileError,
    ModelFileError,
    OutputPathError,
    TensorMismatchError,
)
from nnx.layers import Layer

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a directory is then not guarded against a second run
    fcntl = None  # type: ignore[assignment]

# The file a checkpoint directory holds (see ``checkpoint_path``).
CHECKPOINT_NAME = "checkpoint" + _io.SUFFIX
# The lock file of a directory in use (see ``claim_directory``).
LOCK_NAME = "checkpoint.lock"
# The directories (resolved paths) this process holds, each with the thread holding it: a claim inside a
# claim of the same thread is allowed (the nnx command around its fit), another thread's is refused.
_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()
_TENSOR_KEY = "__tensor__"


def checkpoint_path(directory: str | os.PathLike[str]) -> Path:
    """The checkpoint file inside ``directory``, which need not exist yet."""
    return Path(directory) / CHECKPOINT_NAME


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint in ``directory``, or ``None`` when there is none yet."""
    path = checkpoint_path(directory)
    return path if path.is_file() else None


@contextlib.contextmanager
def claim_directory(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the checkpoint ``directory`` for one run: made if missing, checked writable, and locked.

    The lock is an advisory ``flock`` on ``checkpoint.lock`` inside it, which
    holds the pid of the run holding it. A second run on the same directory
    from another process raises :class:`~nnx.errors.CheckpointInUseError`
    naming that pid, before its first epoch, instead of both overwriting one
    checkpoint. The kernel drops the lock when its holder exits, however it
    ends, so the lock file of a run that died leaves nothing to clean up.
    A directory that cannot be made or written raises
    :class:`~nnx.errors.OutputPathError`, also before any training.
    """
    directory = Path(directory)
    key = os.path.realpath(directory)
    with _HELD_LOCK:
        holder = _HELD.get(key)
        if holder is None:
            _HELD[key] = threading.get_ident()
    if holder == threading.get_ident():  # this thread holds it already (the nnx command around its fit)
        yield directory
        return
    if holder is not None:
        raise CheckpointInUseError(
            f"checkpoint directory {str(directory)!r} is in use by another run in this process (thread {holder}); "
            f"wait for it to end, or give this run another checkpoint directory")
    try:
        with _locked(directory):
            yield directory
    finally:
        with _HELD_LOCK:
            del _HELD[key]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Make ``directory`` if missing, check it writable and hold the flock of its lock file."""
    if directory.exists() and not directory.is_dir():
        raise OutputPathError(f"checkpoint directory {str(directory)!r} is a file; give a directory (the run's "
                              f"checkpoint is written to {CHECKPOINT_NAME} inside it)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"checkpoint directory {str(directory)!r} cannot be made: "
                              f"{exc.strerror or exc}") from None
    _io.check_output(checkpoint_path(directory), what="the checkpoint")
    fd = _open_lock(directory / LOCK_NAME)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise CheckpointInUseError(
                    f"checkpoint directory {str(directory)!r} is in use by another run (process {holder}); "
                    f"wait for it to end, or give this run another --checkpoint directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock(lock: Path) -> int:
    """The lock file, opened for writing only if it is a regular file of this directory alone: never
    through a symbolic link (``O_NOFOLLOW``), never a FIFO, device or a second name of another file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fix = f"remove {str(lock)!r} (nnx makes it anew) or give the run another checkpoint directory"
    try:
        fd = os.open(lock, flags, 0o644)
    except OSError as exc:
        if os.path.islink(lock):
            raise OutputPathError(f"the checkpoint lock {str(lock)!r} is a symbolic link; nnx writes its lock "
                                  f"only into a regular file of the directory; {fix}") from None
        raise OutputPathError(f"checkpoint directory {str(lock.parent)!r}: cannot write its lock file: "
                              f"{exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "a second name of another file" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise OutputPathError(f"the checkpoint lock {str(lock)!r} is {what}; nnx writes its lock only into "
                              f"a regular file of the directory; {fix}")
    return fd


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
        if not (isinstance(name, str) and _io.is_run_state(name) and name in tensors) or name in used:
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


def run_state(
    model: Layer,
    optimizer: Any = None,
    *,
    schedule: Any = None,
    rng: _random.HostRNG | None = None,
    epoch: int = 0,
    step: int = 0,
    history: Any = None,
    extra: Any = None,
) -> dict[str, Any]:
    """Everything a run needs to resume, except the model's tensors, as plain data (arrays stay arrays).

    ``optimizer`` and ``schedule`` are kept through their ``state_dict()``;
    ``rng`` is the host generator training draws from (default: nnx's own);
    the model's layers with their own generators (seeded dropout) are kept too.
    """
    return {
        "epoch": int(epoch),
        "step": int(step),
        "optimizer": _state_of(optimizer, "optimizer"),
        "schedule": _state_of(schedule, "learning-rate schedule"),
        "rng": _random.get_state(rng),
        "layer_rngs": model.random_states(),
        "history": history,
        "extra": extra,
    }


def write_run(path: str | os.PathLike[str], model: Layer, state: dict[str, Any]) -> Path:
    """Atomically write ``model`` and a :func:`run_state` to ``path``; returns the path."""
    fields, tensors = _io.model_tensors(model, path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    found: dict[str, np.ndarray] = {}
    encoded = _encode(state, "checkpoint", found)
    tensors.update(found)
    description = {**_io.header_fields("checkpoint"), **fields, "checkpoint": encoded}
    return _io.write_tensors(path, tensors, description)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Layer,
    optimizer: Any = None,
    *,
    schedule: Any = None,
    rng: _random.HostRNG | None = None,
    epoch: int = 0,
    step: int = 0,
    history: Any = None,
    extra: Any = None,
) -> Path:
    """Atomically write everything needed to resume training to ``path``; returns the path.

    The arguments are those of :func:`run_state`; ``history`` and ``extra``
    are JSON data (arrays in them become tensors). If the process dies during
    the save, the previous file at ``path`` stays. The directory is created if needed.
    """
    return write_run(path, model, run_state(model, optimizer, schedule=schedule, rng=rng, epoch=epoch,
                                            step=step, history=history, extra=extra))


@dataclass(repr=False)
class Checkpoint:
    """A validated checkpoint: the model's tensors and the run's state (:func:`run_state`)."""

    file: _io.ModelFile = field(repr=False)
    state: dict[str, Any] = field(repr=False)

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    @property
    def step(self) -> int:
        return self.state["step"]

    @property
    def history(self) -> Any:
        return self.state.get("history")

    @property
    def extra(self) -> Any:
        return self.state.get("extra")

    @property
    def run_config(self) -> Any:
        """The ``run_config`` the checkpointed run gave ``fit`` (``None`` if it gave none)."""
        settings = self.extra.get("settings") if isinstance(self.extra, dict) else None
        return settings.get("run_config") if isinstance(settings, dict) else None

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
        rng: _random.HostRNG | None = None,
    ) -> None:
        """Put the saved values into existing objects, built the same way as when saved.

        ``model`` gets its parameters, buffers and its layers' own generators
        (seeded dropout), on the backend it lives on; ``optimizer`` and
        ``schedule`` their ``load_state_dict``, and ``rng`` (default: nnx's
        generator) its state. Objects left as ``None`` are untouched, except
        the generator, which is always restored.
        """
        if model is not None:
            self.restore_model(model)
            self._guarded(lambda: model.set_random_states(self.state["layer_rngs"]), "the layers' generator states")
        for obj, key, what in ((optimizer, "optimizer", "optimizer"),
                               (schedule, "schedule", "learning-rate schedule")):
            if obj is not None:
                restore_state(obj, self.state.get(key), what, self.path)
        self._guarded(lambda: _random.set_state(rng, self.state["rng"]), "the random generator state")

    def restore_model(self, model: Layer) -> None:
        """Check that ``model`` has the checkpoint's architecture, then fill in its tensors."""
        described = _io.canonical_architecture(self.file.description.get("model"))
        architecture = _io.architecture(model, self.path)
        if architecture != described:
            raise TensorMismatchError(
                self.path, f"the checkpoint's architecture {described!r:.300} differs from the model "
                           f"given, {architecture!r:.300}; build the model exactly as it was built when saved")
        _io.fill_model(model, self.file)

    def _guarded(self, action: Any, what: str) -> None:
        try:
            action()
        except Exception as exc:  # the state came from a file: whatever it makes the setter do
            raise ModelFileError(self.path, f"{what} does not fit: {exc}") from None


def restore_state(obj: Any, saved: dict[str, Any] | None, what: str, path: object) -> None:
    """``obj.load_state_dict`` from a checkpoint's typed state, every failure a :class:`ModelFileError`."""
    if saved is None:
        raise ModelFileError(path, f"the checkpoint holds no {what} state to restore into {obj!r}")
    if saved["type"] != type(obj).__name__:
        raise ModelFileError(path, f"the checkpoint's {what} is a {saved['type']}, not a {type(obj).__name__}")
    try:
        obj.load_state_dict(saved["state"])
    except Exception as exc:  # the state came from a file: whatever it makes load_state_dict do
        raise ModelFileError(
            path, f"the saved {what} state does not fit {obj!r}: {type(exc).__name__}: {exc}") from None


def _typed_state(value: Any, what: str, path: Path) -> dict[str, Any] | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"type", "state"} and isinstance(value["type"], str)):
        raise CorruptModelFileError(path, f"the {what} state is malformed")
    return value


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate the checkpoint at ``path`` (a file from :func:`save_checkpoint`)."""
    file = _io.read_model_file(path)
    path = file.path
    if file.description.get("kind") != "checkpoint":
        raise ModelFileError(path, "is a model file, not a checkpoint; load it with nnx.load")
    used: set[str] = set()
    state = _decode(file.description.get("checkpoint"), file.tensors, used, path)
    unused = {n for n in file.tensors if _io.is_run_state(n)} - used
    if unused:
        raise TensorMismatchError(path, f"has training-state tensors nothing refers to: {_io.quote_names(unused)}")
    if not isinstance(state, dict) or not {"epoch", "step", "rng"} <= set(state):
        raise CorruptModelFileError(path, "the training state lacks epoch, step or rng")
    for key in ("epoch", "step"):
        if not _io.is_count(state[key]):
            raise CorruptModelFileError(path, f"the training state's {key} is {state[key]!r}, not a count")
    layer_rngs = state.get("layer_rngs") if isinstance(state.get("layer_rngs"), dict) else {}
    optimizer = _typed_state(state.get("optimizer"), "optimizer", path)
    if file.transposed and optimizer is not None:
        optimizer = {**optimizer, "state": _transposed_slots(optimizer["state"], file)}
    state = {**state,
             "optimizer": optimizer,
             "schedule": _typed_state(state.get("schedule"), "learning-rate schedule", path),
             "layer_rngs": {("" if k == "model" else k): v for k, v in layer_rngs.items()}}
    return Checkpoint(file=file, state=state)


def _transposed_slots(saved: Any, file: _io.ModelFile) -> Any:
    """A version-1 optimizer state with the slots of the Linear weights turned to (out, in), as the
    weights themselves are (the optimizer is taken to hold the model's parameters in their order)."""
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)):
        return saved
    names = [n for n, _ in _io.build_model(file, "numpy").named_parameters()]
    turn = {str(i) for i, n in enumerate(names) if n in file.transposed}
    slots = {key: {k: np.ascontiguousarray(v.T) if key in turn and getattr(v, "ndim", 0) == 2 else v
                   for k, v in value.items()} if isinstance(value, dict) else value
             for key, value in saved["state"].items()}
    return {**saved, "state": slots}


# fit's training state ----------------------------------------------------------------


def save_train_state(path: str | os.PathLike[str], state: Any) -> Path:
    """Checkpoint a :class:`~nnx.TrainState` (its model and :meth:`~nnx.TrainState.state_dict`) atomically."""
    return write_run(path, state.model, state.state_dict())


#: settings that decide which samples are held out: a resumed run may never change them
HELD_OUT_SETTINGS = ("run_config", "validation_split")


def changed_settings(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """The settings (see :func:`nnx.fit`) that differ between a checkpoint and this run, as
    ``"name: saved -> now"`` lines; none when the checkpoint predates recorded settings."""
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return []
    changes = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_settings(a, b, f"{prefix}{k}.")
        elif a != b:
            changes.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return changes


def restore_train_state(path: str | os.PathLike[str], state: Any, allow_changes: bool = False) -> Checkpoint:
    """Put the checkpoint at ``path`` into a :class:`~nnx.TrainState` built as the saved run's was.

    The callbacks, history and settings are checked before anything changes;
    the model's tensors, then the run's state (:meth:`~nnx.TrainState.load_state_dict`)
    follow. Settings that differ from the saved run's raise
    :class:`~nnx.errors.ConfigError`; with ``allow_changes`` the optimizer
    keeps this run's learning rate and hyper-parameters and a warning lists the changes,
    but a changed ``run_config`` (the data and their split) is still refused.
    """
    ck = load_checkpoint(path)
    saved = ck.extra.get("callbacks") if isinstance(ck.extra, dict) else None
    if not isinstance(saved, list) or not isinstance(ck.history, dict):
        raise ModelFileError(ck.path, "is not a checkpoint of nnx.fit (no callbacks or history in it)")
    if len(saved) != len(state.callbacks):
        raise ModelFileError(
            ck.path, f"the saved run had {len(saved)} callbacks, this one has {len(state.callbacks)}; "
                     f"pass the same callbacks to resume")
    changes = changed_settings(ck.extra.get("settings") if isinstance(ck.extra, dict) else None,
                               getattr(state, "settings", None))
    held_out = [c for c in changes if c.split(":", 1)[0].split(".", 1)[0] in HELD_OUT_SETTINGS]
    if held_out and allow_changes:
        raise ConfigError(f"{ck.path}: this run's data or held-out samples differ from the checkpointed run's "
                          f"({'; '.join(held_out)}); run_config (the data and their split) and validation_split "
                          f"decide which samples are held out, and a resumed run that changed them would train on "
                          f"samples it held out, so allow_changes never changes them; resume with the checkpointed "
                          f"settings, or start a new run in another directory")
    if changes and not allow_changes:
        raise ConfigError(f"{ck.path}: this run's settings differ from the checkpointed run's "
                          f"({'; '.join(changes)}); resume with the same settings, or allow the changes "
                          f"(fit(..., allow_changes=True), nnx train --allow-changes)")
    ck.restore_model(state.model)
    optimizer = state.optimizer
    chosen = optimizer.settings()
    try:
        state.load_state_dict(ck.state)
    except ModelFileError:
        raise
    except Exception as exc:  # the state came from a file: whatever it makes the setters do
        raise ModelFileError(ck.path, f"the saved run does not fit this one: {type(exc).__name__}: {exc}") from None
    if changes:
        optimizer.apply_settings(chosen)
        warnings.warn(f"resuming {ck.path} with changed settings: {'; '.join(changes)} (the optimizer uses "
                      f"this run's values; the shuffle order continues from the checkpoint)", stacklevel=3)
    return ck


__all__ = [
    "CHECKPOINT_NAME",
    "Checkpoint",
    "changed_settings",
    "checkpoint_path",
    "claim_directory",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_state",
    "restore_train_state",
    "run_state",
    "save_checkpoint",
    "save_train_state",
    "write_run",
]
