"""Parity traces: a training run recorded on one machine, replayed and checked on another.

:func:`record_trace` trains a model for a few steps on one backend (CuPy on a
GPU machine, say) and keeps what :func:`~nnx.testing.check_parity` compares:
every layer's forward output, input gradient and parameter gradients, the loss
and its gradient, and every parameter and buffer after each update, together
with everything needed to run it again (the model in nnx's model format, the
inputs and targets, the loss, the optimizer, the generators' states) and where
it ran (backend, device, dtype, matmul precision, library versions, date).
:func:`check_trace` / :func:`assert_matches_trace` replay it on local backends
(numpy and array_api_strict on a CPU-only CI machine) and report the first
tensor out of tolerance in the words of a parity report.

The file is an nnx file of kind ``"trace"`` (:mod:`nnx.io`'s container: the
safetensors layout, a JSON description, a SHA-256 over everything, no pickle),
with tensors in the dtype they were recorded in; identical tensors (a model's
output and its last layer's) are stored once. Its description carries
:data:`TRACE_VERSION`; a trace of another version is refused.

Tolerances. A tensor recorded at step ``k`` may differ by ``k`` times a
relative tolerance, as in :func:`~nnx.testing.check_parity`: float64 ``1e-12``,
float32 ``1e-5`` (:data:`nnx.testing.compare.RTOL`; backends sum in different
orders, and each step adds its rounding to the state the next starts from),
and float32 ``1e-3`` (:data:`TF32_RTOL`) when the trace was recorded with TF32
matmuls (about 10 mantissa bits). The absolute tolerance is the relative one
times the largest magnitude of the tensor or of what the layer computed it
from. ``tolerances`` maps glob patterns of tensor names (:func:`tensor_name`:
``forward/0/output``, ``backward/2/weight.grad``, ``update/1/running_mean``,
``loss/value``, ``initial/0/weight``) to the relative tolerance per step of the
tensors they match (the first matching pattern wins).

:func:`regenerate` records every example model (:mod:`nnx.testing.examples`)
on numpy into a folder; the repository's ``tests/data/traces`` is made by
``python tests/data/traces/regenerate.py``.
"""

from __future__ import annotations

import datetime
import fnmatch
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnx import backend as _backend
from nnx import io as _io
from nnx import losses as _losses
from nnx import optim as _optim
from nnx.errors import (
    ConfigError,
    CorruptModelFileError,
    FormatVersionError,
    ModelFileError,
    ParityError,
)
from nnx.layers import Layer
from nnx.losses import Loss
from nnx.optim import SGD, Optimizer
from nnx.testing.compare import compare, default_rtol, per_step
from nnx.testing.parity import Key, OptimizerFactory, ParityReport, TensorCheck, clone_to, collect, judge

TRACE_VERSION = 1
SUFFIX = ".nnxtrace"
TF32_RTOL = 1e-3
PHASES = ("forward", "loss", "backward", "update")
# The settings of the traces ``--regenerate`` records: few steps on a small batch keep them small.
EXAMPLE_STEPS = 3
EXAMPLE_BATCH = 4
EXAMPLE_DTYPE = "float32"

_MODEL, _DATA, _STEP = "model/", "data/", "trace/"


def tensor_name(phase: str, path: str | None, tensor: str) -> str:
    """The name a tolerance pattern matches: ``phase/layer path/tensor`` (``loss/value``,
    ``forward/0/output``, ``backward/2/weight.grad``; the whole model's path is ``model``)."""
    if path is None:
        return f"loss/{tensor}"
    return f"{phase}/{path or 'model'}/{tensor}"


@dataclass
class TraceEntry:
    """One recorded tensor: where it was computed, its context magnitude (``scale``) and its value."""

    step: int
    phase: str
    path: str | None
    label: str
    tensor: str
    scale: float
    value: np.ndarray

    @property
    def key(self) -> Key:
        return (self.step, self.phase, self.path, self.label, self.tensor)

    @property
    def name(self) -> str:
        return tensor_name(self.phase, self.path, self.tensor)


