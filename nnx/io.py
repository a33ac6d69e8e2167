"""Model files: the one place in nnx that reads and writes them.

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
import json
import math
import os
import secrets
import signal
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import (
    CorruptModelFileError,
    DTypeError,
    FormatVersionError,
    ModelFileError,
    NotAModelFileError,
    OutputPathError,
    ShapeError,
    TensorMismatchError,
    UnknownLayerError,
)
from nnx.layers import Layer
from nnx.layers.base import quote_names
from nnx.layers.registry import layer_class, register_layer, registered_layers, type_name

FORMAT = "nnx"
FORMAT_VERSION = 2
# Version 1 stored a Linear weight as (in_features, out_features); version 2 stores every weight as
# PyTorch does, (out_features, in_features). Version-1 files convert as they are read.
READ_VERSIONS = (1, 2)
SUFFIX = ".nnx"

# A header longer than this is refused before it is read.
MAX_HEADER_BYTES = 100 * 2**20
# Nesting deeper than this (Sequential layers, checkpoint state) is refused: a hostile file could recurse forever.
MAX_DEPTH = 64
# Tensors with more dimensions than this are refused (NumPy's own limit is 64).
MAX_NDIM = 32
# Prefix of tensors that belong to a checkpoint's training state, not to the model.
STATE_PREFIX = "state/"

_CODES = {
    "float64": "F64", "float32": "F32", "float16": "F16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}
_HOST_DTYPES = {code: np.dtype(name).newbyteorder("<") for name, code in _CODES.items()}

def _type_name(cls: type, path: object) -> str:
    name = type_name(cls)
    if name is None:
        raise UnknownLayerError(
            path,
            f"cannot save a {cls.__name__}: it is not in the allow-list of layer types "
            f"({', '.join(sorted(registered_layers()))}); register it with nnx.register_layer({cls.__name__})",
        )
    return name


# atomic writes -------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Bytes of the target's name that its temporary file's name repeats: a name near the file system's
# 255-byte limit still leaves room for the pid, the random part and the suffix.
_TEMP_PREFIX_BYTES = 48


def _temp_prefix(path: Path) -> str:
    """The start of the names of ``path``'s temporary files: a dot and at most 48 bytes of its name."""
    return "." + path.name.encode("utf-8", "surrogateescape")[:_TEMP_PREFIX_BYTES].decode("utf-8", "ignore") + "."


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files a killed writer of ``path`` (or of a name that starts alike) left behind."""
    prefix = _temp_prefix(path)
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(prefix):].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)
        except (ValueError, OSError):
            continue


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "the output",
) -> Path:
    """Decide whether ``path`` may be written; return it, or raise :class:`~nnx.errors.OutputPathError`.

    Every nnx writer asks this before it writes (:func:`atomic_write` itself,
    and the ``nnx`` command for all its outputs before any work). A path may be
    written when it is a regular file or a new name in an existing, writable
    folder; never a directory, a device, a FIFO or a socket (replacing
    ``/dev/null`` with a file is no way to write to it). ``inputs`` are the
    files the same command reads and ``outputs`` the other files it writes:
    ``path`` may be none of them, compared after resolving symbolic links and
    ``..`` and by inode, so a second name of an input is caught too.
    """
    target = Path(path)
    if not str(path):
        raise OutputPathError(f"{what}: an empty path; give a file name such as model.nnx")
    for role, others in (("an input", inputs), ("another output", outputs)):
        for other in others:
            if other is not None and same_file(target, Path(other)):
                raise OutputPathError(
                    f"{what} {str(target)!r} is also {role} of this command ({str(other)!r}); writing it would "
                    f"destroy what the command reads or writes; give another file name")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputPathError(f"{what} {str(target)!r} cannot be examined: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputPathError(f"{what} {str(target)!r} is a directory; give a file name inside it, "
                              f"such as model.nnx")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputPathError(f"{what} {str(target)!r} is not a regular file (a device, FIFO or socket); nnx "
                              f"writes only regular files, as replacing it would destroy it; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise OutputPathError(f"{what} {str(target)!r}: the folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {str(target)!r}: the folder {str(folder)!r} is not writable")
    return target


class _Terminated(BaseException):
    """SIGTERM arrived while a temporary file existed; raised so that it is removed, then the signal goes on."""


@contextlib.contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception while the block runs, so a temporary file is removed before the
    process ends as the signal says (only where SIGTERM has its default action, in the main thread)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[Any]) -> Path:
    """Write the byte chunks to ``path`` so that it holds either the old or the new content.

    The path must pass :func:`check_output`. The bytes go to a temporary file
    in the same directory (named with at most 48 bytes of the target's name, so
    long names fit), which is flushed, fsynced and renamed over ``path``
    (``os.replace``, atomic on POSIX and Windows); then the directory is fsynced
    so the rename survives a power cut. Overwriting keeps the old file's
    permission bits (a private 0600 model stays private; the temporary file is
    never more open than the target). A crash at any point leaves the previous
    file intact; an exception or SIGTERM during the write also removes the
    temporary file.
    """
    path = check_output(path)
    directory = path.parent
    _remove_stale_temps(path)
    tmp = directory / f"{_temp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)  # an overwrite keeps the target's permissions
    except OSError:
        keep_mode = None
    with _cleanup_on_sigterm():
        fd = os.open(tmp, flags, 0o644 if keep_mode is None else 0o600)
        try:
            if keep_mode is not None:
                os.chmod(tmp, keep_mode)
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_dir(directory)
    return path


# the container: safetensors layout ------------------------------------------------


def write_tensors(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], description: dict[str, Any]
) -> Path:
    """Atomically write host arrays and a JSON description, with a SHA-256 of everything (see ``_checksum``)."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        a = np.asarray(value)
        code = _CODES.get(a.dtype.name)
        if code is None:
            raise TypeError(f"cannot save tensor {name!r} of dtype {a.dtype}; nnx files hold {', '.join(_CODES)}")
        arrays[name] = np.asarray(a, dtype=_HOST_DTYPES[code], order="C")  # keeps 0-d arrays 0-d
    # Larger items first: with an 8-byte aligned header every tensor is aligned to its item size.
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    header: dict[str, Any] = {}
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _CODES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    description = {k: v for k, v in description.items() if k != _CHECKSUM}
    data = [arrays[name].reshape(-1).view(np.uint8) for name in order]
    description[_CHECKSUM] = _checksum(header, description, data)
    header["__metadata__"] = {"format": FORMAT, FORMAT: json.dumps(description, sort_keys=True)}
    blob = json.dumps(header, separators=(",", ":")).encode("ascii")
    blob += b" " * (-len(blob) % 8)
    return atomic_write(path, [len(blob).to_bytes(8, "little"), blob, *data])


