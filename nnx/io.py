"""Model files: save, load, build and fill models (the container is :mod:`nnx.tensorfile`, where
files may be written and how :mod:`nnx.paths`; their names are re-exported here).

``save(model, path)`` writes a model; ``load(path, backend=None)`` builds it
again on any backend. ``save(model.state_dict(), path)`` writes the weights
alone, which ``load_state_dict(path)`` reads back for a model built in code. A file is a JSON description of the architecture
(layer types and their ``config()``, dtype, format version, nnx version) plus
the raw tensors.

The container is the safetensors layout (an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, then
the raw little-endian bytes), with nnx's description stored in the header's
``__metadata__``. nnx reads and writes it itself with NumPy, so it adds no
dependency, and the ``safetensors`` package (and every other safetensors
reader) can open nnx files. It was chosen over ``.npz`` because its header
states every size up front, so a reader checks them against the file size
before it reads or allocates anything, while ``.npz`` is a zip archive whose
members carry their own (possibly lying) sizes and ``.npy`` headers.

Nothing executes on load: no pickle anywhere, and layer types named in a file
are looked up in an explicit allow-list (``register_layer``), never imported.
Every problem with a file raises a :class:`~nnx.errors.ModelFileError`
subclass that names the file and the problem; a SHA-256 over the tensor
table, the description and the data catches damaged bytes anywhere. Writes are atomic: a temporary
file in the same directory, flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import (
    CorruptModelFileError,
    DTypeError,
    FormatVersionError,
    ShapeError,
    TensorMismatchError,
    UnknownLayerError,
)
from nnx.layers import Layer
from nnx.layers.base import quote_names
from nnx.layers.registry import layer_class, register_layer, registered_layers, type_name
from nnx.paths import atomic_write, check_output, same_file
from nnx.tensorfile import (FORMAT, FORMAT_VERSION, MAX_DEPTH, MAX_HEADER_BYTES, MAX_NDIM, STATE_PREFIX, SUFFIX,
                            ModelFile, is_count, is_run_state, read_tensors, write_tensors)


def _type_name(cls: type, path: object) -> str:
    name = type_name(cls)
    if name is None:
        raise UnknownLayerError(
            path,
            f"cannot save a {cls.__name__}: it is not in the allow-list of layer types "
            f"({', '.join(sorted(registered_layers()))}); register it with nnx.register_layer({cls.__name__})",
        )
    return name


# models ---------------------------------------------------------------------------


def architecture(layer: Layer, path: object) -> dict[str, Any]:
    """The JSON description of ``layer`` (:meth:`~nnx.Layer.describe`) under its registered type names."""
    return layer.describe(lambda cls: _type_name(cls, path))


def canonical_architecture(node: Any) -> Any:
    """A description in the current form: nnx 0.1 wrote a Sequential as ``{"type", "layers"}``."""
    if not isinstance(node, dict):
        return node
    if set(node) == {"type", "layers"} and isinstance(node["layers"], list):
        node = {"type": node["type"], "config": {},
                "children": [[str(i), c] for i, c in enumerate(node["layers"])]}
    if isinstance(node.get("children"), list):
        node = {**node, "children": [[pair[0], canonical_architecture(pair[1])]
                                     if isinstance(pair, list) and len(pair) == 2 else pair
                                     for pair in node["children"]]}
    return node


def model_tensors(model: Layer, path: object = "<memory>") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The description fields and host tensors that describe ``model``."""
    if not isinstance(model, Layer):
        raise TypeError(f"expected an nnx layer or Sequential, got {type(model).__name__}")
    tensors = {name: _backend.to_host(value) for name, value in model.state_dict().items()}
    params = model.parameters()
    fields = {
        "model": architecture(model, path),
        "dtype": _backend.dtype_name(params[0].data) if params else None,
        "backend": model.backend,
    }
    ties = model.tied_parameters()
    if ties:
        fields["ties"] = [list(pair) for pair in ties]
    return fields, tensors


def header_fields(kind: str) -> dict[str, Any]:
    """The description fields every nnx file starts with."""
    from nnx import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "nnx_version": __version__, "kind": kind}