@dataclass
class TraceSize:
    """What a saved trace holds: bytes in all, and the bytes of the model, the data and the steps."""

    path: Path
    total: int
    model: int
    data: int
    steps: int
    entries: int
    stored: int

    def __str__(self) -> str:
        return (f"{self.path}: {_kib(self.total)} ({self.entries} tensors over the steps, {self.stored} stored "
                f"after removing duplicates; model {_kib(self.model)}, inputs and targets {_kib(self.data)}, "
                f"steps {_kib(self.steps)})")


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


@dataclass
class Trace:
    """A recorded training run (see the module docstring); :func:`load_trace` reads one,
    :meth:`save` writes one."""

    model: dict[str, Any]
    model_tensors: dict[str, np.ndarray]
    random_states: dict[str, Any]
    loss: dict[str, Any]
    optimizer: dict[str, Any]
    x: np.ndarray
    y: np.ndarray
    steps: int
    entries: list[TraceEntry]
    metadata: dict[str, Any]
    path: Path | None = field(default=None)

    @property
    def backend(self) -> str:
        return str(self.metadata.get("backend"))

    @property
    def dtype(self) -> str:
        return str(self.metadata.get("dtype"))

    def entry(self, step: int, name: str) -> TraceEntry:
        """The entry of tensor ``name`` (:func:`tensor_name`) at ``step``."""
        for e in self.entries:
            if e.step == step and e.name == name:
                return e
        raise KeyError(f"the trace records no tensor {name!r} at step {step}")

    def build_model(self, backend: str = "numpy") -> Layer:
        """The model the trace starts from, on ``backend``, with the recorded generator states."""
        file = _io.ModelFile(self.path or Path("<trace>"), _budget(self), {"model": self.model},
                             dict(self.model_tensors))
        model = _io.build_model(file, backend)
        model.set_random_states(self.random_states)
        return model

    def build_loss(self) -> Loss:
        """The loss the trace was recorded with; :class:`~nnx.errors.ConfigError` if it is not one
        of nnx's (a trace never names code to run: pass your own loss to the replay)."""
        cls = _lookup(Loss, _losses, self.loss["type"], "loss")
        return cls(**self.loss["config"])

    def build_optimizer(self) -> OptimizerFactory:
        """A factory of the optimizer the trace was recorded with; :class:`~nnx.errors.ConfigError`
        if it is not one of nnx's (pass your own optimizer to the replay)."""
        cls = _lookup(Optimizer, _optim, self.optimizer["type"], "optimizer")
        lr, hyper = self.optimizer["lr"], {k: tuple(v) if isinstance(v, list) else v
                                           for k, v in self.optimizer["hyper"].items()}
        return lambda params: cls(params, lr=lr, **hyper)

    def save(self, path: str | os.PathLike[str]) -> TraceSize:
        """Write the trace to ``path`` atomically; returns what it holds, in bytes."""
        tensors: dict[str, np.ndarray] = {f"{_MODEL}{n}": a for n, a in self.model_tensors.items()}
        tensors[f"{_DATA}x"], tensors[f"{_DATA}y"] = self.x, self.y
        rows, seen = [], {}
        for e in self.entries:
            value = np.asarray(e.value, order="C")
            fingerprint = (value.dtype.str, value.shape, value.tobytes())
            key = seen.setdefault(fingerprint, f"{_STEP}{len(seen)}")
            tensors[key] = value
            rows.append([e.step, e.phase, e.path, e.label, e.tensor, e.scale, key])
        description = {
            **_io.header_fields("trace"),
            "trace_version": TRACE_VERSION,
            "model": self.model,
            "dtype": self.dtype,
            "backend": self.backend,
            "trace": {"steps": self.steps, "loss": self.loss, "optimizer": self.optimizer,
                      "random_states": self.random_states, "metadata": self.metadata, "entries": rows},
        }
        written = _io.write_tensors(path, tensors, description)

        def nbytes(prefix: str) -> int:
            return sum(a.nbytes for n, a in tensors.items() if n.startswith(prefix))

        return TraceSize(written, written.stat().st_size, nbytes(_MODEL), nbytes(_DATA), nbytes(_STEP),
                         len(rows), len(seen))


