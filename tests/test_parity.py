"""Parity: assert_close, the harness over full training runs, a perturbed backend, ``nnx parity``."""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pytest

import nnx
from nnx import backend as nb
from nnx.testing import compare
from nnx.backend.registry import Backend
from nnx.cli import main
from nnx.testing.examples import EXAMPLES, example
from nnx.testing import ParityError, assert_close, check_parity

# A test-only backend: NumPy arrays of a subclass whose ufuncs run on plain
# NumPy, except one op (``PerturbedArray.op``) whose result is scaled by
# (1 + ``PerturbedArray.factor``). Everything else is bit-identical to numpy.


class PerturbedArray(np.ndarray):
    op: Any = None
    factor = 1e-9

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        result = getattr(ufunc, method)(*(_plain(i) for i in inputs), **kwargs)
        if ufunc is PerturbedArray.op and method == "__call__":
            result = result * (1 + PerturbedArray.factor)
        return _wrap(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()}))


def _plain(x: Any) -> Any:
    if isinstance(x, PerturbedArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x).view(PerturbedArray)
    return x


PERTURBED = Backend(
    name="perturbed",
    module="numpy",
    description="numpy with one op scaled by (1 + 1e-9), for tests",
    probe=lambda: None,
    namespace=lambda: nb.BACKENDS["numpy"].namespace(),
    from_host=lambda a: np.array(a, copy=True).view(PerturbedArray),
    to_host=lambda x: np.array(x, copy=True).view(np.ndarray),
    owns=lambda x: isinstance(x, PerturbedArray),
)


@pytest.fixture
def perturbed() -> Iterator[type[PerturbedArray]]:
    nb.register(PERTURBED)
    try:
        yield PerturbedArray
    finally:
        nb.unregister("perturbed")
        PerturbedArray.op = None


def _tanh_net(dtype: str = "float64") -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(3, 5, seed=0, dtype=dtype, backend="numpy"),
        nnx.ReLU(),
        nnx.Linear(5, 4, seed=1, dtype=dtype, backend="numpy"),
        nnx.Tanh(),
        nnx.Linear(4, 2, seed=2, dtype=dtype, backend="numpy"),
    )


def _data(dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.normal(size=(6, 3)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)


# assert_close and compare -------------------------------------------------------------


def test_assert_close_across_backends_reports_errors_and_where() -> None:
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = expected.copy()
    actual[1, 0] = 3.0 + 3e-11
    strict = nnx.to_device(actual, "array_api_strict")
    with pytest.raises(ParityError) as info:
        assert_close(strict, expected, name="h")
    message = str(info.value)
    assert message.startswith("h differs")
    assert "[1, 0]" in message and "1 element(s) out of tolerance" in message
    result = compare(actual, expected)
    assert result.index == (1, 0)
    assert result.max_abs == pytest.approx(3e-11, rel=1e-4)
    assert result.max_rel == pytest.approx(1e-11, rel=1e-4)
    assert result.ulps == pytest.approx(3e-11 / np.spacing(3.0), rel=1e-3)
    assert result.rtol == 1e-12 and result.atol == pytest.approx(4e-12)


def test_assert_close_float64_and_float32_defaults() -> None:
    one = np.ones(3)
    assert assert_close(one + 4e-13, one).ok  # float64: within 1e-12 relative
    with pytest.raises(ParityError):
        assert_close(one + 4e-12, one)
    one32 = np.ones(3, dtype=np.float32)
    nudged = np.nextafter(one32, np.float32(2))
    result = assert_close(nudged, one32)
    assert result.ulps == pytest.approx(1.0)
    with pytest.raises(ParityError):
        assert_close(one32 * np.float32(1.0001), one32)


def test_assert_close_default_atol_follows_the_tensor_scale() -> None:
    expected = np.array([1000.0, 1e-9])
    actual = expected + np.array([0.0, 1e-10])  # tiny next to the tensor's scale
    assert assert_close(actual, expected).ok
    with pytest.raises(ParityError):
        assert_close(actual, expected, atol=0.0)


@pytest.mark.parametrize(
    ("actual", "expected", "fragment"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "shape (2, 3) differs"),
        (np.zeros(3, dtype=np.float32), np.zeros(3), "dtype float32 differs"),
        (np.array([1.0, np.nan]), np.array([1.0, 2.0]), "NaN where the other is not"),
        (np.array([1, 2]), np.array([1, 3]), "out of tolerance"),
    ],
)
def test_assert_close_rejects(actual: np.ndarray, expected: np.ndarray, fragment: str) -> None:
    with pytest.raises(ParityError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        assert_close(actual, expected)


def test_assert_close_accepts_shared_nans_and_infinities() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert assert_close(values.copy(), values).max_abs == 0.0


def test_comparison_is_json_able() -> None:
    result = compare(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    assert not result.ok
    text = json.dumps(result.to_dict())
    assert '"max_rel": "inf"' in text


# the harness ---------------------------------------------------------------------------


@pytest.mark.nnx_backends("array_api_strict", "cupy", "torch")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_agree_with_numpy_over_training(nnx_backend: str, name: str, dtype: str) -> None:
    case = example(name, dtype)
    steps = 30
    report = check_parity(case.model, case.loss, case.x, case.y, backends=["numpy", nnx_backend],
                          steps=steps, optimizer=case.optimizer)
    assert report.ok, str(report)
    assert report.dtype == dtype and report.checked >= steps * 8
    worst = report.worst[nnx_backend]
    assert worst.comparison.rtol == pytest.approx({"float64": 1e-12, "float32": 1e-5}[dtype] * worst.step)
    losses = report.losses["numpy"]
    assert len(losses) == steps and losses[-1] < losses[0]  # it really trained
    if nnx_backend == "array_api_strict":  # the same NumPy kernels underneath: bit-identical
        assert losses == report.losses[nnx_backend]
        assert report.worst[nnx_backend].comparison.max_abs == 0.0


def test_check_parity_leaves_the_model_alone() -> None:
    model = _tanh_net()
    before = [p.data.copy() for p in model.parameters()]
    x, y = _data()
    check_parity(model, nnx.MSE(), x, y, backends=["numpy", "array_api_strict"], steps=2)
    for p, b in zip(model.parameters(), before):
        assert np.array_equal(p.data, b)
        assert p.grad is None


def test_check_parity_needs_two_available_backends() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="two or more"):
        check_parity(_tanh_net(), nnx.MSE(), x, y, backends=["numpy"])
    unavailable = [n for n, r in nnx.available().items() if r is not None]
    if unavailable:
        with pytest.raises(nnx.errors.BackendUnavailableError, match=unavailable[0]):
            check_parity(_tanh_net(), nnx.MSE(), x, y, backends=["numpy", unavailable[0]])


def test_perturbed_tanh_is_caught_at_the_tanh_layer(perturbed: type[PerturbedArray]) -> None:
    perturbed.op = np.tanh
    x, y = _data()
    report = check_parity(_tanh_net(), nnx.MSE(), x, y, backends=["numpy", "perturbed"], steps=3)
    assert not report.ok
    first = report.first_failure
    assert (first.step, first.phase, first.layer, first.layer_name, first.tensor) == (
        1, "forward", "3", "Tanh()", "output")
    assert first.backend == "perturbed"
    assert 5e-10 < first.comparison.max_rel < 2e-9
    assert "step 1, layer 3 Tanh(), forward output" in str(report)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] is False and as_dict["first_failure"]["layer"] == "3"


