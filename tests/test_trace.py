"""Parity traces: recorded on one backend, replayed on others (nnx/testing/trace.py, nnx parity --record/--against)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import cli
from nnx.errors import ConfigError, FormatVersionError, ParityError
from nnx.testing import assert_matches_trace, check_trace, load_trace, record_trace
from nnx.testing.examples import EXAMPLES, example
from nnx.testing.trace import SUFFIX, TF32_RTOL, example_trace

pytest_plugins = ["pytester"]

TRACES = Path(__file__).resolve().parent / "data" / "traces"
REGENERATE = "python tests/data/traces/regenerate.py"
ROOT = Path(__file__).resolve().parents[1]
PARITY_PAGE = ROOT / "docs" / "parity.md"
# subprocesses import this checkout's nnx, whatever else is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _identical(report: nnx.testing.TraceReport, name: str) -> bool:
    return report.worst[name].comparison.max_abs == 0


def _strict_available() -> None:
    reason = nnx.available()["array_api_strict"]
    if reason is not None:
        pytest.skip(f"array_api_strict unavailable: {reason}")


def test_every_example_model_has_a_committed_trace() -> None:
    missing = [name for name in EXAMPLES if not (TRACES / f"{name}{SUFFIX}").exists()]
    assert not missing, (f"example model(s) {missing} have no trace in {TRACES}; record them with "
                         f"`{REGENERATE}` and commit the files")


# traces recorded on a GPU by ci/gpu.sh, where one was lent: CPU CI checks the GPU's numbers
GPU_TRACES = TRACES.parent / "traces-cupy"


@pytest.mark.parametrize("name", sorted(str(p.relative_to(TRACES.parent))
                                        for p in [*TRACES.glob(f"*{SUFFIX}"), *GPU_TRACES.glob(f"*{SUFFIX}")]))
def test_committed_trace_replays_within_tolerance_on_numpy_and_strict(name: str) -> None:
    """As CI replays a trace recorded elsewhere: within the dtype's tolerances (bit for bit only where the
    recording machine's BLAS summed in the same order; a fresh trace is checked bit for bit below)."""
    _strict_available()
    trace = load_trace(TRACES.parent / name)
    assert trace.backend in ("numpy", "cupy") and trace.metadata["matmul_precision"] == "highest"
    report = check_trace(trace, backends=["numpy", "array_api_strict"])
    assert report.ok, f"{report}\n(if the change is meant to move the numbers, run `{REGENERATE}`)"


def test_a_fresh_numpy_trace_replays_bit_for_bit_and_within_tolerance(tmp_path: Path) -> None:
    _strict_available()
    size = example_trace("classifier").save(tmp_path / "c.nnxtrace")  # dropout, batch norm, Adam
    assert size.total == (tmp_path / "c.nnxtrace").stat().st_size and size.stored < size.entries
    report = check_trace(tmp_path / "c.nnxtrace", backends=["numpy", "array_api_strict"])
    assert report.ok and _identical(report, "numpy"), str(report)
    trace = load_trace(tmp_path / "c.nnxtrace")
    assert report.checked == 2 * (len(trace.entries) + len(trace.model_tensors))  # each tensor, each backend
    assert "every tensor identical" in str(report) or "largest difference" in str(report)


def test_float32_tensors_are_stored_as_float32(tmp_path: Path) -> None:
    trace = example_trace("mlp")
    trace.save(tmp_path / "m.nnxtrace")
    stored = nnx.io.read_tensors(tmp_path / "m.nnxtrace", kinds=("trace",)).tensors
    assert {a.dtype.name for n, a in stored.items()} == {"float32"}
    assert stored["trace/0"].dtype == np.float32


def _perturbed(tmp_path: Path, delta: float, *, step: int = 2, name: str = "backward/2/weight.grad") -> Path:
    trace = example_trace("mlp")
    entry = trace.entry(step, name)
    entry.value = entry.value.copy()
    entry.value[0, 0] += delta
    trace.save(tmp_path / "perturbed.nnxtrace")
    return tmp_path / "perturbed.nnxtrace"


