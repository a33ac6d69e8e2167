"""A corpus of hostile and broken model files, generated from one valid file.

``python tests/hostile_files.py DIR`` writes the corpus into DIR for a look;
the tests build it in a temporary directory. Each case is
``(file name, expected nnx error class name, a phrase the message must contain)``.
A pickle case's payload creates ``MARKER`` next to it when unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

import nnx
from nnx import io as nio
from nnx import tensorfile

MARKER = "PICKLE-PAYLOAD-RAN"


def valid_model() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.Sigmoid(), nnx.Linear(4, 2, seed=1))


def _parts(path: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header, json.loads(header["__metadata__"]["nnx"]), raw[8 + n:]


def _raw(header: dict[str, Any], data: bytes, header_len: int | None = None) -> bytes:
    blob = json.dumps(header).encode()
    return (len(blob) if header_len is None else header_len).to_bytes(8, "little") + blob + data


def _forge(header: dict[str, Any], description: dict[str, Any], data: bytes) -> bytes:
    """A file from edited parts, with a checksum that matches them, as a deliberate forger would write."""
    description = dict(description, sha256=tensorfile._checksum(header, description, [data]))
    header = dict(header, __metadata__={"format": "nnx", "nnx": json.dumps(description)})
    return _raw(header, data)


def _with_header(base: Path, change: Callable[[dict[str, Any]], None]) -> bytes:
    header, description, data = _parts(base)
    change(header)
    return _forge(header, description, data)


def _with_description(base: Path, change: Callable[[dict[str, Any]], None], *, checksum: bool = True) -> bytes:
    header, description, data = _parts(base)
    change(description)
    if checksum:
        return _forge(header, description, data)
    header["__metadata__"]["nnx"] = json.dumps(description)
    return _raw(header, data)


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def build(directory: Path) -> list[tuple[str, str, str]]:
    """Write every hostile file into ``directory``; return the cases."""
    directory.mkdir(parents=True, exist_ok=True)
    base = nio.save(valid_model(), directory / "valid.nnx")
    raw = base.read_bytes()
    header, description, data = _parts(base)
    marker = directory / MARKER
    files: dict[str, bytes] = {}
    cases: list[tuple[str, str, str]] = []

    def add(name: str, content: bytes, error: str, phrase: str) -> None:
        files[name] = content
        cases.append((name, error, phrase))

    # truncated
    add("empty.nnx", b"", "NotAModelFileError", "is empty")
    add("truncated-in-length.nnx", raw[:5], "CorruptModelFileError", "truncated: 5 bytes")
    add("truncated-in-header.nnx", raw[:40], "CorruptModelFileError", "-byte header but only 32 bytes follow")
    add("truncated-in-data.nnx", raw[:-3], "CorruptModelFileError", "the file is truncated")
    # flipped bytes
    flipped = bytearray(raw)
    flipped[-5] ^= 0x01
    add("flipped-data-bit.nnx", bytes(flipped), "CorruptModelFileError", "SHA-256")
    flipped = bytearray(raw)
    flipped[20] ^= 0xFF
    add("flipped-header-byte.nnx", bytes(flipped), "CorruptModelFileError", "not valid JSON")
    add("edited-description.nnx",
        _with_description(base, lambda d: d["model"]["children"][2][1].update(type="Tanh"), checksum=False),
        "CorruptModelFileError", "does not match its SHA-256 checksum")
    # huge sizes: nothing of the declared size may be allocated
    add("huge-header-length.nnx", (2**63).to_bytes(8, "little") + raw[8:], "CorruptModelFileError",
        "-byte header but only")
    huge = {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8 * 2**80]}
    add("huge-tensor.nnx", _with_header(base, lambda h: h.__setitem__("0.weight", huge)),
        "CorruptModelFileError", "but the file holds only")
    add("huge-layer-config.nnx",
        _with_description(base, lambda d: d["model"]["children"][0][1]["config"].update(
            in_features=10**6, out_features=10**6)),
        "CorruptModelFileError", "larger than the whole file")
    # tensors that disagree with the JSON description
    transposed = {name: np.asarray(a) for name, a in nio.read_tensors(base).tensors.items()}
    transposed["0.weight"] = transposed["0.weight"].T
    nio.write_tensors(directory / "shape-mismatch.nnx", transposed, description)
    cases.append(("shape-mismatch.nnx", "TensorMismatchError", "shape (3, 4) in the file but the architecture needs (4, 3)"))
    missing = dict(transposed)
    del missing["0.bias"]
    missing["0.weight"] = missing["0.weight"].T
    nio.write_tensors(directory / "missing-tensor.nnx", missing, description)
    cases.append(("missing-tensor.nnx", "TensorMismatchError", "lacks tensors the architecture needs: '0.bias'"))
    extra = dict(missing, **{"0.bias": transposed["0.bias"], "1.weight": np.zeros((2, 2), np.float32)})
    nio.write_tensors(directory / "extra-tensor.nnx", extra, description)
    cases.append(("extra-tensor.nnx", "TensorMismatchError", "does not have: '1.weight'"))
    as64 = {name: a.astype(np.float64) for name, a in missing.items()}
    as64["0.bias"] = transposed["0.bias"].astype(np.float64)
    nio.write_tensors(directory / "dtype-mismatch.nnx", as64, description)
    cases.append(("dtype-mismatch.nnx", "TensorMismatchError", "is float64 in the file but the architecture makes it float32"))
    add("absurd-empty-tensor.nnx", _with_header(base, lambda h: h.__setitem__(
        "z", {"dtype": "F32", "shape": [0, 2**70], "data_offsets": [0, 0]})),
        "CorruptModelFileError", "longer in one dimension than the file's 104 bytes")
    add("too-many-dimensions.nnx", _with_header(base, lambda h: h["0.bias"].update(shape=[1] * 100_000 + [4])),
        "CorruptModelFileError", "invalid shape")
    add("header-shape-lies.nnx", _with_header(base, lambda h: h["0.bias"].update(shape=[5])),
        "CorruptModelFileError", "needs 20 bytes but its data_offsets span 16")
    add("overlapping-tensors.nnx", _with_header(base, lambda h: h["0.weight"].update(data_offsets=[8, 56])),
        "CorruptModelFileError", "must be contiguous and not overlap")
    # the description
    add("format-version-3.nnx", _with_description(base, lambda d: d.update(format_version=3)),
        "FormatVersionError", "format version 3")
    add("format-version-0.nnx", _with_description(base, lambda d: d.update(format_version=0)),
        "FormatVersionError", "re-save it")
    add("unknown-layer.nnx",
        _with_description(base, lambda d: d["model"]["children"][1][1].update(type="os.system")),
        "UnknownLayerError", "'os.system', which is not an allowed layer type")
    add("bad-layer-config.nnx",
        _with_description(base, lambda d: d["model"]["children"][0][1]["config"].update(activation="exec")),
        "CorruptModelFileError", "invalid config")
    deep: dict[str, Any] = {"type": "Sigmoid", "config": {}}
    for _ in range(nio.MAX_DEPTH + 2):
        deep = {"type": "Sequential", "layers": [deep]}
    add("deep-nesting.nnx", _with_description(base, lambda d: d.update(model=deep)),
        "CorruptModelFileError", "nest deeper")
    deep = {"type": "Sigmoid", "config": {}}
    for _ in range(nio.MAX_DEPTH + 2):
        deep = {"type": "Sequential", "config": {}, "children": [["0", deep]]}
    add("deep-nesting-children.nnx", _with_description(base, lambda d: d.update(model=deep)),
        "CorruptModelFileError", "nest deeper")
    add("children-not-pairs.nnx",
        _with_description(base, lambda d: d["model"].update(children=[c[1] for c in d["model"]["children"]])),
        "CorruptModelFileError", "not a unique [name, layer] pair")
    add("sequential-with-config.nnx", _with_description(base, lambda d: d["model"]["config"].update(extra=1)),
        "CorruptModelFileError", "takes no config")
    bomb = dict(header, __metadata__={"format": "nnx", "nnx": "[" * 100_000 + "]" * 100_000})
    add("json-bomb.nnx", _raw(bomb, data), "CorruptModelFileError", "is not valid JSON")
    duplicated = b'{"0.bias":{},' + json.dumps(header).encode()[1:]
    add("duplicate-keys.nnx", len(duplicated).to_bytes(8, "little") + duplicated + data,
        "CorruptModelFileError", "duplicate key '0.bias'")
    add("no-description.nnx", _raw({k: v for k, v in header.items() if k != "__metadata__"}, data),
        "NotAModelFileError", "without an nnx description")
    # foreign formats
    for protocol in (0, 2, 5):
        add(f"pickle-protocol-{protocol}.nnx", pickle.dumps(_RunsCode(marker), protocol=protocol),
            "NotAModelFileError" if protocol else "CorruptModelFileError",
            "is a Python pickle" if protocol else "-byte header but only")
    npz = directory / "arrays.npz"
    np.savez(npz, w=np.zeros((2, 2)))
    add("npz-renamed.nnx", npz.read_bytes(), "NotAModelFileError", "zip archive")
    npz.unlink()
    add("unknown-kind.nnx", _with_description(base, lambda d: d.update(kind="script")),
        "CorruptModelFileError", "expected 'model' or 'checkpoint'")
    _forged_numbers(directory, add, cases)
    weights = nio.save(valid_model().state_dict(), directory / "weights-only.tmp")
    add("weights-only.nnx", weights.read_bytes(), "NotAModelFileError", "model.load_state_dict(nnx.load_state_dict")
    weights.unlink()
    if hasattr(os, "mkfifo"):
        fifo = directory / "a-pipe.nnx"
        if not fifo.exists():
            os.mkfifo(fifo)
        cases.append(("a-pipe.nnx", "NotAModelFileError", "is not a regular file"))
    (directory / "a-directory.nnx").mkdir(exist_ok=True)
    cases.append(("a-directory.nnx", "NotAModelFileError", "is a directory"))
    cases.append(("does-not-exist.nnx", "NotAModelFileError", "no such file"))
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return cases


def numbers_model() -> nnx.Sequential:
    """A model whose arrays obey rules beyond finiteness: Standardize's std > 0, BatchNorm's running_var >= 0."""
    return nnx.Sequential(nnx.preprocessing.Standardize(3, names=["a", "b", "c"]), nnx.Linear(3, 4, seed=0), nnx.BatchNorm1d(4),
                          nnx.Reshape((1, 2, 2)), nnx.Conv2d(1, 1, 2, padding=1, seed=1), nnx.Flatten())


def _with_tensor(base: Path, directory: Path, name: str, tensor: str, change: Callable[[np.ndarray], None]) -> None:
    """A file whose tensor ``tensor`` was changed and its checksum recomputed, as a deliberate forger would."""
    file = nio.read_tensors(base)
    tensors = {n: np.array(a) for n, a in file.tensors.items()}
    change(tensors[tensor])
    nio.write_tensors(directory / name, tensors, file.description)


def _forged_numbers(directory: Path, add: Callable[[str, bytes, str, str], None],
                    cases: list[tuple[str, str, str]]) -> None:
    """Files sound in every byte whose numbers no constructor or training run would make."""
    base = nio.save(numbers_model(), directory / "valid-numbers.nnx")
    for name, tensor, value, phrase in (
        ("standardize-std-zero.nnx", "0.std", 0.0, "'std' holds values <= 0"),
        ("standardize-std-negative.nnx", "0.std", -1.0, "'std' holds values <= 0"),
        ("standardize-std-nan.nnx", "0.std", np.nan, "'std' holds NaN or infinite values"),
        ("batchnorm-negative-running-var.nnx", "2.running_var", -0.5, "'running_var' holds negative values"),
        ("nan-weight.nnx", "1.weight", np.nan, "'weight' holds NaN or infinite values"),
        ("inf-bias.nnx", "4.bias", np.inf, "'bias' holds NaN or infinite values"),
    ):
        _with_tensor(base, directory, name, tensor, lambda a, v=value: a.reshape(-1).__setitem__(0, v))
        cases.append((name, "CorruptModelFileError", phrase))

    def config(i: int, **values: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["model"]["children"][i][1]["config"].update(values)

    add("standardize-repeated-names.nnx", _with_description(base, config(0, names=["a", "a", "c"])),
        "CorruptModelFileError", "repeated column names")
    add("forged-backend.nnx", _with_description(base, config(1, backend="array_api_strict")),
        "CorruptModelFileError", "config names a backend")
    add("conv-padding-huge.nnx", _with_description(base, config(4, padding=[10**6, 10**6])),
        "CorruptModelFileError", "is out of range")


# Cases caught when the model is built or filled from a sound file, not when the file is read.
VALUE_STAGE = {"standardize-std-zero.nnx", "standardize-std-negative.nnx", "standardize-std-nan.nnx",
               "batchnorm-negative-running-var.nnx", "nan-weight.nnx", "inf-bias.nnx",
               "standardize-repeated-names.nnx", "forged-backend.nnx", "conv-padding-huge.nnx"}


# parity traces (nnx.testing.trace): the container's checks, then the trace's own ---------------


def valid_trace() -> Any:
    from nnx.testing.examples import example
    from nnx.testing.trace import record_trace

    case = example("seed001", "float32")
    return record_trace(case.model, case.loss, case.x, case.y, optimizer=case.optimizer, steps=2, backend="numpy")


def build_traces(directory: Path) -> list[tuple[str, str, str]]:
    """Write every hostile trace file into ``directory`` (beside ``valid.nnxtrace``); return the cases,
    each read with ``nnx.testing.load_trace``."""
    import copy

    from nnx.testing.trace import load_trace

    directory.mkdir(parents=True, exist_ok=True)
    base = directory / "valid.nnxtrace"
    valid_trace().save(base)
    raw = base.read_bytes()
    cases: list[tuple[str, str, str]] = []

    def add(name: str, content: bytes, error: str, phrase: str) -> None:
        (directory / name).write_bytes(content)
        cases.append((name, error, phrase))

    def forged(name: str, change: Callable[[Any], None], error: str, phrase: str) -> None:
        trace = copy.deepcopy(load_trace(base))
        change(trace)
        trace.save(directory / name)
        cases.append((name, error, phrase))

    add("trace-truncated.nnxtrace", raw[:-3], "CorruptModelFileError", "the file is truncated")
    add("trace-truncated-in-header.nnxtrace", raw[:60], "CorruptModelFileError", "-byte header but only")
    flipped = bytearray(raw)
    flipped[20] ^= 0xFF
    add("trace-wrong-header.nnxtrace", bytes(flipped), "CorruptModelFileError", "not valid JSON")
    add("trace-pickle.nnxtrace", pickle.dumps({"x": 1}, protocol=4), "NotAModelFileError", "is a Python pickle")
    nio.save(valid_model(), directory / "trace-is-a-model.nnxtrace")
    cases.append(("trace-is-a-model.nnxtrace", "NotAModelFileError", "is a model file, not a trace file"))
    add("trace-version-2.nnxtrace", _with_description(base, lambda d: d.update(trace_version=2)),
        "FormatVersionError", "trace format version 2 (recorded by nnx")
    add("trace-version-missing.nnxtrace", _with_description(base, lambda d: d.pop("trace_version")),
        "FormatVersionError", "record it again with this nnx")
    add("trace-unknown-layer.nnxtrace",
        _with_description(base, lambda d: d["model"]["children"][1][1].update(type="os.system")),
        "UnknownLayerError", "'os.system', which is not an allowed layer type")
    add("trace-loss-without-config.nnxtrace",
        _with_description(base, lambda d: d["trace"]["loss"].update(config="os.system")),
        "CorruptModelFileError", "needs a type name and a config object")
    add("trace-bad-optimizer.nnxtrace",
        _with_description(base, lambda d: d["trace"]["optimizer"].update(lr=-1.0)),
        "CorruptModelFileError", "learning rate must be > 0")
    forged("trace-nan-gradient.nnxtrace",
           lambda t: t.entry(2, "backward/0/weight.grad").value.__setitem__((0, 0), np.nan),
           "CorruptModelFileError", "tensor backward/0/weight.grad of step 2 holds nan at [0, 0]")
    forged("trace-inf-input.nnxtrace", lambda t: setattr(t, "x", np.where(t.x == 1, np.inf, t.x).astype(t.x.dtype)),
           "CorruptModelFileError", "tensor 'data/x' holds inf")
    add("trace-nan-scale.nnxtrace",
        _with_description(base, lambda d: d["trace"]["entries"][0].__setitem__(5, float("nan"))),
        "CorruptModelFileError", "trace entry 0 is not")
    forged("trace-update-shape.nnxtrace",
           lambda t: setattr(t.entry(1, "update/0/weight"), "value", t.entry(1, "update/0/weight").value.T.copy()),
           "CorruptModelFileError", "but the model's is float32[4, 3]")
    forged("trace-batch-mismatch.nnxtrace", lambda t: setattr(t, "y", t.y[:1]),
           "CorruptModelFileError", "are not one batch of samples each")
    huge = {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4 * 2**80]}
    add("trace-huge-tensor.nnxtrace", _with_header(base, lambda h: h.__setitem__("trace/0", huge)),
        "CorruptModelFileError", "but the file holds only")
    add("trace-huge-steps.nnxtrace", _with_description(base, lambda d: d["trace"].update(steps=10**12)),
        "CorruptModelFileError", "declares 1000000000000 steps but records steps [1, 2]")
    add("trace-missing-tensor.nnxtrace",
        _with_description(base, lambda d: d["trace"]["entries"][0].__setitem__(6, "trace/9999")),
        "CorruptModelFileError", "refers to tensor 'trace/9999', which the file does not hold")
    add("trace-no-entries.nnxtrace", _with_description(base, lambda d: d["trace"].update(entries=[])),
        "CorruptModelFileError", "records no tensors")
    return cases


# checkpoint directories whose lock file is not nnx's to write (nnx.checkpoint.claim_directory) ---------

OUTSIDE = "outside.txt"  # the file beside the checkpoint directories a hostile lock points to; it must not change


def build_locks(directory: Path) -> list[tuple[str, str, str]]:
    """Write checkpoint directories with hostile ``checkpoint.lock`` files into ``directory`` (beside
    ``OUTSIDE``); return the cases, each claimed with ``nnx.checkpoint.claim_directory``."""
    from nnx.checkpoint import LOCK_NAME

    directory.mkdir(parents=True, exist_ok=True)
    outside = directory / OUTSIDE
    outside.write_text("precious\n")
    cases: list[tuple[str, str, str]] = []

    def add(name: str, make: Callable[[Path], None], error: str, phrase: str) -> None:
        (directory / name).mkdir()
        make(directory / name / LOCK_NAME)
        cases.append((name, error, phrase))

    add("lock-symlink-outside", lambda p: p.symlink_to(outside), "OutputPathError", "is a symbolic link")
    add("lock-dangling-symlink", lambda p: p.symlink_to(directory / "missing"), "OutputPathError",
        "is a symbolic link")
    add("lock-symlink-device", lambda p: p.symlink_to("/dev/null"), "OutputPathError", "is a symbolic link")
    add("lock-fifo", lambda p: os.mkfifo(p), "OutputPathError", "is not a regular file")
    add("lock-hardlink-outside", lambda p: os.link(outside, p), "OutputPathError", "a second name of another file")
    add("lock-directory", lambda p: p.mkdir(), "OutputPathError", "cannot write its lock file")
    return cases


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for name, error, phrase in build(out):
        print(f"{name:<28} {error:<22} {phrase}")