def test_perturbed_matmul_is_caught_at_the_first_linear(perturbed: type[PerturbedArray]) -> None:
    perturbed.op = np.matmul
    x, y = _data()
    report = check_parity(_tanh_net(), nnx.MSE(), x, y, backends=["numpy", "perturbed"], steps=1)
    first = report.first_failure
    assert (first.phase, first.layer, first.layer_name) == ("forward", "0", "Linear(3, 5)")


def test_perturbed_backend_within_a_loose_tolerance_agrees(perturbed: type[PerturbedArray]) -> None:
    perturbed.op = np.tanh
    x, y = _data()
    report = check_parity(_tanh_net(), nnx.MSE(), x, y, backends=["numpy", "perturbed"], steps=2, rtol=1e-6)
    assert report.ok, str(report)


def test_a_backend_that_raises_is_a_failure(perturbed: type[PerturbedArray]) -> None:
    perturbed.op = np.tanh
    x, y = _data()

    class Broken(nnx.Tanh):
        def forward(self, h: Any) -> Any:
            if nb.backend_of(h) == "perturbed":
                raise RuntimeError("no tanh here")
            return super().forward(h)

    model = nnx.Sequential(nnx.Linear(3, 2, seed=0, dtype="float64", backend="numpy"), Broken())
    report = check_parity(model, nnx.MSE(), x, y, backends=["numpy", "perturbed"], steps=1)
    assert not report.ok
    assert "RuntimeError: no tanh here" in report.errors["perturbed"]


# nnx parity ----------------------------------------------------------------------------


