"""Bad input gives a specific nnx error that says what was expected and what came."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnx
from nnx.testing import examples


def _x(nnx_backend: str, shape: tuple[int, ...], dtype: str = "float32") -> object:
    return nnx.to_device(np.ones(shape), nnx_backend, dtype=dtype)


def test_wrong_input_width(nnx_backend: str) -> None:
    layer = nnx.Linear(3, 2, seed=0)
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 3\).*\(4, 5\)"):
        layer.forward(_x(nnx_backend, (4, 5)))


def test_wrong_rank(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.ShapeError, match="2-D"):
        nnx.Linear(3, 2, seed=0).forward(_x(nnx_backend, (3,)))


def test_wrong_gradient_shape(nnx_backend: str) -> None:
    layer = nnx.Linear(3, 2, seed=0)
    layer.forward(_x(nnx_backend, (4, 3)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(4, 2\)"):
        layer.backward(_x(nnx_backend, (4, 3)))
    act = nnx.Tanh()
    act.forward(_x(nnx_backend, (4, 3)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(4, 3\)"):
        act.backward(_x(nnx_backend, (3, 4)))


def test_loss_never_broadcasts(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.ShapeError, match="broadcast"):
        nnx.MSE().forward(_x(nnx_backend, (4, 1)), _x(nnx_backend, (4,)))


def test_dtype_mix_is_an_error(nnx_backend: str) -> None:
    layer = nnx.Linear(3, 2, seed=0)  # float32
    with pytest.raises(nnx.errors.DTypeError, match="float32.*float64"):
        layer.forward(_x(nnx_backend, (4, 3), "float64"))
    with pytest.raises(nnx.errors.DTypeError, match="float32"):
        nnx.MSE().forward(_x(nnx_backend, (2, 1)), _x(nnx_backend, (2, 1), "float64"))


def test_integer_input_is_an_error(nnx_backend: str) -> None:
    ints = nnx.to_device(np.ones((2, 3), dtype=np.int64), nnx_backend)
    with pytest.raises(nnx.errors.DTypeError, match="floating-point.*int64"):
        nnx.Sigmoid().forward(ints)
    with pytest.raises(nnx.errors.DTypeError, match="int64"):
        nnx.Linear(3, 1, seed=0).forward(ints)


def test_non_array_input_is_an_error() -> None:
    with pytest.raises(nnx.errors.DTypeError, match="list"):
        nnx.ReLU().forward([[1.0, 2.0]])


def test_mixed_backends_name_both() -> None:
    layer = nnx.Linear(3, 2, seed=0, backend="array_api_strict")
    with pytest.raises(nnx.errors.BackendMismatchError, match="array_api_strict.*numpy"):
        layer.forward(_x("numpy", (4, 3)))
    with pytest.raises(nnx.errors.BackendMismatchError, match="numpy.*array_api_strict"):
        nnx.MSE().forward(_x("numpy", (2, 1)), _x("array_api_strict", (2, 1)))


def test_backward_needs_a_forward(nnx_backend: str) -> None:
    for layer in (nnx.Linear(3, 2, seed=0), nnx.Sigmoid(), nnx.Tanh(), nnx.ReLU()):
        x = _x(nnx_backend, (4, 3))
        with pytest.raises(nnx.errors.StateError, match="without a forward"):
            layer.backward(x)
        y = layer.forward(x)
        layer.backward(nnx.to_device(np.ones(tuple(y.shape)), nnx_backend, dtype="float32"))
        with pytest.raises(nnx.errors.StateError, match="twice"):
            layer.backward(nnx.to_device(np.ones(tuple(y.shape)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.StateError):
        nnx.MSE().backward()


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="in_features"):
        nnx.Linear(0, 2)
    with pytest.raises(ValueError, match="float16"):
        nnx.Linear(2, 2, dtype="float16")
    with pytest.raises(ValueError, match="reduction"):
        nnx.MSE(reduction="median")
    with pytest.raises(ValueError, match="empty"):
        nnx.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        nnx.SGD(nnx.Linear(2, 2).parameters(), lr=0.0)
    with pytest.raises(TypeError, match="Sequential item 1"):
        nnx.Sequential(nnx.ReLU(), "relu")


@pytest.mark.parametrize("make, phrase", [
    (lambda opt: nnx.schedules.CosineWithWarmup(opt, 1, 10, min_lr=-0.1), "min_lr must be in"),
    (lambda opt: nnx.schedules.CosineWithWarmup(opt, 1, 10, min_lr=float("nan")), "min_lr must be in"),
    (lambda opt: nnx.schedules.CosineWithWarmup(opt, 1, 10, min_lr=0.5), "min_lr must be in"),
    (lambda opt: nnx.schedules.StepLR(opt, 2, gamma=float("nan")), "gamma must be a finite number > 0"),
    (lambda opt: nnx.schedules.ExponentialLR(opt, gamma=float("inf")), "gamma must be a finite number > 0"),
    (lambda opt: nnx.LeakyReLU(float("nan")), "negative_slope must be a finite number"),
    (lambda opt: nnx.LeakyReLU(float("-inf")), "negative_slope must be a finite number"),
])
def test_hyper_parameters_are_checked(make: Any, phrase: str) -> None:
    opt = nnx.SGD(nnx.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=phrase):
        make(opt)


@pytest.mark.parametrize("tolerances", [{"rtol": -1e-6}, {"atol": float("nan")}, {"rtol": float("inf")},
                                        {"atol": -0.0 - 1.0}, {"rtol": "1e-6"}])
def test_comparison_tolerances_are_checked(tolerances: dict[str, Any]) -> None:
    a = np.ones(3)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        nnx.testing.assert_close(a, a, **tolerances)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        nnx.testing.compare(a, a, **tolerances)


def test_errors_are_catchable_as_builtins() -> None:
    assert issubclass(nnx.errors.ShapeError, ValueError)
    assert issubclass(nnx.errors.DTypeError, TypeError)
    assert issubclass(nnx.errors.BackendMismatchError, TypeError)
    for cls in (nnx.errors.ShapeError, nnx.errors.DTypeError, nnx.errors.BackendMismatchError, nnx.errors.StateError):
        assert issubclass(cls, nnx.errors.NnxError)


def _fit_one(**kwargs: Any) -> Any:
    model = nnx.Linear(2, 2, seed=0)
    kwargs = {"epochs": 1, **kwargs}
    return nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), ([[1.0, 2.0]], [[1.0, 2.0]]),
                   progress=False, **kwargs)


@pytest.mark.parametrize("make, name", [
    (lambda: nnx.Conv2d(1, 2, 3.0), "kernel_size"),
    (lambda: nnx.Conv2d(1, 2, kernel_size=None), "kernel_size"),
    (lambda: nnx.Conv2d(1, 2, 3, stride=True), "stride"),
    (lambda: nnx.Conv2d(1, 2, 3, padding=1.5), "padding"),
    (lambda: nnx.Conv2d(1, 2, 3, padding="full"), "padding"),
    (lambda: nnx.Conv1d(1, 2, (3, 3)), "kernel_size"),
    (lambda: nnx.MaxPool2d(2.5), "kernel_size"),
    (lambda: nnx.AvgPool2d(2, stride=0), "stride"),
    (lambda: nnx.Embedding(10, 4, padding_idx=True), "padding_idx"),
    (lambda: nnx.Embedding(10, 4, padding_idx=10), "padding_idx"),
    (lambda: nnx.Linear(2.0, 3), "in_features"),
    (lambda: nnx.Reshape((1, 2.0)), "shape"),
    (lambda: nnx.Mean(axis=1.0), "axis"),
    (lambda: nnx.Softmax(axis=None), "axis"),
    (lambda: nnx.schedules.StepLR(nnx.SGD(nnx.Linear(2, 2).parameters(), lr=0.1), 2.0), "step_size"),
    (lambda: nnx.schedules.CosineWithWarmup(nnx.SGD(nnx.Linear(2, 2).parameters(), lr=0.1), True, 10),
     "warmup_steps"),
    (lambda: nnx.EarlyStopping(patience=1.5), "patience"),
    (lambda: nnx.metrics.top_k_accuracy([0], [[1.0]], k=True), "k"),
    (lambda: nnx.metrics.confusion_matrix([0], [0], classes=2.0), "classes"),
    (lambda: _fit_one(epochs=2.0), "epochs"),
    (lambda: _fit_one(batch_size=np.float64(8)), "batch_size"),
    (lambda: nnx.predict(nnx.Linear(2, 2), [[1.0, 2.0]], batch_size=True), "batch_size"),
])
def test_integer_arguments_refuse_bools_floats_and_none_by_name(make: Any, name: str) -> None:
    with pytest.raises(nnx.errors.ArgumentError, match=rf"\b{name}\b"):
        make()


def test_every_integer_type_is_an_integer_and_configs_stay_plain() -> None:
    conv = nnx.Conv2d(np.int64(1), np.int32(2), np.int64(3), stride=(np.int8(1), 1), padding=np.uint8(1))
    assert conv.config()["kernel_size"] == [3, 3] and type(conv.in_channels) is int
    assert conv.padding == [1, 1] and type(conv.padding[0]) is int
    emb = nnx.Embedding(np.int64(10), 4, padding_idx=np.int64(0))
    assert emb.padding_idx == 0 and type(emb.padding_idx) is int
    assert nnx.to_host(emb.weight.data)[0].tolist() == [0.0] * 4  # that row only
    assert np.count_nonzero(nnx.to_host(emb.weight.data)[1:]) > 0
    assert nnx.Linear(np.array(3), 2).in_features == 3  # a 0-d integer array


def test_argument_errors_are_both_value_and_type_errors() -> None:
    assert issubclass(nnx.errors.ArgumentError, ValueError) and issubclass(nnx.errors.ArgumentError, TypeError)
    assert issubclass(nnx.errors.ArgumentError, nnx.errors.NnxError)


def test_dtype_errors_name_the_dtype_not_its_class() -> None:
    for make, name in ((lambda: nnx.Linear(2, 2, dtype=np.float32), "float32"),
                       (lambda: nnx.BatchNorm1d(2, dtype=np.dtype("float64")), "float64"),
                       (lambda: examples.example("mlp", dtype=np.float32), "float32")):
        with pytest.raises(nnx.errors.ArgumentError) as info:
            make()
        assert "<class" not in str(info.value) and "numpy" not in str(info.value)
        assert f"object for {name}; pass dtype='{name}'" in str(info.value)


def test_lists_into_layers_say_to_pass_an_array_and_fit_takes_them() -> None:
    with pytest.raises(nnx.errors.DTypeError, match=r"expected an array, got list.*nnx.to_device"):
        nnx.Flatten().forward([[1.0, 2.0]])
    model = nnx.Sequential(nnx.Linear(2, 2, seed=0))
    with pytest.raises(nnx.errors.DTypeError, match="expected an array, got list"):
        model.forward([[1.0, 2.0]])
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.SGD(model.parameters(), lr=0.1),
                      ([[1.0, 2.0], [2.0, 1.0]], [0, 1]), epochs=1, progress=False)  # documented: lists move
    assert len(history.history["loss"]) == 1
    with pytest.raises(nnx.errors.DTypeError, match="cannot make an array"):
        nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), ([[1.0, 2.0], [1.0]], [[1.0, 2.0]] * 2), 1)
    with pytest.raises(nnx.errors.ShapeError, match="one row per sample"):
        nnx.evaluate(model, nnx.MSE(), (1.0, 2.0))