def save(model: Layer | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (architecture and tensors) to ``path`` atomically; returns the path.

    The model may live on any backend; the file does not depend on it. Given a
    state dict (``model.state_dict()``: names to arrays of any backend) instead,
    the file holds those tensors alone, a weights-only file that
    :func:`load_state_dict` reads (and :func:`load` refuses: it has no architecture).
    """
    if isinstance(model, Mapping):
        return _save_weights(model, path)
    fields, tensors = model_tensors(model, path)
    return write_tensors(path, tensors, {**header_fields("model"), **fields})


def _save_weights(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    tensors = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"a state dict's keys are tensor names (non-empty strings), got {name!r}")
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not an array; save a state "
                            f"dict as model.state_dict() returns it, or the model itself with nnx.save(model, path)")
        tensors[name] = _backend.to_host(value)
    return write_tensors(path, tensors, header_fields("weights"))


def read_model_file(path: str | os.PathLike[str], kinds: tuple[str, ...] = ("model", "checkpoint")) -> ModelFile:
    """:func:`~nnx.tensorfile.read_tensors`, with a version-1 model's or checkpoint's Linear weights
    (stored (in, out)) turned into today's (out, in); ``ModelFile.transposed`` names them."""
    file = read_tensors(path, kinds)
    if _legacy(file) and file.description.get("kind") != "weights":
        return _to_current_layout(file, linear_weights(file.description.get("model")))
    return file


def _legacy(file: ModelFile) -> bool:
    """Whether ``file`` stores Linear weights as (in, out): format version 1."""
    return file.description.get("format_version") == 1


def linear_weights(node: Any, path: str = "", depth: int = 0) -> list[str]:
    """The state names of the Linear weights in a (validated or not) model description."""
    node = canonical_architecture(node)
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return []
    names = [f"{path}weight"] if node.get("type") == "Linear" else []
    for pair in node.get("children", []) if isinstance(node.get("children"), list) else []:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
            names += linear_weights(pair[1], f"{path}{pair[0]}.", depth + 1)
    return names


def _to_current_layout(file: ModelFile, names: Iterable[str]) -> ModelFile:
    """``file`` with the 2-D tensors ``names`` transposed from version 1's (in, out) to (out, in)."""
    tensors = dict(file.tensors)
    done = {n for n in names if n in tensors and tensors[n].ndim == 2}
    for n in done:
        tensors[n] = np.ascontiguousarray(tensors[n].T)
    return ModelFile(file.path, file.size, file.description, tensors, frozenset(done))


def load_state_dict(path: str | os.PathLike[str], model: Layer | None = None) -> dict[str, np.ndarray]:
    """The tensors of an nnx file by name, as host NumPy arrays: a weights-only file
    (``nnx.save(model.state_dict(), path)``), or a model file's or checkpoint's model tensors.

    ``model.load_state_dict(nnx.load_state_dict(path))`` puts them into a model built in code;
    it checks names, shapes and dtypes before it changes anything. A weights-only file of
    format version 1 (Linear weights stored as (in, out)) names no layers, so it needs the
    ``model`` it is for: its Linear weights are then transposed into today's (out, in).
    """
    file = read_model_file(path, kinds=("model", "checkpoint", "weights"))
    if _legacy(file) and file.description.get("kind") == "weights":
        if model is None:
            raise FormatVersionError(
                file.path, "is a weights-only file of format version 1, which stored Linear weights as "
                           "(in, out); pass the model it is for, nnx.load_state_dict(path, model), so its "
                           "Linear weights can be turned into today's (out, in)")
        file = _to_current_layout(file, [f"{p}.weight" if p else "weight" for p, layer in model.named_modules()
                                         if type_name(type(layer)) == "Linear"])
    return file.model_tensors()


@contextlib.contextmanager
def _default_rng_untouched() -> Iterator[None]:
    """Building layers draws initial weights; keep nnx's default generator where it was."""
    rng = _random.default()
    state = rng.bit_generator.state
    try:
        yield
    finally:
        rng.bit_generator.state = state


class _Builder:
    """Builds a model from a validated description, refusing anything not allow-listed."""

    def __init__(self, path: Path, budget: int) -> None:
        self.path = path
        self.budget = budget

    def build(self, node: Any, where: str, depth: int = 0) -> Layer:
        path = self.path
        if depth > MAX_DEPTH:
            raise CorruptModelFileError(path, f"layers nest deeper than {MAX_DEPTH} levels at {where}")
        if not (isinstance(node, dict) and isinstance(node.get("type"), str)):
            raise CorruptModelFileError(path, f"layer {where} is not a JSON object with a 'type': {node!r:.200}")
        name = node["type"]
        cls = layer_class(name)
        if cls is None:
            raise UnknownLayerError(
                path, f"layer {where} has type {name!r:.100}, which is not an allowed layer type "
                      f"({', '.join(sorted(registered_layers()))}); nnx never imports code named in a file; "
                      f"if it is your own class, register it with nnx.io.register_layer before loading")
        if set(node) == {"type", "layers"}:  # nnx 0.1's form of a Sequential
            if not isinstance(node["layers"], list):
                raise CorruptModelFileError(path, f"layer {where} ({name}) needs a list of 'layers'")
            node = {"type": name, "config": {}, "children": [[str(i), c] for i, c in enumerate(node["layers"])]}
        config = node.get("config")
        if set(node) - {"children"} != {"type", "config"} or not isinstance(config, dict):
            raise CorruptModelFileError(path, f"layer {where} ({name}) needs exactly 'type', a 'config' object "
                                              f"and, for a layer with sub-layers, 'children'")
        if "backend" in config:
            raise CorruptModelFileError(
                path, f"layer {where} ({name}) config names a backend ({config['backend']!r:.50}); nnx never writes "
                      f"one, as every layer of a loaded model is built on the backend the loader picks "
                      f"(nnx.load(path, backend=...)); the description is forged or damaged")
        children = self._children(node.get("children", []), where, name, depth)
        self.budget -= self._size(cls, config, where, name)
        if self.budget < 0:
            stated = cls.config_size.__func__ is not Layer.config_size.__func__  # type: ignore[attr-defined]
            hint = ("" if stated else f"; if {name} is your own layer and the file is sound, give it a classmethod "
                    f"config_size(config) that counts its arrays' elements")
            raise CorruptModelFileError(
                path, f"layer {where} ({name}) config {config!r:.200} describes arrays larger than the "
                      f"whole file; the description is corrupted{hint}")
        try:
            with _default_rng_untouched():
                layer = cls.from_config(config, children)
        except Exception as exc:  # whatever a constructor makes of arguments it never expected
            raise CorruptModelFileError(
                path, f"layer {where} ({name}) has an invalid config {config!r:.200}: "
                      f"{type(exc).__name__}: {exc}") from None
        if getattr(layer, "rng", None) is _random.default():
            # a file names no seed, so every random layer would share nnx's default generator: a restored
            # state (a checkpoint's, a trace's) could only be one layer's; give each its own, seeded by its place
            layer.rng = _random.make_rng(int.from_bytes(hashlib.sha256(where.encode()).digest()[:8], "little"))
        return layer

    def _size(self, cls: type[Layer], config: dict[str, Any], where: str, name: str) -> int:
        """The elements ``config`` implies (:meth:`~nnx.Layer.config_size`), before anything is built."""
        try:
            return int(cls.config_size(config))
        except Exception as exc:  # a config_size that chokes on values it never expected
            raise CorruptModelFileError(
                self.path, f"layer {where} ({name}) has an invalid config {config!r:.200}: "
                           f"{type(exc).__name__}: {exc}") from None

    def _children(self, pairs: Any, where: str, name: str, depth: int) -> dict[str, Layer]:
        if not isinstance(pairs, list):
            raise CorruptModelFileError(self.path, f"layer {where} ({name}) has 'children' that are not a list")
        children: dict[str, Layer] = {}
        prefix = "" if where == "model" else f"{where}."
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)) or pair[0] in children:
                raise CorruptModelFileError(
                    self.path, f"layer {where} ({name}) has a child that is not a unique [name, layer] pair: "
                               f"{pair!r:.200}")
            children[pair[0]] = self.build(pair[1], f"{prefix}{pair[0]}", depth + 1)
        return children