def test_one_perturbed_gradient_element_fails_with_that_tensor_named(tmp_path: Path) -> None:
    path = _perturbed(tmp_path, 1e-4)
    report = check_trace(path, backends=["numpy"])
    failure = report.first_failure
    assert not report.ok and failure is not None
    assert (failure.step, failure.phase, failure.layer, failure.tensor) == (2, "backward", "2", "weight.grad")
    assert failure.comparison.mismatched == 1 and failure.comparison.index == (0, 0)
    assert report.first_failure_name == "backward/2/weight.grad"
    with pytest.raises(ParityError, match=r"step 2, layer 2 Linear\(16, 16\), backward weight.grad") as info:
        assert_matches_trace(None, path, backends=["numpy"])
    assert "backward/2/weight.grad" in str(info.value) and str(path) in str(info.value)


def test_a_tolerance_pattern_widens_only_the_tensors_it_names(tmp_path: Path) -> None:
    path = _perturbed(tmp_path, 1e-4)
    assert check_trace(path, backends=["numpy"], tolerances={"backward/*/weight.grad": 1.0}).ok
    assert not check_trace(path, backends=["numpy"], tolerances={"backward/*/bias.grad": 1.0}).ok
    assert not check_trace(path, backends=["numpy"], tolerances={"backward/0/weight.grad": 1.0}).ok
    with pytest.raises(ValueError, match="finite number >= 0"):
        check_trace(path, backends=["numpy"], tolerances={"*": float("nan")})


def test_tolerances_grow_with_the_step_and_relax_for_tf32(tmp_path: Path) -> None:
    trace = example_trace("mlp")
    entry = trace.entry(3, "update/0/weight")
    entry.value = entry.value.copy()
    entry.value[0, 0] *= 1 + 2.5e-5  # over float32's 1e-5 at step 1, within 3e-5 at step 3
    assert check_trace(trace, backends=["numpy"]).ok
    entry.value[0, 0] *= 1 + 5e-4
    assert not check_trace(trace, backends=["numpy"]).ok
    trace.metadata["matmul_precision"] = "tf32"
    report = check_trace(trace, backends=["numpy"])
    assert report.ok and report.worst["numpy"].comparison.rtol <= 3 * TF32_RTOL


def test_a_given_model_must_have_the_traces_architecture_and_start(tmp_path: Path) -> None:
    path = tmp_path / "m.nnxtrace"
    example_trace("mlp").save(path)
    case = example("mlp", "float32")
    assert assert_matches_trace(case.model, path, backends=["numpy"]).ok
    reseeded = example("mlp", "float32").model
    reseeded[0].weight.data = reseeded[0].weight.data * 1.001
    report = check_trace(path, reseeded, backends=["numpy"])
    assert not report.ok and report.first_failure_name == "initial/0/weight"
    assert "step 0, layer 0 Linear(8, 16), initial weight" in str(report)
    with pytest.raises(ConfigError, match="differs from the trace's"):
        check_trace(path, nnx.Sequential(nnx.Linear(8, 4, seed=0, dtype="float32")), backends=["numpy"])


def test_recording_works_on_any_backend(tmp_path: Path) -> None:
    _strict_available()
    case = example("seed001", "float64")
    with nnx.use("array_api_strict"):
        model = nnx.testing.clone_to(case.model, "array_api_strict")
        trace = record_trace(model, case.loss, nnx.to_device(case.x, "array_api_strict"),
                             nnx.to_device(case.y, "array_api_strict"), optimizer=case.optimizer, steps=2)
    assert trace.metadata["backend"] == "array_api_strict" and trace.dtype == "float64"
    assert set(trace.metadata["versions"]) >= {"nnx", "numpy", "array_api_strict"}
    trace.save(tmp_path / "s.nnxtrace")
    report = check_trace(tmp_path / "s.nnxtrace", backends=["numpy"])
    assert report.ok and report.reference == "array_api_strict trace", str(report)