def _allowed(base: type, module: Any) -> dict[str, type]:
    """nnx's own subclasses of ``base`` (the module's), by class name: what a trace may name."""
    found, todo = {}, list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ == module.__name__:
            found[cls.__name__] = cls
    return found


def _lookup(base: type, module: Any, name: Any, what: str) -> type:
    allowed = _allowed(base, module)
    if name not in allowed:
        raise ConfigError(f"the trace's {what} is a {name!r:.60}, not one of nnx's ({', '.join(sorted(allowed))}); "
                          f"pass {what}= (your own {what}) to replay it")
    return allowed[name]


def _budget(trace: Trace) -> int:
    """The element budget a model description is judged against: what the trace holds."""
    return sum(a.nbytes for a in trace.model_tensors.values()) + 1


# recording --------------------------------------------------------------------------


def _versions(name: str) -> dict[str, str]:
    from nnx import __version__

    versions = {"nnx": __version__, "numpy": np.__version__, "python": platform.python_version()}
    module = sys.modules.get(_backend.get(name).module)
    if module is not None and name != "numpy":
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def _describe_optimizer(make_optimizer: OptimizerFactory, model: Layer) -> dict[str, Any]:
    optimizer = make_optimizer(clone_to(model, "numpy").parameters())
    state = optimizer.state_dict()
    if state["state"] or any(state["steps"]):
        raise ConfigError("record_trace: the optimizer must start fresh (no steps taken, no state); "
                          "pass a function that builds one from a parameter list")
    if len(optimizer.param_groups) != 1:
        raise ConfigError("record_trace records an optimizer of one parameter group; a trace rebuilds it "
                          "from the model's parameter list")
    hyper = optimizer.settings()
    return {"type": state["type"], "lr": hyper.pop("lr"), "hyper": hyper}


