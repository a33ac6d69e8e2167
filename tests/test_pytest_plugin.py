"""nnx's pytest plugin on a user's test file (run by pytest's own ``pytester``)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import nnx
from nnx import backend as nb

pytest_plugins = ["pytester"]
# Installed nnx loads the plugin through its entry point; a source tree on PYTHONPATH names it.
_INSTALLED = any(ep.value == "nnx.testing.plugin" for ep in entry_points(group="pytest11"))
PLUGIN = () if _INSTALLED else ("-p", "nnx.testing.plugin")

USER_TEST = """
import nnx
from nnx import backend as nb


def test_layer_runs_on(nnx_backend):
    assert nnx.current() == nnx_backend
    x = nnx.to_device([[1.0, -2.0]], dtype="float64")
    assert nb.backend_of(x) == nnx_backend
    assert nnx.to_host(nnx.ReLU().forward(x)).tolist() == [[1.0, 0.0]]
"""


def _split() -> tuple[list[str], dict[str, str]]:
    """Backends that run here, and those the plugin lists but skips (with their reasons)."""
    report = nnx.available()
    listed = {n: r for n, r in report.items() if r is None or nb.BACKENDS[n].tested_when_unavailable}
    return [n for n, r in listed.items() if r is None], {n: r for n, r in listed.items() if r is not None}



def test_backend_fixture_parametrises_a_user_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest_subprocess(*PLUGIN, "-v", "-rs")
    available, unavailable = _split()
    result.assert_outcomes(passed=len(available), skipped=len(unavailable))
    for name in available:
        result.stdout.fnmatch_lines([f"*test_layer_runs_on[[]{name}[]] PASSED*"])
    for name, reason in unavailable.items():
        result.stdout.fnmatch_lines([f"*backend '{name}' unavailable: {reason[:40]}*"])
    for name, reason in nnx.available().items():  # optional integrations: listed only where they run
        if reason is not None and not nb.BACKENDS[name].tested_when_unavailable:
            result.stdout.no_fnmatch_line(f"*test_layer_runs_on[[]{name}[]]*")


def test_marker_restricts_the_backends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n"
        + USER_TEST.replace("def test_layer", '@pytest.mark.nnx_backends("array_api_strict", "cupy")\ndef test_layer')
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-v")
    available, _ = _split()
    chosen = [n for n in nb.names() if n in ("array_api_strict", "cupy")]
    result.assert_outcomes(passed=sum(n in available for n in chosen),
                           skipped=sum(n not in available for n in chosen))
    assert "[numpy]" not in result.stdout.str()


def test_marker_with_an_unknown_backend_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n" + USER_TEST.replace(
        "def test_layer", '@pytest.mark.nnx_backends("numpy", "jax")\ndef test_layer'))
    result = pytester.runpytest_subprocess(*PLUGIN)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown nnx backend 'jax'*"])


def test_option_restricts_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest_subprocess(*PLUGIN, "-v", "--nnx-backends=numpy")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_layer_runs_on[[]numpy[]] PASSED*"])


def test_tests_without_the_fixture_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1)


def test_a_test_may_parametrise_nnx_backend_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n"
        + USER_TEST.replace("def test_layer", '@pytest.mark.parametrize("nnx_backend", ["numpy"], indirect=True)\n'
                            "def test_layer")
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_layer_runs_on[[]numpy[]] PASSED*"])


FOREIGN_CONFTEST = """
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): this project's own marker")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param
"""

FOREIGN_TEST = """
import pytest


@pytest.mark.backends("sqlite")
def test_uses_its_own_backend(backend):
    assert backend in ("sqlite", "postgres")


@pytest.mark.parametrize("backend", ["memory"])
def test_parametrises_its_own_backend(backend):
    assert backend == "memory"
"""


def test_a_project_with_its_own_backend_fixture_is_left_alone(pytester: pytest.Pytester) -> None:
    """A project whose fixture and marker are called ``backend(s)`` runs as if nnx were not installed."""
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(FOREIGN_TEST)
    with_nnx = pytester.runpytest_subprocess(*PLUGIN, "-v", "-p", "no:cacheprovider")
    without = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "-p", "no:nnx")
    with_nnx.assert_outcomes(passed=3)
    without.assert_outcomes(passed=3)

    def results(run: pytest.RunResult) -> list[str]:
        return sorted(line.split(" ")[0] for line in run.outlines if " PASSED" in line or " FAILED" in line)

    assert results(with_nnx) == results(without) == [
        "test_a_project_with_its_own_backend_fixture_is_left_alone.py::test_parametrises_its_own_backend[memory]",
        "test_a_project_with_its_own_backend_fixture_is_left_alone.py::test_uses_its_own_backend[postgres]",
        "test_a_project_with_its_own_backend_fixture_is_left_alone.py::test_uses_its_own_backend[sqlite]",
    ]
    if _INSTALLED:  # the comparison means something only if the first run did load nnx's plugin
        with_nnx.stdout.fnmatch_lines(["plugins:*nnx-array*"])
        assert "nnx-array" not in without.stdout.str()