def test_record_refuses_bad_arguments() -> None:
    case = example("seed000")
    with pytest.raises(ValueError, match="steps >= 1"):
        record_trace(case.model, case.loss, case.x, case.y, steps=0)
    with pytest.raises(nnx.errors.UnknownBackendError):
        record_trace(case.model, case.loss, case.x, case.y, backend="jax")


def test_another_trace_version_is_refused(tmp_path: Path) -> None:
    from hostile_files import build_traces

    cases = {name: (error, phrase) for name, error, phrase in build_traces(tmp_path)}
    with pytest.raises(FormatVersionError, match=re.escape(cases["trace-version-2.nnxtrace"][1])):
        load_trace(tmp_path / "trace-version-2.nnxtrace")
    with pytest.raises(nnx.errors.NotAModelFileError, match="is a trace file, not a model or checkpoint file"):
        nnx.load(tmp_path / "valid.nnxtrace")


def test_a_loss_outside_nnx_is_replayed_only_when_given(tmp_path: Path) -> None:
    class HalfMSE(nnx.MSE):
        def forward(self, pred, target):  # type: ignore[no-untyped-def]
            return super().forward(pred, target) * 0.5

        def backward(self, grad=None):  # type: ignore[no-untyped-def]
            return super().backward(grad) * 0.5

    case = example("seed001")
    record_trace(case.model, HalfMSE(), case.x, case.y, steps=2).save(tmp_path / "h.nnxtrace")
    with pytest.raises(ConfigError, match="the trace's loss is a 'HalfMSE', not one of nnx's"):
        check_trace(tmp_path / "h.nnxtrace", backends=["numpy"])
    assert check_trace(tmp_path / "h.nnxtrace", backends=["numpy"], loss=HalfMSE()).ok
    assert not check_trace(tmp_path / "h.nnxtrace", backends=["numpy"], loss=nnx.MSE()).ok


@dataclass
class _Done:
    returncode: int
    stdout: str
    stderr: str


def _nnx(*args: str, cwd: Path) -> _Done:
    """``nnx ARGS`` run in ``cwd``, in this process (as the command runs it: exit status, both outputs)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            status = int(exc.code or 0)
    return _Done(status, out.getvalue(), err.getvalue())


def test_cli_records_and_replays_with_the_exit_codes_of_parity(tmp_path: Path) -> None:
    _strict_available()
    done = _nnx("parity", "--record", "t.nnxtrace", "--model", "seed001", "--backends", "numpy", "--dtype",
                "float32", "--steps", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"wrote t\.nnxtrace: \d+\.\d KiB", done.stdout)
    done = _nnx("parity", "--against", "t.nnxtrace", "--backends", "numpy,array_api_strict", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agree: numpy trace vs numpy, array_api_strict, float32, 2 step(s)" in done.stdout
    _perturbed(tmp_path, 1e-4)
    done = _nnx("parity", "--against", str(tmp_path), "--backends", "numpy", "--json", "r.json", cwd=tmp_path)
    assert done.returncode == 1
    assert "first difference on numpy: step 2, layer 2 Linear(16, 16), backward weight.grad" in done.stdout
    assert '"first_failure_name": "backward/2/weight.grad"' in (tmp_path / "r.json").read_text()
    done = _nnx("parity", "--against", "perturbed.nnxtrace", "--backends", "numpy", "--tolerance",
                "backward/2/*=1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    for bad in (["--against", "t.nnxtrace", "--model", "mlp"], ["--against", "missing.nnxtrace"],
                ["--against", "t.nnxtrace", "--tolerance", "x"], ["--against", "t.nnxtrace", "--backends", "jax"],
                ["--record", "u.nnxtrace", "--backends", "numpy,array_api_strict", "--model", "mlp"],
                ["--tolerance", "a=1", "--backends", "numpy,array_api_strict"]):
        done = _nnx("parity", *bad, cwd=tmp_path)
        assert done.returncode == 2 and "nnx parity: error:" in done.stderr and "Traceback" not in done.stderr, bad


def test_cli_records_several_models_into_a_folder(tmp_path: Path) -> None:
    done = _nnx("parity", "--record", "out", "--model", "seed000", "--model", "seed004", "--backends", "numpy",
                "--steps", "1", "--batch", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed000.nnxtrace", "seed004.nnxtrace"]
    assert load_trace(tmp_path / "out" / "seed004.nnxtrace").x.shape == (2, 3)
    assert "2 trace(s)" in done.stdout


PLUGIN_USER_TEST = """
import nnx