def test_cli_parity_agrees_and_writes_json(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "parity.json"
    code = main(["parity", "--backends", "numpy,array_api_strict", "--steps", "3", "--json", str(out)])
    assert code == 0
    assert "all agree" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["ok"] is True and set(document["models"]) == set(EXAMPLES)
    # per step: 6 layer outputs and the model's, the loss and its gradient, 6 input gradients and
    # the model's, 6 parameter gradients, 6 updated parameters
    assert document["models"]["mlp"]["checked"] == 3 * 28


def test_cli_parity_exits_1_with_the_report(perturbed: type[PerturbedArray],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    perturbed.op = np.tanh
    code = main(["parity", "--backends", "numpy,perturbed", "--model", "mlp", "--steps", "2"])
    assert code == 1
    out = capsys.readouterr().out
    assert "first difference on perturbed: step 1, layer 1 Tanh(), forward output" in out
    assert "DIFFER" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--backends", "numpy"], "two or more"),
        (["--backends", "numpy,nonesuch"], "unknown backend 'nonesuch'"),
        (["--backends", "numpy,array_api_strict", "--model", "nonesuch"], "neither an example"),
        (["--backends", "numpy,array_api_strict", "--steps", "0"], "--steps"),
    ],
)
def test_cli_parity_bad_arguments_exit_2(args: list[str], fragment: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", *args]) == 2
    assert fragment in capsys.readouterr().err


def test_cli_parity_unavailable_backend_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    unavailable = {n: r for n, r in nnx.available().items() if r is not None}
    if not unavailable:
        pytest.skip("every backend is available on this machine")
    name, reason = next(iter(unavailable.items()))
    assert main(["parity", "--backends", f"numpy,{name}"]) == 2
    assert reason in capsys.readouterr().err


# matmul precision ---------------------------------------------------------------------


def test_matmul_precision_is_explicit_on_cpu_backends() -> None:
    assert nb.matmul_precision("numpy") == "highest"
    assert nb.set_matmul_precision("highest", "numpy") == "highest"
    with pytest.raises(nnx.errors.ConfigError, match="no reduced-precision matmul"):
        nb.set_matmul_precision("tf32", "numpy")
    with pytest.raises(nnx.errors.ConfigError, match="must be one of"):
        nb.set_matmul_precision("fast", "numpy")


@pytest.mark.nnx_backends("cupy", "torch")
def test_matmul_precision_round_trips_where_supported(nnx_backend: str) -> None:
    for name in [nnx_backend]:
        before = nb.set_matmul_precision("tf32", name)
        try:
            assert nb.matmul_precision(name) == "tf32" or name == "cupy"  # pre-Ampere GPUs stay full
        finally:
            nb.set_matmul_precision(before, name)
        assert nb.matmul_precision(name) == before


def _tf32_script() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "tf32.py"
    spec = importlib.util.spec_from_file_location("nnx_bench_tf32", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tf32_script_skips_cleanly_without_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert _tf32_script().main(["--backend", "numpy"]) == 0
    assert "skipped: backend 'numpy' has no reduced-precision matmul setting" in capsys.readouterr().out


@pytest.mark.nnx_backends("cupy", "torch")
def test_tf32_script_measures_both_settings(nnx_backend: str, tmp_path: Any) -> None:
    out = tmp_path / "tf32.json"
    before = nb.matmul_precision(nnx_backend)
    args = ["--backend", nnx_backend, "--sizes", "64", "--steps", "3", "--batch", "16", "--width", "32",
            "--repeat", "2", "--json", str(out), "--markdown", str(tmp_path / "tf32.md")]
    assert _tf32_script().main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["matmul"][0]["highest"]["max_rel_error_vs_float64"] < 1e-5  # full float32
    assert set(doc["training"]) >= {"highest", "tf32", "final_loss_float64"}
    assert "| matmul 64x64: max rel error |" in (tmp_path / "tf32.md").read_text()
    assert nb.matmul_precision(nnx_backend) == before  # the script restores the setting


def test_compare_scale_judges_cancellation_noise_against_its_source() -> None:
    # A bias gradient just before a batch norm is a sum that cancels to rounding noise.
    expected, actual = np.array([4.2e-17, -1.0e-17]), np.array([-2.3e-17, 3.0e-17])
    assert not compare(actual, expected).ok
    assert compare(actual, expected, scale=1e-2).ok
    assert not compare(actual + 1e-13, expected, scale=1e-2).ok


def test_register_adds_and_unregister_removes_a_record() -> None:
    with pytest.raises(TypeError, match="Backend record"):
        nb.register("perturbed")  # type: ignore[arg-type]
    nb.register(PERTURBED)
    try:
        assert nb.names()[-1] == "perturbed" and nnx.available()["perturbed"] is None
        x = nnx.to_device([1.0, 2.0], "perturbed")
        assert nb.backend_of(x) == "perturbed"  # claimed before numpy, whose arrays it subclasses
        assert nb.backend_of(np.ones(2)) == "numpy"
    finally:
        nb.unregister("perturbed")
    assert "perturbed" not in nnx.available()
    with pytest.raises(nnx.errors.UnknownBackendError):
        nb.unregister("perturbed")


def test_cli_parity_on_a_saved_model(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.nnx"
    nnx.save(example("mlp", "float64").model, path)
    out = tmp_path / "parity.json"
    code = main(["parity", "--backends", "numpy,array_api_strict", "--model", str(path), "--steps", "2",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr()
    document = json.loads(out.read_text())
    assert list(document["models"]) == ["model.nnx"] and document["models"]["model.nnx"]["checked"] == 2 * 28


def test_cli_parity_on_a_file_that_is_not_a_model(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a model")
    assert main(["parity", "--backends", "numpy,array_api_strict", "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err
