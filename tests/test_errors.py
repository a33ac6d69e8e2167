"""Bad input gives a specific nnx error that says what was expected and what came."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnx


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
