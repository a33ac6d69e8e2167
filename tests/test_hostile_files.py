"""Hostile and broken files: each gets a specific nnx error naming the file and the problem.

None crashes with another exception, none allocates the size it declares, and
none runs code (the pickle cases' payload would create a marker file).
"""

from __future__ import annotations

import json
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from hostile_files import MARKER, VALUE_STAGE, build, numbers_model, valid_model

CORPUS_DIR = "hostile"
# Cases caught when the model is built from the description, not when the file is read.
BUILD_STAGE = {"unknown-layer.nnx", "bad-layer-config.nnx", "huge-layer-config.nnx", "deep-nesting.nnx",
               "deep-nesting-children.nnx", "children-not-pairs.nnx", "sequential-with-config.nnx",
               "weights-only.nnx"} | VALUE_STAGE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str, str]]]:
    directory = tmp_path_factory.mktemp(CORPUS_DIR)
    return directory, build(directory)


def _cases() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [name for name, _, _ in build(Path(d))]


@pytest.mark.parametrize("name", _cases())
def test_each_hostile_file_gets_its_error(corpus: tuple[Path, list[tuple[str, str, str]]], name: str) -> None:
    directory, cases = corpus
    _, error, phrase = next(c for c in cases if c[0] == name)
    path = directory / name
    with pytest.raises(nnx.errors.ModelFileError) as info:
        nnx.load(path)
    exc = info.value
    assert type(exc).__name__ == error, str(exc)
    assert isinstance(exc, getattr(nnx.errors, error))
    assert isinstance(exc, (nnx.errors.NnxError, ValueError))
    assert phrase in str(exc)
    assert exc.path == str(path) and str(exc).startswith(str(path))
    assert not (directory / MARKER).exists()


def test_the_valid_file_of_the_corpus_loads(corpus: tuple[Path, list[tuple[str, str, str]]]) -> None:
    directory, _ = corpus
    loaded = nnx.load(directory / "valid.nnx")
    assert repr(loaded) == repr(valid_model())


def test_pickle_payload_is_live_but_never_runs(tmp_path: Path) -> None:
    build(tmp_path)
    marker = tmp_path / MARKER
    for protocol in (0, 2, 5):
        path = tmp_path / f"pickle-protocol-{protocol}.nnx"
        pickle.loads(path.read_bytes())  # the control: unpickling does run the payload
        assert marker.exists()
        marker.unlink()
        with pytest.raises(nnx.errors.ModelFileError):
            nnx.load(path)
        with pytest.raises(nnx.errors.ModelFileError):
            nnx.load_checkpoint(path)
        assert not marker.exists()


@pytest.mark.parametrize("name", ["huge-header-length.nnx", "huge-tensor.nnx", "huge-layer-config.nnx",
                                  "conv-padding-huge.nnx"])
def test_declared_huge_sizes_are_never_allocated(corpus: tuple[Path, list[tuple[str, str, str]]], name: str) -> None:
    directory, _ = corpus
    nnx.load(directory / "valid.nnx")  # warm imports and caches outside the measurement
    tracemalloc.start()
    try:
        with pytest.raises(nnx.errors.CorruptModelFileError):
            nnx.load(directory / name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"loading {name} allocated {peak} bytes at its peak"


def test_the_valid_numbers_file_loads_and_its_forgeries_never_reach_a_model(
        corpus: tuple[Path, list[tuple[str, str, str]]]) -> None:
    """The forged-number cases differ from a loadable file only in the forged value; a checkpoint
    restore into an existing model refuses them too, and leaves that model untouched."""
    directory, _ = corpus
    assert repr(nnx.load(directory / "valid-numbers.nnx")) == repr(numbers_model())
    model = numbers_model()
    before = {n: nnx.to_host(a).copy() for n, a in model.state_dict().items()}
    for name in ("standardize-std-zero.nnx", "batchnorm-negative-running-var.nnx", "nan-weight.nnx"):
        file = nnx.io.read_tensors(directory / name)
        with pytest.raises(nnx.errors.CorruptModelFileError, match="damaged or forged"):
            nnx.io.fill_model(model, file)
    assert all(np.array_equal(nnx.to_host(a), before[n]) for n, a in model.state_dict().items())


def test_every_truncation_and_every_flipped_byte_is_caught(tmp_path: Path) -> None:
    """Exhaustive over a small file: each prefix and each byte XOR 0xFF raises a ModelFileError.

    XOR 0xFF turns header bytes into invalid UTF-8 and data bytes into a
    checksum mismatch, so no damaged variant may load.
    """
    raw = nnx.save(valid_model(), tmp_path / "valid.nnx").read_bytes()
    path = tmp_path / "damaged.nnx"
    variants = [raw[:n] for n in range(len(raw))]
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        variants.append(bytes(flipped))
    for variant in variants:
        path.write_bytes(variant)
        with pytest.raises(nnx.errors.ModelFileError):
            nnx.load(path)


def test_no_changed_byte_loads_as_a_different_model(tmp_path: Path) -> None:
    """Each byte replaced by a random other value: an error, or (say, a space turned into a
    tab in the header) a model identical to the original; the checksum covers the header too."""
    model = valid_model()
    raw = nnx.save(model, tmp_path / "valid.nnx").read_bytes()
    expected = {n: nnx.to_host(p.data) for n, p in model.named_parameters()}
    path = tmp_path / "damaged.nnx"
    rng = np.random.default_rng(0)
    identical = 0
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] = (changed[i] + int(rng.integers(1, 256))) % 256
        path.write_bytes(bytes(changed))
        try:
            loaded = nnx.load(path)
        except nnx.errors.ModelFileError:
            continue
        identical += 1
        assert repr(loaded) == repr(model), f"byte {i}"
        got = {n: nnx.to_host(p.data) for n, p in loaded.named_parameters()}
        assert got.keys() == expected.keys() and all(np.array_equal(got[n], expected[n]) for n in got)
    assert identical < len(raw) // 20