def record_trace(
    model: Layer,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    optimizer: OptimizerFactory | None = None,
    steps: int = 3,
    backend: str | None = None,
    matmul_precision: str = "highest",
) -> Trace:
    """Train a copy of ``model`` for ``steps`` steps on one backend and record every tensor.

    Parameters
    ----------
    model, loss
        The model (any backend; it is not modified, and its layers must be
        registered, as for :func:`nnx.save`) and its loss.
    x, y
        Inputs and targets (any backend; recorded in their dtype).
    optimizer
        Builds the optimizer from a parameter list (default ``SGD(params, lr=0.1)``).
    steps
        Training steps to record (1 or more).
    backend
        Where to run (default: the model's backend, else the selected one).
    matmul_precision
        Float32 matmul precision during the run (``"highest"``, or ``"tf32"``
        on a backend that has it); recorded with the trace.

    Returns
    -------
    Trace
        Save it with :meth:`Trace.save`.

    Raises
    ------
    ValueError
        ``steps`` below 1; :class:`~nnx.errors.UnknownLayerError` for an
        unregistered layer; whatever the training run raises.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"record_trace needs steps >= 1, got {steps!r}")
    if not isinstance(model, Layer):
        raise TypeError(f"record_trace expects an nnx model, got {type(model).__name__}")
    name = backend or model.backend or _backend.current()
    _backend.get(name)
    make_optimizer = optimizer or (lambda params: SGD(params, lr=0.1))
    fields, tensors = _io.model_tensors(model)
    random_states = model.random_states()  # as the run starts: its dropout masks are drawn from them
    host_x, host_y = _backend.to_host(x), _backend.to_host(y)
    loss_config = loss.config()
    entries: list[tuple[Key, Any, float]] = []
    before = _backend.set_matmul_precision(matmul_precision, name)
    try:
        collect(name, model, loss, make_optimizer, host_x, host_y, steps, entries)
    finally:
        _backend.set_matmul_precision(before, name)
    metadata = {
        "backend": name,
        "device": _backend.device_name(name),
        "dtype": fields["dtype"] or _backend.dtype_name(host_x),
        "matmul_precision": matmul_precision,
        "versions": _versions(name),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
    }
    return Trace(
        model=fields["model"],
        model_tensors={n: np.array(a) for n, a in tensors.items()},
        random_states=random_states,
        loss={"type": type(loss).__name__, "config": loss_config},
        optimizer=_describe_optimizer(make_optimizer, model),
        x=host_x, y=host_y, steps=steps,
        entries=[TraceEntry(*key, scale=scale, value=value) for key, value, scale in entries],
        metadata=metadata,
    )


# reading ----------------------------------------------------------------------------


def _fail(path: Path, problem: str) -> CorruptModelFileError:
    return CorruptModelFileError(path, problem)


def _check_version(description: dict[str, Any], path: Path) -> None:
    version = description.get("trace_version")
    if version != TRACE_VERSION:
        from nnx import __version__

        hint = ("upgrade nnx to replay it" if _io.is_count(version) and version > TRACE_VERSION
                else "record it again with this nnx")
        raise FormatVersionError(
            path, f"trace format version {version!r:.20} (recorded by nnx "
                  f"{str(description.get('nnx_version', 'unknown'))[:40]}) cannot be replayed by nnx "
                  f"{__version__}, which reads trace version {TRACE_VERSION}; {hint}")


def _check_finite(name: str, a: np.ndarray, path: Path) -> None:
    if a.dtype.kind == "f" and not bool(np.isfinite(a).all()):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise _fail(path, f"tensor {name} holds {float(a[bad])} at {list(bad)}; a trace records a run whose every "
                          f"tensor was finite (nnx stops a run at the first NaN or infinity), so the file "
                          f"is corrupted or forged")


def _entries(body: dict[str, Any], tensors: dict[str, np.ndarray], steps: int, path: Path) -> list[TraceEntry]:
    rows = body.get("entries")
    if not isinstance(rows, list) or not rows:
        raise _fail(path, "the trace records no tensors ('entries' is not a non-empty list)")
    entries, used = [], set()
    for i, row in enumerate(rows):
        ok = (isinstance(row, list) and len(row) == 7 and _io.is_count(row[0]) and 1 <= row[0] <= steps
              and row[1] in PHASES and (row[2] is None or isinstance(row[2], str))
              and isinstance(row[3], str) and isinstance(row[4], str)
              and isinstance(row[5], (int, float)) and not isinstance(row[5], bool)
              and math.isfinite(row[5]) and row[5] >= 0 and isinstance(row[6], str))
        if not ok:
            raise _fail(path, f"trace entry {i} is not [step in 1..{steps}, phase, layer path, label, tensor, "
                              f"scale >= 0, tensor key]: {row!r:.200}")
        key = row[6]
        if not key.startswith(_STEP) or key not in tensors:
            raise _fail(path, f"trace entry {i} refers to tensor {key!r:.100}, which the file does not hold")
        used.add(key)
        entry = TraceEntry(row[0], row[1], row[2], row[3], row[4], float(row[5]), tensors[key])
        _check_finite(f"{entry.name} of step {entry.step}", entry.value, path)
        entries.append(entry)
    unused = {n for n in tensors if n.startswith(_STEP)} - used
    if unused:
        raise _fail(path, f"the file holds step tensors no entry refers to: {_io.quote_names(unused)}")
    recorded = {e.step for e in entries}
    if len(recorded) != steps:  # every recorded step is in 1..steps, so this says each one is there
        raise _fail(path, f"the trace declares {steps} steps but records steps {sorted(recorded)[:10]}")
    return entries


def _json_object(value: Any, what: str, keys: set[str], path: Path) -> dict[str, Any]:
    if not (isinstance(value, dict) and keys <= set(value)):
        raise _fail(path, f"the trace's {what} is not an object with {', '.join(sorted(keys))}: {value!r:.200}")
    return value


def _check_against_model(trace: Trace, model: Layer, path: Path) -> None:
    """Step tensors of parameters and buffers must have their shapes; inputs and targets one batch."""
    state = {n: _backend.to_host(a) for n, a in model.state_dict().items()}
    for e in trace.entries:
        if e.phase != "update":
            continue
        name = f"{e.path}.{e.tensor}" if e.path else e.tensor
        if name not in state:
            raise _fail(path, f"step {e.step} records an update of {name!r}, which the model does not have")
        if e.value.shape != state[name].shape or e.value.dtype != state[name].dtype:
            raise _fail(path, f"step {e.step} records {name!r} as {e.value.dtype.name}{list(e.value.shape)} "
                              f"but the model's is {state[name].dtype.name}{list(state[name].shape)}")
    if trace.x.ndim == 0 or trace.y.ndim == 0 or trace.x.shape[0] != trace.y.shape[0]:
        raise _fail(path, f"the inputs {list(trace.x.shape)} and targets {list(trace.y.shape)} are not one batch "
                          f"of samples each")


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate a trace file: the container (sizes, checksum), the trace version, every
    entry, NaNs, shapes, the loss and optimizer, and the model (built once on numpy).

    Raises a :class:`~nnx.errors.ModelFileError` subclass naming the file and the problem:
    :class:`~nnx.errors.FormatVersionError` for another trace version,
    :class:`~nnx.errors.UnknownLayerError` for a layer type outside the allow-list.
    """
    file = _io.read_tensors(path, kinds=("trace",))
    path = file.path
    description = file.description
    _check_version(description, path)
    body = _json_object(description.get("trace"), "body", {"steps", "loss", "optimizer", "random_states",
                                                             "metadata", "entries"}, path)
    steps = body["steps"]
    if not (_io.is_count(steps) and steps >= 1):
        raise _fail(path, f"the trace's steps {steps!r:.50} is not a count >= 1")
    for name, a in file.tensors.items():
        if not name.startswith(_STEP):  # step tensors are checked by the entries that name them
            _check_finite(repr(name), a, path)
    for name in (f"{_DATA}x", f"{_DATA}y"):
        if name not in file.tensors:
            raise _fail(path, f"the trace lacks its {'inputs' if name.endswith('x') else 'targets'} ({name!r})")
    loss = _json_object(body["loss"], "loss", {"type", "config"}, path)
    optimizer = _json_object(body["optimizer"], "optimizer", {"type", "lr", "hyper"}, path)
    metadata = _json_object(body["metadata"], "metadata", {"backend", "dtype", "matmul_precision"}, path)
    if not isinstance(body["random_states"], dict):
        raise _fail(path, "the trace's random_states is not an object")
    trace = Trace(
        model=description.get("model"),
        model_tensors={n[len(_MODEL):]: a for n, a in file.tensors.items() if n.startswith(_MODEL)},
        random_states=body["random_states"],
        loss=loss, optimizer=optimizer,
        x=file.tensors[f"{_DATA}x"], y=file.tensors[f"{_DATA}y"], steps=steps,
        entries=_entries(body, file.tensors, steps, path),
        metadata=metadata, path=path,
    )
    if not (isinstance(loss["type"], str) and isinstance(loss["config"], dict)):
        raise _fail(path, f"the trace's loss {loss!r:.200} needs a type name and a config object")
    if not (isinstance(optimizer["type"], str) and isinstance(optimizer["hyper"], dict)):
        raise _fail(path, f"the trace's optimizer {optimizer!r:.200} needs a type name and a hyper object")
    try:
        model = trace.build_model("numpy")
    except ModelFileError:
        raise
    except Exception as exc:  # generator states or tensors that do not fit the model
        raise _fail(path, f"the trace's model cannot be rebuilt: {type(exc).__name__}: {exc}") from None
    # nnx's own loss and optimizer are judged by their constructors now; one of the user's is
    # refused by the replay unless the caller passes it (ConfigError)
    for what, base, module, build in (
            ("loss", Loss, _losses, trace.build_loss),
            ("optimizer", Optimizer, _optim, lambda: trace.build_optimizer()(model.parameters()))):
        if body[what]["type"] in _allowed(base, module):
            try:
                build()
            except (TypeError, ValueError) as exc:
                raise _fail(path, f"the trace's {what} {body[what]!r:.200} is invalid: {exc}") from None
    _check_against_model(trace, model, path)
    return trace


