"""Property-based checks: any array into any layer or loss either gives a result or an nnx error.

Random shapes (empty ones included), dtypes (float16/32/64, integers, bool,
complex) and values (NaN, ±inf) go into every layer's forward and backward
and every loss; a raw Python or NumPy exception is a failure. Runs on numpy
(the CPU backends share the code paths).
"""

from __future__ import annotations

import json
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
    st.lists(st.integers(0, 6), max_size=4),
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
