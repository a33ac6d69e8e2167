"""Habits people bring from PyTorch and Keras: the silent no-op step is an error, and the
conveniences they reach for first (numel, to(dtype=...), summary() without a shape,
fit(validation_split=...), weights-only files) work as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError, DTypeError, ModelFileError, NotAModelFileError, ShapeError, StateError

OPTIMIZERS = {
    "SGD": lambda ps: nnx.optim.SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps: nnx.optim.Adam(ps, lr=0.01),
    "AdamW": lambda ps: nnx.optim.AdamW(ps, lr=0.01),
    "RMSProp": lambda ps: nnx.optim.RMSProp(ps, lr=0.01, momentum=0.5),
    "Lion": lambda ps: nnx.optim.Lion(ps, lr=0.001, weight_decay=0.1),
}


def test_every_optimizer_has_a_case() -> None:
    exported = {name for name in nnx.optim.__all__ if isinstance(getattr(nnx.optim, name), type)
                and issubclass(getattr(nnx.optim, name), nnx.optim.Optimizer) and name != "Optimizer"}
    missing = sorted(exported - set(OPTIMIZERS))
    assert not missing, f"add a case for the optimizers {missing} to OPTIMIZERS in tests/test_habits.py"


def _model(backend: str, dtype: str = "float32") -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(4, 5, seed=0, dtype=dtype, backend=backend), nnx.ReLU(),
                          nnx.Linear(5, 3, seed=1, dtype=dtype, backend=backend))


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_pytorch_habit_step_without_model_backward_raises(nnx_backend: str, name: str) -> None:
    model, loss = _model(nnx_backend), nnx.losses.SoftmaxCrossEntropy()
    opt = OPTIMIZERS[name](model.parameters())
    x, y = _data(8)
    before = [nnx.to_host(p.data) for p in model.parameters()]
    loss.forward(model.forward(nnx.to_device(x, nnx_backend)), nnx.to_device(y, nnx_backend))
    loss.backward()  # the gradient is returned and dropped: nothing reaches the model
    with pytest.raises(StateError, match=r"model\.backward\(loss\.backward\(\)\)") as err:
        opt.step()
    assert "nnx.train_step" in str(err.value)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(nnx.to_host(p.data), b)


def test_a_step_after_zero_grad_raises_and_a_partial_step_is_allowed(nnx_backend: str) -> None:
    model = _model(nnx_backend)
    opt = nnx.optim.SGD(model.parameters(), lr=0.5)
    x = nnx.to_device(_data(6)[0], nnx_backend)
    out = model.forward(x)
    model.backward(nnx.to_device(np.ones((6, 3)), nnx_backend, "float32"))
    opt.zero_grad()
    with pytest.raises(StateError, match="no parameter has a gradient"):
        opt.step()
    model.forward(x)
    model.backward(nnx.to_device(np.ones(tuple(out.shape)), nnx_backend, "float32"))
    frozen = model.layers[0]
    for p in frozen.parameters():  # a frozen first layer: its gradients are dropped before the step
        p.grad = None
    first = [nnx.to_host(p.data) for p in frozen.parameters()]
    last = [nnx.to_host(p.data) for p in model.layers[2].parameters()]
    opt.step()
    for p, b in zip(frozen.parameters(), first):
        np.testing.assert_array_equal(nnx.to_host(p.data), b)
    for p, b in zip(model.layers[2].parameters(), last):
        assert not np.array_equal(nnx.to_host(p.data), b)


def test_numel_counts_the_numbers() -> None:
    model = _model("numpy")
    assert [p.numel() for p in model.parameters()] == [20, 5, 15, 3]
    assert sum(p.numel() for p in model.parameters()) == model.num_parameters() == 43


def test_to_dtype_casts_parameters_buffers_and_the_saved_dtype(nnx_backend: str, tmp_path: Path) -> None:
    model = nnx.Sequential(nnx.preprocessing.Standardize(4, backend=nnx_backend), nnx.Linear(4, 5, seed=0, backend=nnx_backend),
                           nnx.BatchNorm1d(5, backend=nnx_backend), nnx.Linear(5, 3, seed=1, backend=nnx_backend))
    expected = [nnx.to_host(p.data).astype("float64") for p in model.parameters()]
    assert model.to(dtype="float64") is model
    assert {nnx.backend.dtype_name(v) for v in model.state_dict().values()} == {"float64"}
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_array_equal(nnx.to_host(p.data), e)  # float32 to float64 is exact
    x = nnx.to_device(_data(6)[0], nnx_backend, "float64")
    assert nnx.backend.dtype_name(model.forward(x)) == "float64"
    model.drop_saved()  # no backward for that forward
    again = nnx.load(nnx.save(model, tmp_path / "m.nnx"), backend=nnx_backend)
    assert again.layers[1].config()["dtype"] == "float64"
    np.testing.assert_array_equal(nnx.to_host(again.forward(x)), nnx.to_host(model.forward(x)))


def test_optimizer_state_follows_a_cast_model(nnx_backend: str) -> None:
    model, loss = _model(nnx_backend), nnx.losses.SoftmaxCrossEntropy()
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    x, y = _data(8)
    nnx.train_step(model, loss, opt, nnx.to_device(x, nnx_backend), nnx.to_device(y, nnx_backend))
    model.to(dtype="float64")
    nnx.train_step(model, loss, opt, nnx.to_device(x, nnx_backend, "float64"), nnx.to_device(y, nnx_backend))
    for slots in opt.state:
        assert {nnx.backend.dtype_name(v) for v in slots.values()} == {"float64"}
    assert opt.steps == [2, 2, 2, 2]


def test_to_needs_something_and_only_float_dtypes() -> None:
    model = _model("numpy")
    with pytest.raises(ValueError, match="needs a backend name, a dtype, or both"):
        model.to()
    with pytest.raises(DTypeError, match="'int32'"):
        model.to(dtype="int32")
    assert nnx.backend.dtype_name(model.parameters()[0].data) == "float32"


def test_to_moves_and_casts_at_once() -> None:
    model = _model("numpy").to("array_api_strict", dtype="float64")
    assert {(nnx.backend.backend_of(p.data), nnx.backend.dtype_name(p.data)) for p in model.parameters()} == {
        ("array_api_strict", "float64")}


def test_summary_without_a_shape_uses_the_first_layers() -> None:
    model = _model("numpy")
    assert model.summary() == model.summary((None, 4))
    assert "(None, 3)" in model.summary()
    tabular = nnx.Sequential(nnx.preprocessing.Standardize(7), nnx.Linear(7, 2, seed=0))
    assert "(None, 2)" in tabular.summary()
    residual = nnx.Residual(nnx.Sequential(nnx.Linear(3, 3, seed=0), nnx.Tanh()))
    assert "(None, 3)" in residual.summary()


def test_summary_without_a_shape_says_when_it_needs_one() -> None:
    cnn = nnx.Sequential(nnx.Conv2d(1, 2, 3, seed=0), nnx.Flatten())
    with pytest.raises(ShapeError, match=r"needs an input shape.*model\.summary\(\("):
        cnn.summary()
    assert "(32, 2, 6, 6)" in cnn.summary((32, 1, 8, 8))


def _fit_split(nnx_backend: str, **kwargs: Any) -> tuple[nnx.Sequential, nnx.History]:
    model = _model(nnx_backend)
    x, y = _data()
    history = nnx.fit(model, nnx.losses.SoftmaxCrossEntropy(), nnx.optim.Adam(model.parameters(), lr=0.01),
                      (x, y), 2, batch_size=8, progress=False, **kwargs)
    return model, history


def test_validation_split_equals_fitting_on_train_val_split(nnx_backend: str) -> None:
    x, y = _data()
    model, history = _fit_split(nnx_backend, validation_split=0.25, seed=3)
    train, val = nnx.datasets.train_val_split(x, y, val=0.25, seed=3, stratify=True)
    other = _model(nnx_backend)
    expected = nnx.fit(other, nnx.losses.SoftmaxCrossEntropy(), nnx.optim.Adam(other.parameters(), lr=0.01),
                       train, 2, batch_size=8, progress=False, validation=val, seed=3)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history[key] == expected[key]
    for p, q in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(nnx.to_host(p.data), nnx.to_host(q.data))


def test_validation_split_is_stratified_and_seeded() -> None:
    x, y = _data(60)
    train, val = nnx.datasets.train_val_split(x, y, val=0.25, seed=3, stratify=True)
    counts = np.bincount(y, minlength=3)
    assert np.abs(np.bincount(val[1], minlength=3) - counts * 0.25).max() < 1
    _, first = _fit_split("numpy", validation_split=0.25, seed=3)
    _, second = _fit_split("numpy", validation_split=0.25, seed=3)
    _, other_seed = _fit_split("numpy", validation_split=0.25, seed=4)
    assert first["val_loss"] == second["val_loss"]
    assert first["val_loss"] != other_seed["val_loss"]


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, True, "0.2", 0.001])
def test_validation_split_must_leave_two_parts(fraction: Any) -> None:
    with pytest.raises(ConfigError, match="validation_split"):
        _fit_split("numpy", validation_split=fraction)


def test_validation_and_validation_split_are_exclusive() -> None:
    x, y = _data(10)
    with pytest.raises(ConfigError, match="not both|one of them"):
        _fit_split("numpy", validation_split=0.2, validation=(x, y))


def test_resume_may_not_change_the_validation_split(tmp_path: Path) -> None:
    _fit_split("numpy", validation_split=0.25, seed=1, checkpoint=tmp_path)
    with pytest.raises(ConfigError, match=r"validation_split: 0\.25 -> 0\.5.*allow_changes never changes"):
        _fit_split("numpy", validation_split=0.5, seed=1, checkpoint=tmp_path, resume=True, allow_changes=True)
    _fit_split("numpy", validation_split=0.25, seed=1, checkpoint=tmp_path, resume=True)


def test_a_state_dict_saves_as_weights_only_and_loads_into_a_model(nnx_backend: str, tmp_path: Path) -> None:
    model = _model(nnx_backend)
    path = nnx.save(model.state_dict(), tmp_path / "w.nnx")
    other = _model(nnx_backend)
    for p in other.parameters():
        p.data = p.data * 0
    other.load_state_dict(nnx.load_state_dict(path))
    for p, q in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(nnx.to_host(p.data), nnx.to_host(q.data))
    with pytest.raises(NotAModelFileError, match="weights only"):
        nnx.load(path)
    with pytest.raises(ModelFileError, match="is a weights file, not a model or checkpoint file"):
        nnx.load_checkpoint(path)


def test_load_state_dict_reads_a_model_file_too(tmp_path: Path) -> None:
    model = _model("numpy")
    state = nnx.load_state_dict(nnx.save(model, tmp_path / "m.nnx"))
    assert sorted(state) == sorted(model.state_dict())


def test_a_wrong_state_dict_is_refused_before_anything_changes(tmp_path: Path) -> None:
    path = nnx.save(_model("numpy").state_dict(), tmp_path / "w.nnx")
    small = nnx.Sequential(nnx.Linear(4, 5, seed=0))
    with pytest.raises(ShapeError, match="does not have"):
        small.load_state_dict(nnx.load_state_dict(path))
    with pytest.raises(TypeError, match="not an array"):
        nnx.save({"w": [1.0, 2.0]}, tmp_path / "bad.nnx")