# replaying --------------------------------------------------------------------------


@dataclass
class TraceReport(ParityReport):
    """A :class:`~nnx.testing.ParityReport` of local backends against a trace (the reference)."""

    source: str = ""
    recorded: dict[str, Any] = field(default_factory=dict)

    @property
    def first_failure_name(self) -> str | None:
        f = self.first_failure
        if f is None:
            return None
        return f"initial/{f.layer or 'model'}/{f.tensor}" if f.step == 0 else tensor_name(f.phase, f.layer, f.tensor)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "trace": self.source, "recorded": self.recorded,
                "first_failure_name": self.first_failure_name}

    def __str__(self) -> str:
        text = super().__str__()
        name = self.first_failure_name
        if name is not None:
            text += f"\n    its name for a tolerance (--tolerance PATTERN=RTOL, tolerances=): {name}"
        return text


def _initial_checks(report: TraceReport, trace: Trace, model: Layer, labels: dict[str, str],
                    name: str, tolerance: Callable[[Key, Any], tuple[float, float | None]]) -> None:
    """The model's starting parameters and buffers against the trace's, as step 0."""
    state = {n: _backend.to_host(a) for n, a in model.state_dict().items()}
    for tensor_key, expected in trace.model_tensors.items():
        path, _, local = tensor_key.rpartition(".")
        key: Key = (0, "initial", path, labels.get(path, ""), local)
        rtol, atol = tolerance((1, *key[1:]), expected)  # type: ignore[arg-type]
        check = TensorCheck(*key, backend=name, comparison=compare(state[tensor_key], expected, rtol, atol))
        report.checked += 1
        if not check.comparison.ok and report.first_failure is None:
            report.first_failure = check