_CHECKSUM = "sha256"
# What to do with a file of each kind nnx writes, for a reader given the wrong kind.
_KIND_USES = {
    "model": "load it with nnx.load",
    "checkpoint": "load it with nnx.load_checkpoint (nnx.load returns its model)",
    "trace": "replay it with nnx parity --against or nnx.testing.assert_matches_trace",
    "weights": "it holds weights only (nnx.save of a state dict), no architecture; build the model in code and "
               "fill it: model.load_state_dict(nnx.load_state_dict(path))",
}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


def _checksum(header: Mapping[str, Any], description: Mapping[str, Any], data: Iterable[Any]) -> str:
    """SHA-256 of the tensor table, the description (without its checksum) and the data.

    The JSON parts are hashed in a canonical form, so a changed byte anywhere
    in the file that changes its meaning is caught, not only in the data.
    """
    digest = hashlib.sha256()
    digest.update(_canonical({k: v for k, v in header.items() if k != "__metadata__"}))
    digest.update(_canonical({k: v for k, v in description.items() if k != _CHECKSUM}))
    for chunk in data:
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelFile:
    """A validated nnx file: its description and its tensors as host arrays."""

    path: Path
    size: int
    description: dict[str, Any]
    tensors: dict[str, np.ndarray]
    #: the tensors stored in version 1's (in, out) layout and transposed when read (see ``READ_VERSIONS``)
    transposed: frozenset[str] = frozenset()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_json(text: str | bytes, path: Path, what: str) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptModelFileError(path, f"{what} is not valid JSON ({exc}); the file is damaged") from None