def fill_model(model: Layer, file: ModelFile) -> None:
    """Move the file's tensors into ``model``'s parameters and buffers, checking each."""
    path = file.path
    stored = file.model_tensors()
    try:
        model.load_state_dict(stored, source="the file", cast="none")
    except (ShapeError, DTypeError) as exc:
        raise TensorMismatchError(path, str(exc)) from None
    except ValueError as exc:  # values a layer refuses (Layer.check_arrays): NaN weights, a std of 0
        raise CorruptModelFileError(path, str(exc)) from None


def build_model(file: ModelFile, backend: str | None = None) -> Layer:
    """Build the model a validated file describes, on ``backend`` (default: the selected one)."""
    name = backend or _backend.current()
    _backend.get(name)
    with _backend.use(name):
        model = _Builder(file.path, file.size).build(file.description.get("model"), "model")
    _tie(model, file)
    fill_model(model, file)
    return model


def _tie(model: Layer, file: ModelFile) -> None:
    """Tie the parameters the file says are one (``Layer.tied_parameters``), as the saved model had them."""
    ties = file.description.get("ties", [])
    if not (isinstance(ties, list) and all(isinstance(t, list) and len(t) == 2 and all(isinstance(n, str) for n in t)
                                           for t in ties)):
        raise CorruptModelFileError(file.path, f"the description's ties {ties!r:.200} are not [name, name] pairs")
    for name, source in ties:
        try:
            model.tie(name, source)
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptModelFileError(file.path, f"cannot tie {name!r:.100} to {source!r:.100}: {exc}") from None


def load(path: str | os.PathLike[str], backend: str | None = None) -> Layer:
    """Build the model saved at ``path`` on ``backend`` (default: the selected one).

    Works on model files and on checkpoints (it returns the checkpoint's model).
    Raises a :class:`~nnx.errors.ModelFileError` subclass naming the file and
    the problem when the file is not a valid nnx file, or holds weights only.
    """
    return build_model(read_model_file(path), backend)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "MAX_NDIM",
    "STATE_PREFIX",
    "is_count",
    "is_run_state",
    "MAX_HEADER_BYTES",
    "ModelFile",
    "SUFFIX",
    "atomic_write",
    "check_output",
    "same_file",
    "build_model",
    "load",
    "load_state_dict",
    "model_tensors",
    "read_model_file",
    "read_tensors",
    "register_layer",
    "registered_layers",
    "save",
    "write_tensors",
]