def tolerance_rule(trace: Trace, rtol: float | None,
                   tolerances: Mapping[str, float] | None) -> Callable[[Key, Any], tuple[float, float | None]]:
    """The (rtol, atol) of each recorded tensor of ``trace`` (see the module docstring). ``rtol`` and each
    value of ``tolerances`` are checked here, as the caller passed them: a finite number >= 0 that stays
    finite times the trace's steps (:class:`~nnx.errors.ArgumentError` otherwise)."""
    patterns = [(pattern, per_step(value, f"tolerance of {pattern!r}", "check_trace", trace.steps))
                for pattern, value in (tolerances or {}).items()]
    if rtol is not None:
        rtol = per_step(rtol, "rtol", "check_trace", trace.steps)
    tf32 = trace.metadata.get("matmul_precision") == "tf32"

    def tolerance(key: Key, expected: Any) -> tuple[float, float | None]:
        step, phase, path, _, tensor = key
        name = f"initial/{path or 'model'}/{tensor}" if phase == "initial" else tensor_name(phase, path, tensor)
        for pattern, value in patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return value * step, None
        if rtol is not None:
            return rtol * step, None
        base = default_rtol(expected.dtype)
        if tf32 and expected.dtype == np.float32:
            base = TF32_RTOL
        return base * step, None

    return tolerance


