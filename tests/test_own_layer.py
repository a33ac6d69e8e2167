"""A layer needs only its own file: one defined here registers, saves and loads, gradchecks and
runs through ``nnx parity --model`` with no edit anywhere else, and a user layer that states
nothing still cannot make the loader allocate more than a file could hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pytest

import nnx
from nnx.testing import check_parity, gradcheck
from nnx.testing.examples import case_for_model


@nnx.register_layer(name="test_own_layer.Scale")
class Scale(nnx.Layer):
    """``x * scale`` with one learned scale per feature, for inputs ``(batch, features)``."""

    def __init__(self, features: int, *, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        self.features, self.dtype = features, dtype
        start = np.random.default_rng(features).uniform(0.5, 1.5, features)
        self.scale = nnx.Parameter(nnx.to_device(start, backend, dtype), "scale")

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return x * self.scale.data

    def backward(self, grad: Any) -> Any:
        (x,) = self.saved_tensors()
        self.scale.accumulate(nnx.backend.namespace_of(grad).sum(grad * x, axis=0))
        return grad * self.scale.data

    def config(self) -> dict[str, Any]:
        return {"features": self.features, "dtype": self.dtype}

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        return int(config["features"])

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        return rng.normal(size=(batch, self.features))


def _model(backend: str | None = None) -> nnx.Sequential:
    return nnx.Sequential(Scale(3, dtype="float64", backend=backend), nnx.Tanh(),
                          nnx.Linear(3, 2, seed=0, dtype="float64", backend=backend))


def test_it_saves_and_loads(nnx_backend: str, tmp_path: Path) -> None:
    model = _model()
    loaded = nnx.load(nnx.save(model, tmp_path / "scale.nnx"))
    assert isinstance(loaded[0], Scale) and loaded[0].features == 3
    assert nnx.io.read_tensors(tmp_path / "scale.nnx").description["model"]["children"][0][1]["type"] == \
        "test_own_layer.Scale"
    x = nnx.to_device(np.random.default_rng(1).normal(size=(4, 3)), dtype="float64")
    assert np.array_equal(nnx.to_host(loaded.forward(x)), nnx.to_host(model.forward(x)))


def test_it_gradchecks(nnx_backend: str) -> None:
    x = nnx.to_device(np.random.default_rng(2).normal(size=(5, 4)), dtype="float64")
    result = gradcheck(Scale(4, dtype="float64"), x)
    assert result.ok, result
    assert set(result.checks) == {"input", "scale"}


def test_nnx_parity_runs_a_saved_model_holding_it(tmp_path: Path) -> None:
    path = nnx.save(_model("numpy"), tmp_path / "scale.nnx")
    case = case_for_model(nnx.load(path, backend="numpy"), path.name)  # what `nnx parity --model FILE` runs
    assert tuple(case.x.shape) == (16, 3)  # Scale, first, stated its input
    report = check_parity(case.model, case.loss, case.x, case.y, backends=["numpy", "array_api_strict"],
                          steps=2, optimizer=case.optimizer)
    assert report.ok, report


class _Square(nnx.Layer):
    """A user layer that states nothing: a ``(width, width)`` matrix, sized by an unknown config key."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.matrix = nnx.Parameter(nnx.to_device(np.eye(width), dtype="float64"), "matrix")

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return x @ self.matrix.data

    def config(self) -> dict[str, Any]:
        return {"width": self.width}


def test_a_layer_that_states_no_sizes_cannot_outgrow_the_file(tmp_path: Path) -> None:
    nnx.register_layer(_Square, "test_own_layer.Square")
    try:
        path = nnx.save(nnx.Sequential(nnx.Linear(4, 4, dtype="float64"), _Square(4)), tmp_path / "sq.nnx")
        assert isinstance(nnx.load(path)[1], _Square)
        file = nnx.io.read_tensors(path)
        description = dict(file.description)
        description["model"]["children"][1][1]["config"]["width"] = 10**6  # a 10**12-element matrix
        nnx.io.write_tensors(path, dict(file.tensors), description)
        with pytest.raises(nnx.errors.CorruptModelFileError,
                           match=r"larger than the whole file.*give it a classmethod config_size"):
            nnx.load(path)
    finally:
        del nnx.layers.registry._LAYERS["test_own_layer.Square"]


def test_the_default_bound_multiplies_every_positive_int() -> None:
    config = {"a": 3, "b": [2, [5]], "c": {"d": 7}, "flag": True, "axis": -1, "p": 0.5, "name": "x"}
    assert nnx.Layer.config_size(config) == 3 * 2 * 5 * 7
    assert nnx.Layer.config_size({"p": 0.5, "flag": True}) == 0
    assert nnx.Layer.config_size({"sizes": [10**9] * 10}) == 2**64  # more than any file, quickly


def test_a_first_layer_that_states_no_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"m: cannot draw example inputs for _Square.*example_input\(batch, rng"):
        case_for_model(nnx.Sequential(_Square(3), nnx.Linear(3, 2, dtype="float64")), "m")
    with pytest.raises(ValueError, match="no layer of the model states its input"):
        case_for_model(nnx.Sequential(nnx.Tanh(), nnx.LayerNorm(3, dtype="float64")), "m")