def test_checkpoint_reader_shares_the_checks(corpus: tuple[Path, list[tuple[str, str, str]]]) -> None:
    """Every case caught while reading (not while building the model) fails a checkpoint load alike."""
    directory, cases = corpus
    for name, error, _ in cases:
        if error != "TensorMismatchError" and name not in BUILD_STAGE:
            with pytest.raises(getattr(nnx.errors, error)):
                nnx.load_checkpoint(directory / name)
    with pytest.raises(nnx.errors.ModelFileError, match="is a model file, not a checkpoint"):
        nnx.load_checkpoint(directory / "valid.nnx")
    with pytest.raises(nnx.errors.ModelFileError, match="is a weights file, not a model or checkpoint file"):
        nnx.load_checkpoint(directory / "weights-only.nnx")


def test_a_valid_header_length_that_looks_like_a_pickle_still_loads(tmp_path: Path) -> None:
    """A header of 0x580 bytes starts the file with 80 05, a protocol-5 pickle's first two bytes."""
    model = valid_model()
    base = int.from_bytes(nnx.save_checkpoint(tmp_path / "ck.nnx", model, extra="").read_bytes()[:8], "little")
    assert base < 0x580
    found = False
    for n in range(0x580 - base - 16, 0x580 - base + 16):
        path = nnx.save_checkpoint(tmp_path / "ck.nnx", model, extra="x" * n)
        if path.read_bytes()[:2] == b"\x80\x05":
            found = True
            assert repr(nnx.load(path)) == repr(model)
            assert nnx.load_checkpoint(path).extra == "x" * n
    assert found


def _tampered_checkpoint(tmp_path: Path, change: Any) -> Path:
    """A valid checkpoint of an Adam run whose description ``change`` edits (data left valid)."""
    model = valid_model()
    opt = nnx.Adam(model.parameters(), lr=0.01)
    schedule = nnx.schedules.StepLR(opt, step_size=2)
    x = nnx.to_device(np.ones((4, 3)), dtype="float32")
    nnx.train_step(model, nnx.MSE(), opt, x, nnx.to_device(np.zeros((4, 2)), dtype="float32"))
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", model, opt, schedule=schedule, step=1, history=[0.5])
    file = nnx.io.read_tensors(path)
    description = json.loads(json.dumps(file.description))
    tensors = {k: np.asarray(v) for k, v in file.tensors.items()}
    change(description["checkpoint"], tensors)
    return nnx.io.write_tensors(tmp_path / "tampered.nnx", tensors, description)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


_CHECKPOINT_CASES = {
    "optimizer state for a parameter it lacks": (
        lambda c, t: c["optimizer"]["state"]["state"].__setitem__("99", c["optimizer"]["state"]["state"].pop("0")),
        nnx.errors.ModelFileError, "the saved optimizer state does not fit"),
    "optimizer slot of the wrong shape": (
        lambda c, t: t.__setitem__("state/0", np.zeros((7,), np.float32)),
        nnx.errors.ModelFileError, "the saved optimizer state does not fit"),
    "random state of another generator": (
        lambda c, t: c["rng"]["state"].__setitem__("bit_generator", "MT19937"),
        nnx.errors.ModelFileError, "random state does not fit"),
    "random state that is not a dict": (
        lambda c, t: c["rng"].__setitem__("state", [1, 2, 3]),
        nnx.errors.ModelFileError, "random state does not fit"),
    "negative step": (lambda c, t: c.__setitem__("step", -4), nnx.errors.CorruptModelFileError, "not a count"),
    "dangling tensor reference": (
        lambda c, t: c.__setitem__("extra", {"__tensor__": "state/404"}),
        nnx.errors.CorruptModelFileError, "missing or reused tensor 'state/404'"),
    "reused tensor reference": (
        lambda c, t: c.__setitem__("extra", {"__tensor__": "state/0"}),
        nnx.errors.CorruptModelFileError, "missing or reused tensor 'state/0'"),
    "unreferenced state tensor": (
        lambda c, t: t.__setitem__("state/77", np.zeros(3)),
        nnx.errors.TensorMismatchError, "nothing refers to: 'state/77'"),
    "deeply nested state": (
        lambda c, t: c.__setitem__("extra", _nested(900)),
        nnx.errors.CorruptModelFileError, "nests too deeply"),
    "negative learning rate": (
        lambda c, t: c["optimizer"]["state"]["groups"][0].__setitem__("lr", -0.01),
        nnx.errors.ModelFileError, "learning rate must be > 0"),
    "NaN beta": (
        lambda c, t: c["optimizer"]["state"]["groups"][0].__setitem__("betas", [float("nan"), 0.999]),
        nnx.errors.ModelFileError, "the saved settings are invalid"),
    "step counts that are not counts": (
        lambda c, t: c["optimizer"]["state"].__setitem__("steps", [1.5] * 4),
        nnx.errors.ModelFileError, "step counts must be non-negative ints"),
    "schedule state of another shape": (
        lambda c, t: c["schedule"].__setitem__("state", {"position": "x"}),
        nnx.errors.ModelFileError, "learning-rate schedule"),
    "optimizer state without a type name": (
        lambda c, t: c["optimizer"].__setitem__("type", 5),
        nnx.errors.CorruptModelFileError, "the optimizer state is malformed"),
}


