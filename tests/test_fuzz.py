"""Property-based checks: any array into any layer or loss either gives a result or an nnx error.

Random shapes (empty ones included), dtypes (float16/32/64, integers, bool,
complex) and values (NaN, ±inf) go into every layer's forward and backward
and every loss; a raw Python or NumPy exception is a failure. Runs on numpy
(the CPU backends share the code paths). The last section holds one property
per class of hostile files and paths: outputs that would destroy inputs,
forged numbers in model files, a resumed run's data split, damaged data
files and file names near the length limit.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from typing import Any, Callable

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nnx

LAYERS: list[Callable[[], nnx.Layer]] = [
    lambda: nnx.Linear(3, 2, seed=0), nnx.ReLU, nnx.Sigmoid, nnx.Tanh, nnx.GELU, nnx.Softmax, nnx.Flatten,
    lambda: nnx.LeakyReLU(0.1), lambda: nnx.Dropout(0.3, seed=0), lambda: nnx.LayerNorm(3),
    lambda: nnx.BatchNorm1d(3), lambda: nnx.Conv1d(3, 2, 2, seed=0), lambda: nnx.Conv2d(3, 2, 2, seed=0),
    lambda: nnx.MaxPool2d(2), lambda: nnx.AvgPool2d(2), nnx.GlobalAvgPool2d, lambda: nnx.BatchNorm2d(3),
    lambda: nnx.Embedding(5, 2, seed=0), lambda: nnx.Mean(1), lambda: nnx.Residual(nnx.Linear(3, 3, seed=0)),
    lambda: nnx.Sequential(nnx.Linear(3, 3, seed=0), nnx.ReLU()),
]
LOSSES: list[Callable[[], Any]] = [
    nnx.MSE, lambda: nnx.MSE("sum"), nnx.SumSquaredError, nnx.BinaryCrossEntropyWithLogits,
    nnx.SoftmaxCrossEntropy, lambda: nnx.SoftmaxCrossEntropy(label_smoothing=0.1),
]
DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.complex64])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _array(data: st.DataObject, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    return data.draw(hnp.arrays(dtype, shape))


def _nnx_error_or_result(fn: Callable[[], Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in float16 and the like: a value, not an error
        try:
            fn()
        except nnx.errors.NnxError:
            pass


@pytest.fixture(autouse=True)
def _on_numpy() -> Any:
    with nnx.use("numpy"):
        yield


@FUZZ
@given(index=st.integers(0, len(LAYERS) - 1), dtype=DTYPES, shape=SHAPES, data=st.data(), backward=st.booleans())
def test_any_array_into_any_layer(index: int, dtype: Any, shape: tuple[int, ...], data: st.DataObject,
                                  backward: bool) -> None:
    layer = LAYERS[index]()
    x = _array(data, dtype, shape)

    def run() -> None:
        y = layer.forward(nnx.to_device(x))
        if backward:
            layer.backward(nnx.to_device(np.ones(tuple(y.shape)), dtype=nnx.backend.dtype_name(y)))

    _nnx_error_or_result(run)


@FUZZ
@given(index=st.integers(0, len(LOSSES) - 1), pred_dtype=DTYPES, target_dtype=DTYPES, shape=SHAPES,
       other=SHAPES, same=st.booleans(), data=st.data())
def test_any_arrays_into_any_loss(index: int, pred_dtype: Any, target_dtype: Any, shape: tuple[int, ...],
                                  other: tuple[int, ...], same: bool, data: st.DataObject) -> None:
    loss = LOSSES[index]()
    pred = _array(data, pred_dtype, shape)
    target = _array(data, target_dtype, shape if same else other)

    def run() -> None:
        loss.forward(nnx.to_device(pred), nnx.to_device(target))
        loss.backward()

    _nnx_error_or_result(run)


def test_empty_inputs_give_empty_predictions_or_clear_errors() -> None:
    model = nnx.Sequential(nnx.Linear(3, 2, seed=0))
    assert tuple(nnx.predict(model, np.zeros((0, 3))).shape) == (0, 2)
    with pytest.raises(nnx.errors.ShapeError, match="empty"):
        nnx.evaluate(model, nnx.MSE(), (np.zeros((0, 3)), np.zeros((0, 2))))
    with pytest.raises(nnx.errors.ShapeError, match="non-empty prediction"):
        nnx.MSE().forward(nnx.to_device(np.zeros((0, 2))), nnx.to_device(np.zeros((0, 2))))
    with pytest.raises(nnx.errors.ShapeError, match="non-empty prediction"):
        nnx.SoftmaxCrossEntropy().forward(nnx.to_device(np.zeros((0, 3))), nnx.to_device(np.zeros(0, np.int64)))
    half = nnx.to_device(np.array([[-20.0, 0.0, 20.0]]), dtype="float16")
    assert np.isfinite(nnx.to_host(nnx.Sigmoid().forward(half))).all()  # float16 sigmoid clamps too


# data readers: random bytes and CSV-like text ------------------------------------------

_CSV_PIECES = st.sampled_from(["0", "1", "2", "7.5", "-3", "1e5", "1e400", "nan", "inf", "-inf", "abc", "x1", " ",
                               "", ",", ",", ",", "\n", "\n", "\r\n", '"', '"a,b"', "\ufeff", "\x00", "é", "1_0"])
CSV_TEXT = st.lists(_CSV_PIECES, max_size=60).map("".join)


def _read_csv_or_nnx_error(tmp_path_factory: Any, raw: bytes, **kwargs: Any) -> None:
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(raw)
    try:
        ds = nnx.datasets.load_csv(path, **kwargs)
    except nnx.errors.NnxError:
        return
    assert ds.x.ndim == 2 and ds.x.shape[0] == ds.y.shape[0] >= 1 and ds.x.shape[1] >= 1
    assert np.all(np.isfinite(ds.x))
    assert ds.y.dtype == np.int64 and 0 <= ds.y.min() and ds.y.max() < ds.classes == len(ds.labels)


@FUZZ
@given(text=CSV_TEXT, header=st.sampled_from([None, True, False]), label=st.sampled_from([-1, 0, 1, 5, "x"]))
def test_any_csv_like_text_reads_or_raises_an_nnx_error(tmp_path_factory: Any, text: str, header: Any,
                                                        label: Any) -> None:
    _read_csv_or_nnx_error(tmp_path_factory, text.encode("utf-8", "surrogatepass"), header=header,
                           label_column=label)


_CELLS = st.sampled_from(["0", "1", "2", "2.5", "-3", " 4 ", "1e5", "1e400", "nan", "-inf", "abc", "", '"7"', "1_0"])
CSV_TABLES = st.integers(1, 4).flatmap(
    lambda width: st.lists(st.lists(_CELLS, min_size=width, max_size=width), min_size=1, max_size=6)
).map(lambda rows: "\n".join(",".join(row) for row in rows) + "\n")


@FUZZ
@given(text=CSV_TABLES, header=st.sampled_from([None, True, False]), label=st.sampled_from([-1, 0, 2]))
def test_any_table_of_cells_reads_or_raises_an_nnx_error(tmp_path_factory: Any, text: str, header: Any,
                                                         label: Any) -> None:
    _read_csv_or_nnx_error(tmp_path_factory, text.encode(), header=header, label_column=label)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_csv_read_or_raise_an_nnx_error(tmp_path_factory: Any, raw: bytes) -> None:
    _read_csv_or_nnx_error(tmp_path_factory, raw)


_IDX_HEADERS = st.builds(
    lambda code, dims: bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims),
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07, 0xFF]),
    st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**32 - 1])), max_size=4),
)


@FUZZ
@given(head=st.one_of(_IDX_HEADERS, st.binary(max_size=12)), body=st.binary(max_size=300))
def test_any_bytes_as_idx_read_or_raise_an_nnx_error(tmp_path_factory: Any, head: bytes, body: bytes) -> None:
    path = tmp_path_factory.mktemp("idx") / "f-idx"
    raw = head + body
    path.write_bytes(raw)
    try:
        array = nnx.datasets.read_idx(path)
    except nnx.errors.NnxError:
        return
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3]))
    assert array.shape == dims and array.nbytes == len(raw) - 4 - 4 * len(dims)
    assert array.dtype.kind != "f" or np.all(np.isfinite(array))


# hostile files and paths: one property per class -----------------------------------------

FEW = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FEW
@given(steps=st.lists(st.sampled_from(["dot", "up", "symlink", "hardlink"]), min_size=0, max_size=4))
def test_no_spelling_of_an_input_may_be_written(tmp_path_factory: Any, steps: list[str]) -> None:
    """However an input is named (``./``, ``sub/..``, links to links, hard links), it is no output."""
    root = tmp_path_factory.mktemp("out")
    (root / "sub").mkdir()
    data = root / "d.csv"
    data.write_text("1,2,0\n")
    name = data
    for i, step in enumerate(steps):
        if step == "dot":
            name = name.parent / "." / name.name
        elif step == "up":
            name = name.parent / "sub" / ".." / name.name
        else:
            link = root / f"alias{i}.csv"
            link.symlink_to(name) if step == "symlink" else os.link(name, link)
            name = link
    with pytest.raises(nnx.errors.OutputPathError, match="is also an input"):
        nnx.io.check_output(name, inputs=[data])
    with pytest.raises(nnx.errors.OutputPathError, match="is also an input"):
        nnx.io.check_output(data, inputs=[name])
    assert nnx.io.check_output(root / "sub" / "new.csv", inputs=[name]) == root / "sub" / "new.csv"
    assert data.read_text() == "1,2,0\n"


_FORGERIES = st.sampled_from([
    ("0.std", [0.0, -1.0, -1e-30, float("nan"), float("inf")]),
    ("0.mean", [float("nan"), float("-inf")]),
    ("1.weight", [float("nan"), float("inf"), float("-inf")]),
    ("2.running_var", [-1e-6, -5.0, float("nan")]),
    ("2.running_mean", [float("inf")]),
    ("4.weight", [float("nan")]),
])


@FEW
@given(forgery=_FORGERIES, data=st.data())
def test_no_forged_number_loads(tmp_path_factory: Any, forgery: Any, data: st.DataObject) -> None:
    """Any one value of a sound file set to what no constructor or training makes: refused on load."""
    from hostile_files import numbers_model

    tensor, values = forgery
    path = nnx.save(numbers_model(), tmp_path_factory.mktemp("forged") / "m.nnx")
    file = nnx.io.read_tensors(path)
    tensors = {n: np.array(a) for n, a in file.tensors.items()}
    flat = tensors[tensor].reshape(-1)
    flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from(values))
    nnx.io.write_tensors(path, tensors, file.description)
    with pytest.raises(nnx.errors.CorruptModelFileError, match="damaged or forged"):
        nnx.load(path)


@FEW
@given(val=st.sampled_from([0.2, 0.25, 0.5]), limit=st.sampled_from([None, 40, 60]),
       split_seed=st.integers(0, 3), changed=st.sampled_from(["val", "limit", "split_seed", "data"]))
def test_a_resumed_run_never_changes_its_data_split(tmp_path_factory: Any, val: float, limit: Any,
                                                     split_seed: int, changed: str) -> None:
    """fit refuses a changed run_config on resume even with allow_changes: held out stays held out."""
    directory = tmp_path_factory.mktemp("ck")
    x = np.arange(16.0).reshape(8, 2)
    y = x.sum(axis=1, keepdims=True)
    config = {"data": "t", "split_seed": split_seed, "val": val, "limit": limit}

    def run(run_config: Any, epochs: int) -> None:
        model = nnx.Linear(2, 1, seed=0, dtype="float64")
        nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.01), (x, y), epochs=epochs, progress=False,
                checkpoint=directory, resume=True, allow_changes=True, run_config=run_config)

    run(config, 1)
    other = {"val": 0.3, "limit": 50, "split_seed": split_seed + 1, "data": "u"}[changed]
    with pytest.raises(nnx.errors.ConfigError, match="allow_changes never changes"):
        run({**config, changed: other}, 2)
    assert nnx.load_checkpoint(directory / "checkpoint.nnx").epoch == 1
    run(config, 2)  # the same split resumes


@FEW
@given(length=st.sampled_from([10, 131_071, 131_072, 131_073, 200_000]), row=st.integers(0, 3),
       col=st.integers(0, 2))
def test_any_cell_length_reads_or_gives_a_data_error(tmp_path_factory: Any, length: int, row: int,
                                                     col: int) -> None:
    rows = [["1", "2", "0"], ["3", "4", "1"], ["5", "6", "0"], ["7", "8", "1"]]
    rows[row][col] = "0" * (length - 1) + "1"  # the number 1, however long its cell
    raw = "".join(",".join(r) + "\n" for r in rows).encode()
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(raw)
    try:
        ds = nnx.datasets.load_csv(path)
    except nnx.errors.DataFormatError as exc:
        assert length > csv.field_size_limit() and "cannot be read as CSV" in str(exc), str(exc)[:300]
        return
    assert length <= csv.field_size_limit() and np.all(np.isfinite(ds.x)) and len(ds) == 4


@FEW
@given(label=st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**53, 2**53 + 2, -(2**53) - 2, 10**300])),
       names=st.lists(st.sampled_from(["a", "b", "c"]), min_size=3, max_size=3))
def test_labels_and_headers_read_exactly_or_give_a_data_error(tmp_path_factory: Any, label: int,
                                                              names: list[str]) -> None:
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_text(f"{names[0]},{names[1]},{names[2]}\n1,2,0\n3,4,{label}.0\n5,6,0\n")
    try:
        ds = nnx.datasets.load_csv(path)
    except nnx.errors.DataFormatError as exc:
        assert abs(label) > 2**53 or len(set(names)) < 3, str(exc)
        return
    assert abs(label) <= 2**53 and len(set(names)) == 3
    assert sorted(ds.labels) == sorted({0, label}) and ds.columns == names


@FEW
@given(code=st.sampled_from([0x0D, 0x0E]), shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       data=st.data())
def test_a_non_finite_idx_value_is_refused_at_its_position(tmp_path_factory: Any, code: int,
                                                           shape: tuple[int, ...], data: st.DataObject) -> None:
    values = np.ones(shape, ">f4" if code == 0x0D else ">f8")
    at = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    values[at] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    path = tmp_path_factory.mktemp("idx") / "images"
    path.write_bytes(bytes([0, 0, code, 3]) + b"".join(n.to_bytes(4, "big") for n in shape) + values.tobytes())
    with pytest.raises(nnx.errors.DataFormatError, match=f"at index {re.escape(str(at))} is"):
        nnx.datasets.read_idx(path)


@FEW
@given(length=st.integers(1, 60), wide=st.booleans())
def test_any_file_name_the_system_takes_saves_without_leftovers(tmp_path_factory: Any, length: int,
                                                                wide: bool) -> None:
    """Names up to 240 bytes (ASCII or two-byte characters): the temporary name beside them fits too."""
    stem = ("é" if wide else "m") * (length * 2 if wide else length * 4)
    name = stem.encode()[:236].decode("utf-8", "ignore") + ".nnx"
    directory = tmp_path_factory.mktemp("names")
    path = nnx.save(nnx.Linear(2, 1, seed=0), directory / name)
    assert repr(nnx.load(path)) == "Linear(2, 1)" and os.listdir(directory) == [name]




# integer arguments and 0-d arrays ------------------------------------------------------

# (constructor, valid keyword arguments, the integer parameters to vary): every layer taking an integer
INT_PARAMETERS: list[tuple[Callable[..., Any], dict[str, Any], list[str]]] = [
    (nnx.Linear, {"in_features": 3, "out_features": 2}, ["in_features", "out_features"]),
    (nnx.Conv1d, {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1,
                  "groups": 1}, ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                                 "groups"]),
    (nnx.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1,
                  "groups": 1}, ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                                 "groups"]),
    (nnx.MaxPool2d, {"kernel_size": 2, "stride": 2, "padding": 1}, ["kernel_size", "stride", "padding"]),
    (nnx.AvgPool2d, {"kernel_size": 2, "stride": 2, "padding": 1}, ["kernel_size", "stride", "padding"]),
    (nnx.Embedding, {"num_embeddings": 5, "embedding_dim": 2, "padding_idx": 1},
     ["num_embeddings", "embedding_dim", "padding_idx"]),
    (nnx.LayerNorm, {"num_features": 3}, ["num_features"]),
    (nnx.BatchNorm1d, {"num_features": 3}, ["num_features"]),
    (nnx.BatchNorm2d, {"num_features": 3}, ["num_features"]),
    (nnx.preprocessing.Standardize, {"num_features": 3}, ["num_features"]),
    (nnx.Mean, {"axis": 1}, ["axis"]),
    (nnx.Softmax, {"axis": -1}, ["axis"]),
]
_CASES = [(i, name) for i, (_, _, names) in enumerate(INT_PARAMETERS) for name in names]
NOT_INTEGERS = st.one_of(st.booleans(), st.floats(allow_nan=True), st.none(), st.text(max_size=3),
                         st.sampled_from([np.True_, np.float32(2.0), np.float64(1.0), np.array(2.0), [], {}]))
INTEGER_TYPES = st.sampled_from([int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.array])
ARGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@ARGS
@given(case=st.sampled_from(_CASES), value=NOT_INTEGERS)
def test_any_non_integer_for_any_integer_parameter_is_refused_with_its_name(case: tuple[int, str],
                                                                            value: Any) -> None:
    make, kwargs, _ = INT_PARAMETERS[case[0]]
    assume(not (value is None and case[1] in ("stride", "padding_idx") and make is not nnx.Conv1d
                and make is not nnx.Conv2d))  # None: the documented default (the kernel; no padding row)
    with pytest.raises(nnx.errors.ArgumentError, match=case[1]):
        make(**{**kwargs, case[1]: value})


@ARGS
@given(case=st.sampled_from(_CASES), kind=INTEGER_TYPES)
def test_any_integer_type_is_an_integer(case: tuple[int, str], kind: Any) -> None:
    make, kwargs, _ = INT_PARAMETERS[case[0]]
    value = kwargs[case[1]]
    if value < 0 and kind in (np.uint8, np.uint64):
        value = 1  # Softmax's axis: any other valid value
    plain, typed = make(**{**kwargs, case[1]: value}), make(**{**kwargs, case[1]: kind(value)})
    assert json.dumps(typed.config()) == json.dumps(plain.config())  # plain ints: still JSON


@ARGS
@given(value=st.one_of(st.floats(allow_nan=False, width=32), st.integers(-2**31, 2**31 - 1), st.booleans()),
       zero_d=st.booleans(), backend=st.sampled_from(["numpy", "array_api_strict"]))
def test_any_0d_array_or_scalar_keeps_shape_on_every_move(value: Any, zero_d: bool, backend: str) -> None:
    x = np.array(value) if zero_d else value
    y = nnx.to_device(x, backend)
    assert tuple(y.shape) == ()
    back = nnx.to_host(y)
    assert back.shape == () and back.item() == np.array(value).item()
    assert nnx.to_host(nnx.to_device(x, backend, dtype="float64")).shape == ()


@ARGS
@given(layer=st.sampled_from(["conv1d", "conv2d", "maxpool", "avgpool", "strided"]), channels=st.integers(1, 3),
       side=st.integers(3, 7))
def test_a_0_row_batch_gives_an_empty_result_of_the_right_shape(layer: str, channels: int, side: int) -> None:
    make = {"conv1d": lambda: nnx.Conv1d(channels, 2, 3, padding=1, seed=0),
            "conv2d": lambda: nnx.Conv2d(channels, 2, 3, seed=0),
            "strided": lambda: nnx.Conv2d(channels, 2, 2, stride=2, seed=0),
            "maxpool": lambda: nnx.MaxPool2d(2), "avgpool": lambda: nnx.AvgPool2d(3, stride=1, padding=1)}
    m = make[layer]()
    shape = (0, channels, side) if layer == "conv1d" else (0, channels, side, side)
    y = m.forward(nnx.to_device(np.zeros(shape), dtype="float32"))
    assert tuple(y.shape) == m.output_shape(shape)
    dx = m.backward(nnx.to_device(np.zeros(tuple(y.shape)), dtype="float32"))
    assert tuple(dx.shape) == shape
    assert all(float(nnx.to_host(p.grad).sum()) == 0.0 for p in m.parameters())
