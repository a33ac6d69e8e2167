"""The nnx file container: the safetensors layout with nnx's description in ``__metadata__``
and a SHA-256 over everything, written atomically (:mod:`nnx.paths`) and read with every check a
hostile file needs before anything is allocated (see :mod:`nnx.io` for the format's reasons).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from nnx.errors import (
    CorruptModelFileError,
    FormatVersionError,
    ModelFileError,
    NotAModelFileError,
)

from nnx.paths import atomic_write

FORMAT = "nnx"
FORMAT_VERSION = 2
# Version 1 stored a Linear weight as (in_features, out_features); version 2 stores every weight as
# PyTorch does, (out_features, in_features). nnx.io turns version-1 models as it reads them.
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


def is_run_state(name: str) -> bool:
    """Whether a checkpoint's tensor ``name`` is part of its run state (``state/N``), not of its model."""
    return name.startswith(STATE_PREFIX) and "." not in name

_CODES = {
    "float64": "F64", "float32": "F32", "float16": "F16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}
_HOST_DTYPES = {code: np.dtype(name).newbyteorder("<") for name, code in _CODES.items()}


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

    def model_tensors(self) -> dict[str, np.ndarray]:
        """The tensors of the model (or weights): all but a checkpoint's run state. Those are named
        ``state/N`` (:data:`STATE_PREFIX`), and only in a checkpoint: a model tensor's name always holds a
        dot (``path.name``), so ``state/a.weight`` (a ``LayerDict`` key ``"state/a"``) stays a model tensor."""
        if self.description.get("kind") != "checkpoint":
            return dict(self.tensors)
        return {n: a for n, a in self.tensors.items() if not is_run_state(n)}


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
    return ModelFile(path, size, description, tensors)


__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_DEPTH", "MAX_HEADER_BYTES", "MAX_NDIM", "ModelFile", "READ_VERSIONS",
           "STATE_PREFIX", "SUFFIX", "is_count", "is_run_state", "read_tensors", "write_tensors"]