def test_model(nnx_backend, nnx_trace):
    model = nnx.Sequential(nnx.Linear(3, 2, seed=SEED, dtype="float64"), nnx.Tanh())
    x = nnx.to_device([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype="float64")
    y = nnx.to_device([[0.0, 1.0], [1.0, 0.0]], dtype="float64")
    nnx_trace(model, nnx.MSE(), x, y, steps=2)
"""


def test_the_pytest_fixture_records_once_then_compares(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import entry_points

    _strict_available()
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    installed = any(ep.value == "nnx.testing.plugin" for ep in entry_points(group="pytest11"))
    plugin = () if installed else ("-p", "nnx.testing.plugin")
    # hypothesis's plugin costs seconds per run and has nothing to do here
    options = (*plugin, "-p", "no:hypothesispytest", "--nnx-backends=numpy,array_api_strict")
    pytester.makepyfile(test_user=PLUGIN_USER_TEST.replace("SEED", "0"))
    result = pytester.runpytest_inprocess(*options)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*no trace for this test at *test_model.nnxtrace; record it with pytest "
                                 "--nnx-record-traces*"])
    result = pytester.runpytest_inprocess(*options, "--nnx-record-traces")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "nnx_traces" / "test_user" / "test_model.nnxtrace").exists()
    result = pytester.runpytest_inprocess(*options)
    result.assert_outcomes(passed=2)
    pytester.makepyfile(test_user=PLUGIN_USER_TEST.replace("SEED", "1"))
    result = pytester.runpytest_inprocess(*options)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*first difference on *: step 0, layer 0 Linear(3, 2), initial weight*"])


def _docs_failure_report() -> list[str]:
    text = PARITY_PAGE.read_text()
    start = text.index("```text\nnnx parity: replaying")
    return text[start:].split("```")[1].splitlines()[1:]


def test_the_documented_failure_report_is_what_the_command_prints(tmp_path: Path) -> None:
    """docs/parity.md's sample is a real report: the trace its command records, one element changed."""
    sample = _docs_failure_report()
    record = _nnx("parity", "--record", "mlp.nnxtrace", "--model", "mlp", "--backends", "numpy", "--dtype",
                  "float32", "--steps", "3", "--batch", "8", cwd=tmp_path)
    assert record.returncode == 0, record.stderr
    trace = load_trace(tmp_path / "mlp.nnxtrace")
    entry = trace.entry(2, "backward/2/weight.grad")
    entry.value = entry.value.copy()
    entry.value[0, 0] += 1e-4
    trace.save(tmp_path / "mlp.nnxtrace")
    done = _nnx("parity", "--against", "mlp.nnxtrace", "--backends", "numpy,array_api_strict", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == len(sample)
    for got, shown in zip(lines, sample):
        if "recorded on" in shown:  # the machine and version of the run
            got, shown = got.split(" (")[0], shown.split(" (")[0]
        assert got == shown


def test_a_replay_runs_on_the_selected_backend_or_the_given_models() -> None:
    _strict_available()
    path = TRACES / "seed001.nnxtrace"
    with nnx.use("array_api_strict"):
        assert check_trace(path).backends[1:] == ["array_api_strict"]
        assert check_trace(path, example("seed001", "float32").model).backends[1:] == ["numpy"]