def is_count(v: Any) -> bool:
    """A non-negative int that is not a bool (JSON sizes, offsets, steps)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _sniff(head: bytes, path: Path) -> None:
    """Name well-known foreign formats instead of misreading their first bytes as a length."""
    # a pickle's third byte is an opcode, never 0; an nnx header length of 0x0280..0x0580
    # bytes starts with the same two bytes but continues with zeros
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and head[2:3] != b"\x00":
        raise NotAModelFileError(
            path, "is a Python pickle, not an nnx file; nnx never unpickles (a pickle can run any "
                  "code); re-save the model with nnx.save")
    if head[:4] == b"PK\x03\x04":
        raise NotAModelFileError(path, "is a zip archive (.npz?), not an nnx file; nnx files are written by nnx.save")
    if head[:6] == b"\x93NUMPY":
        raise NotAModelFileError(path, "is a .npy array, not an nnx file; nnx files are written by nnx.save")


def _check_entries(header: dict[str, Any], data_len: int, path: Path) -> list[tuple[str, np.dtype, tuple[int, ...], int, int]]:
    """Validate every tensor entry against the data section's size, before any read."""
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
            raise CorruptModelFileError(path, f"tensor {name!r} has a malformed header entry {entry!r}")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _HOST_DTYPES:
            raise CorruptModelFileError(path, f"tensor {name!r} has unknown dtype {code!r} (known: {', '.join(_HOST_DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= MAX_NDIM and all(is_count(d) for d in shape)):
            raise CorruptModelFileError(path, f"tensor {name!r} has an invalid shape {shape!r:.200}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_count(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise CorruptModelFileError(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        dtype = _HOST_DTYPES[code]
        nbytes = math.prod(shape) * dtype.itemsize
        begin, end = offsets
        if nbytes > data_len or end > data_len:
            raise CorruptModelFileError(
                path, f"tensor {name!r} declares shape {tuple(shape)} {code} ({nbytes} bytes at "
                      f"[{begin}, {end})) but the file holds only {data_len} bytes of data; "
                      f"the file is truncated or corrupted")
        if any(d > data_len for d in shape):  # a zero-size tensor still may not declare absurd dimensions
            raise CorruptModelFileError(
                path, f"tensor {name!r} declares shape {tuple(shape)!r:.200}, longer in one dimension than "
                      f"the file's {data_len} bytes of data")
        if end - begin != nbytes:
            raise CorruptModelFileError(
                path, f"tensor {name!r}: shape {tuple(shape)} {code} needs {nbytes} bytes but its "
                      f"data_offsets span {end - begin}")
        entries.append((name, dtype, tuple(shape), begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            raise CorruptModelFileError(
                path, f"tensor {name!r} starts at byte {begin} of the data, expected {position} "
                      f"(tensors must be contiguous and not overlap)")
        position = end
    if position != data_len:
        raise CorruptModelFileError(
            path, f"the tensors cover {position} bytes but the data section has {data_len}; "
                  f"the file is truncated or has trailing bytes")
    return entries


def _check_version(description: Any, path: Path) -> None:
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise CorruptModelFileError(path, "the nnx description is not a JSON object with format 'nnx'")
    version = description.get("format_version")
    if version not in READ_VERSIONS:
        from nnx import __version__

        saved_by = description.get("nnx_version", "an unknown nnx")
        hint = ("upgrade nnx to read it" if is_count(version) and version > FORMAT_VERSION
                else "re-save it with a current nnx")
        raise FormatVersionError(
            path, f"format version {version!r} (written by nnx {saved_by}) cannot be read by nnx "
                  f"{__version__}, which reads versions {READ_VERSIONS}; {hint}")


def read_tensors(path: str | os.PathLike[str], kinds: tuple[str, ...] = ("model", "checkpoint")) -> ModelFile:
    """Read and validate an nnx file: sizes first, then the description, then the data.

    Every size the header declares is checked against the file's size before
    anything is read or allocated, and the data must match the SHA-256 that
    the description records. ``kinds`` are the kinds of file the caller
    reads (a parity trace, :mod:`nnx.testing.trace`, is the kind ``"trace"``).
    """
    path = Path(path)
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # opening a pipe would block
            raise NotAModelFileError(path, "is not a regular file (a pipe, socket or device)")
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise NotAModelFileError(path, "is a directory, not an nnx model file") from None
    except FileNotFoundError:
        raise NotAModelFileError(path, "no such file") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot be opened: {exc.strerror or exc}") from None
    with f:
        if path.is_dir():  # Windows opens no directories, but be explicit everywhere
            raise NotAModelFileError(path, "is a directory, not an nnx model file")
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if size == 0:
            raise NotAModelFileError(path, "is empty")
        header_len = int.from_bytes(head, "little")
        if size < 8 or header_len > size - 8:
            _sniff(head, path)  # only now: a valid header length may start with a pickle's bytes
        if size < 8:
            raise CorruptModelFileError(path, f"is truncated: {size} bytes, less than the 8-byte header length")
        if header_len > size - 8:
            raise CorruptModelFileError(
                path, f"declares a {header_len}-byte header but only {size - 8} bytes follow; "
                      f"the file is truncated or not an nnx file")
        if header_len > MAX_HEADER_BYTES:
            raise CorruptModelFileError(path, f"declares a {header_len}-byte header, over the {MAX_HEADER_BYTES}-byte limit")
        header = _parse_json(f.read(header_len), path, "the header")
        if not isinstance(header, dict):
            raise CorruptModelFileError(path, "the header is not a JSON object")
        data_len = size - 8 - header_len
        entries = _check_entries(header, data_len, path)
        metadata = header.get("__metadata__")
        if not (isinstance(metadata, dict) and metadata.get("format") == FORMAT and isinstance(metadata.get(FORMAT), str)):
            raise NotAModelFileError(
                path, "is a safetensors file without an nnx description; it was not written by nnx.save")
        description = _parse_json(metadata[FORMAT], path, "the nnx description")
        _check_version(description, path)
        kind = description.get("kind")
        if kind not in kinds:
            if kind in _KIND_USES:
                raise NotAModelFileError(path, f"is a {kind} file, not a {' or '.join(kinds)} file; "
                                               f"{_KIND_USES[kind]}")
            raise CorruptModelFileError(path, f"the description's kind is {kind!r:.50}, "
                                              f"expected {' or '.join(repr(k) for k in kinds)}")
        data = bytearray(data_len)
        if f.readinto(data) != data_len:
            raise CorruptModelFileError(path, "is truncated: it changed size while being read")
    if _checksum(header, description, [data]) != description.get(_CHECKSUM):
        raise CorruptModelFileError(
            path, "the file does not match its SHA-256 checksum; it is corrupted (flipped or overwritten bytes)")
    tensors = {
        name: np.frombuffer(data, dtype, math.prod(shape), begin).reshape(shape)
        for name, dtype, shape, begin, _ in entries
    }
    file = ModelFile(path, size, description, tensors)
    return _to_current_layout(file, linear_weights(description.get("model"))) if _legacy(file) else file


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


def load_state_dict(path: str | os.PathLike[str], model: Layer | None = None) -> dict[str, np.ndarray]:
    """The tensors of an nnx file by name, as host NumPy arrays: a weights-only file
    (``nnx.save(model.state_dict(), path)``), or a model file's or checkpoint's model tensors.

    ``model.load_state_dict(nnx.load_state_dict(path))`` puts them into a model built in code;
    it checks names, shapes and dtypes before it changes anything. A weights-only file of
    format version 1 (Linear weights stored as (in, out)) names no layers, so it needs the
    ``model`` it is for: its Linear weights are then transposed into today's (out, in).
    """
    file = read_tensors(path, kinds=("model", "checkpoint", "weights"))
    if _legacy(file) and file.description.get("kind") == "weights":
        if model is None:
            raise FormatVersionError(
                file.path, "is a weights-only file of format version 1, which stored Linear weights as "
                           "(in, out); pass the model it is for, nnx.load_state_dict(path, model), so its "
                           "Linear weights can be turned into today's (out, in)")
        file = _to_current_layout(file, [f"{p}.weight" if p else "weight" for p, layer in model.named_modules()
                                         if type_name(type(layer)) == "Linear"])
    return {n: a for n, a in file.tensors.items() if not n.startswith(STATE_PREFIX)}


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
    stored = {n: a for n, a in file.tensors.items() if not n.startswith(STATE_PREFIX)}
    if file.description.get("kind") == "model" and len(stored) != len(file.tensors):
        extra = set(file.tensors) - set(stored)
        raise TensorMismatchError(path, f"has tensors the model does not have: {quote_names(extra)}")
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
    return build_model(read_tensors(path), backend)


__all__ = [
    "FORMAT_VERSION",
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
    "read_tensors",
    "register_layer",
    "registered_layers",
    "save",
    "write_tensors",
]