def check_trace(
    trace: Trace | str | os.PathLike[str],
    model: Layer | None = None,
    *,
    backends: Sequence[str] | None = None,
    loss: Loss | None = None,
    optimizer: OptimizerFactory | None = None,
    rtol: float | None = None,
    tolerances: Mapping[str, float] | None = None,
) -> TraceReport:
    """Replay a trace on local backends and compare every tensor with the recorded one.

    Parameters
    ----------
    trace
        A :class:`Trace` or the path of a trace file.
    model
        The model to replay (default: the trace's own). A model given here must
        have the trace's architecture; its starting parameters and buffers are
        compared with the trace's first (as step 0, ``initial/<path>/<name>``),
        so a changed initialiser is reported too.
    backends
        Where to replay (default: the backend of ``model`` if given, else the selected one).
    loss, optimizer
        Replace the trace's loss and optimizer (needed only for ones of your own).
    rtol, tolerances
        The relative tolerance per step for every tensor, and per tensor-name
        glob pattern (see the module docstring); defaults per dtype.

    Returns
    -------
    TraceReport
        ``ok`` when every tensor agrees; ``first_failure`` names the first one that does not.
    """
    if not isinstance(trace, Trace):
        trace = load_trace(trace)
    tolerance = tolerance_rule(trace, rtol, tolerances)
    names = list(backends) if backends else [(model.backend if model is not None else None) or _backend.current()]
    if model is None:
        model = trace.build_model("numpy")
    else:
        architecture = _io.canonical_architecture(_io.architecture(model, "<model>"))
        if architecture != _io.canonical_architecture(trace.model):
            raise ConfigError(f"the model's architecture {architecture!r:.300} differs from the trace's "
                              f"{trace.model!r:.300}; replay the trace with its own model (model=None)")
    for name in names:
        _backend.get(name)
    start = clone_to(model, "numpy")
    start.set_random_states(trace.random_states)
    run_loss = loss if loss is not None else trace.build_loss()
    make_optimizer = optimizer or trace.build_optimizer()
    saved = {n: _backend.set_matmul_precision("highest", n) for n in names}
    runs: dict[str, tuple[list[tuple[Key, Any, float]], str | None]] = {}
    try:
        for name in names:
            entries: list[tuple[Key, Any, float]] = []
            try:
                collect(name, start, run_loss, make_optimizer, trace.x, trace.y, trace.steps, entries)
                runs[name] = (entries, None)
            except Exception as exc:  # a backend that cannot run the model is a failure, as in check_parity
                runs[name] = (entries, f"{type(exc).__name__}: {exc}")
    finally:
        for n, precision in saved.items():
            _backend.set_matmul_precision(precision, n)
    reference = f"{trace.backend} trace"
    report = TraceReport(reference, [reference, *names], trace.dtype, trace.steps, 0, None,
                         source=str(trace.path or "<memory>"), recorded=dict(trace.metadata))
    labels = {path: label for _, _, path, label, _ in (e.key for e in trace.entries) if path is not None}
    for name in names:
        _initial_checks(report, trace, start, labels, name, tolerance)
        if report.first_failure is not None:
            break
    initial_failure = report.first_failure
    report.losses[reference] = [float(e.value) for e in trace.entries if e.phase == "loss" and e.tensor == "value"]
    for name in names:
        report.losses[name] = [float(v) for k, v, _ in runs[name][0] if k[1] == "loss" and k[4] == "value"]
    judge(report, [(e.key, e.value, e.scale) for e in trace.entries], runs, tolerance)
    if initial_failure is not None:
        report.first_failure = initial_failure
    return report


def assert_matches_trace(model: Layer | None, trace: Trace | str | os.PathLike[str],
                         **kwargs: Any) -> TraceReport:
    """:func:`check_trace`, raising :class:`~nnx.errors.ParityError` with the report unless every
    tensor agrees. ``model`` may be ``None`` (the trace's own model)."""
    report = check_trace(trace, model, **kwargs)
    if not report.ok:
        raise ParityError(f"{report.source}: {report}")
    return report


# the example models' traces ---------------------------------------------------------


def example_trace(name: str) -> Trace:
    """The trace of example model ``name`` as ``--regenerate`` records it (numpy, :data:`EXAMPLE_DTYPE`,
    the first :data:`EXAMPLE_BATCH` samples, :data:`EXAMPLE_STEPS` steps)."""
    from nnx.testing.examples import example

    case = example(name, EXAMPLE_DTYPE)
    return record_trace(case.model, case.loss, case.x[:EXAMPLE_BATCH], case.y[:EXAMPLE_BATCH],
                        optimizer=case.optimizer, steps=EXAMPLE_STEPS, backend="numpy")


def regenerate(directory: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[TraceSize]:
    """Record the traces of the example models (default: all of them) into ``directory``."""
    from nnx.testing.examples import EXAMPLES

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return [example_trace(name).save(folder / f"{name}{SUFFIX}") for name in (names or list(EXAMPLES))]


__all__ = [
    "EXAMPLE_BATCH",
    "EXAMPLE_DTYPE",
    "EXAMPLE_STEPS",
    "SUFFIX",
    "TF32_RTOL",
    "TRACE_VERSION",
    "Trace",
    "TraceEntry",
    "TraceReport",
    "TraceSize",
    "assert_matches_trace",
    "check_trace",
    "example_trace",
    "load_trace",
    "record_trace",
    "regenerate",
    "tensor_name",
]