@pytest.mark.parametrize("case", list(_CHECKPOINT_CASES))
def test_tampered_checkpoint_state_gets_a_file_error(tmp_path: Path, case: str) -> None:
    change, error, phrase = _CHECKPOINT_CASES[case]
    path = _tampered_checkpoint(tmp_path, change)
    model = valid_model()
    opt = nnx.Adam(model.parameters(), lr=0.01)
    schedule = nnx.schedules.StepLR(opt, step_size=2)
    with pytest.raises(error) as info:
        nnx.load_checkpoint(path).restore(model, opt, schedule)
    assert phrase in str(info.value) and str(path) in str(info.value)


# parity traces ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trace_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str, str]]]:
    from hostile_files import build_traces

    directory = tmp_path_factory.mktemp("hostile-traces")
    return directory, build_traces(directory)


def _trace_cases() -> list[str]:
    import tempfile

    from hostile_files import build_traces

    with tempfile.TemporaryDirectory() as d:
        return [name for name, _, _ in build_traces(Path(d))]


@pytest.mark.parametrize("name", _trace_cases())
def test_each_hostile_trace_gets_its_error(trace_corpus: tuple[Path, list[tuple[str, str, str]]], name: str) -> None:
    from nnx.testing import load_trace

    directory, cases = trace_corpus
    _, error, phrase = next(c for c in cases if c[0] == name)
    path = directory / name
    with pytest.raises(nnx.errors.ModelFileError) as info:
        load_trace(path)
    assert type(info.value).__name__ == error, str(info.value)
    assert phrase in str(info.value), str(info.value)
    assert info.value.path == str(path)


def test_the_valid_trace_of_the_corpus_replays(trace_corpus: tuple[Path, list[tuple[str, str, str]]]) -> None:
    from nnx.testing import check_trace

    directory, _ = trace_corpus
    assert check_trace(directory / "valid.nnxtrace", backends=["numpy"]).ok


@pytest.mark.parametrize("name", ["trace-huge-tensor.nnxtrace", "trace-huge-steps.nnxtrace"])
def test_a_trace_declaring_huge_sizes_allocates_nothing_of_them(
        trace_corpus: tuple[Path, list[tuple[str, str, str]]], name: str) -> None:
    from nnx.testing import load_trace

    directory, _ = trace_corpus
    load_trace(directory / "valid.nnxtrace")
    tracemalloc.start()
    try:
        with pytest.raises(nnx.errors.CorruptModelFileError):
            load_trace(directory / name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_each_hostile_checkpoint_lock_gets_its_error_and_changes_nothing(tmp_path: Path) -> None:
    from hostile_files import OUTSIDE, build_locks

    for name, error, phrase in build_locks(tmp_path):
        with pytest.raises(nnx.errors.NnxError) as info:
            with nnx.checkpoint.claim_directory(tmp_path / name):
                pass
        assert type(info.value).__name__ == error and phrase in str(info.value), (name, str(info.value))
        assert (tmp_path / OUTSIDE).read_text() == "precious\n"
    assert nnx.checkpoint._HELD == {}  # a refused claim leaves no directory held


def test_a_weights_file_keeps_a_tensor_named_like_run_state(tmp_path: Path) -> None:
    holder = nnx.LayerDict({"state/a": nnx.Linear(2, 2, seed=0)})
    state = dict(holder.state_dict(), **{"state/0": np.arange(3.0)})
    loaded = nnx.load_state_dict(nnx.save(state, tmp_path / "w.nnx"))
    assert sorted(loaded) == sorted(state)
    assert all(np.array_equal(loaded[n], nnx.to_host(state[n])) for n in state)
    model = nnx.Sequential(nnx.LayerDict({"state/a": nnx.Linear(2, 2, seed=1)}))
    model.layers[0].items["state/a"].weight.data[...] = 7.0
    again = nnx.load(nnx.save(model, tmp_path / "m.nnx"))
    assert float(nnx.to_host(again.layers[0].items["state/a"].weight.data).min()) == 7.0
