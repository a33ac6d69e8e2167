"""pytest plugin: run a test once per nnx backend, skipping those that cannot run here.

Installed with nnx (entry point ``pytest11``), it is a guest in every project's
test run: everything it adds carries the ``nnx`` prefix, so a project with
its own ``backend`` fixture or marker runs as if nnx were not installed.

* the fixture ``nnx_backend``: a test that takes it runs once per backend nnx
  knows, with that backend selected (``nnx.use``) for the test's duration; a
  backend that cannot run on the machine is skipped with the reason
  ``nnx.available()`` gives, never faked (an optional integration such as
  torch, which nnx ships no extra for, is listed only where it can run);
* the marker ``@pytest.mark.nnx_backends("numpy", "cupy")``: restricts such a
  test to the named backends (an unknown name is a collection error);
* the option ``--nnx-backends=numpy,cupy``: restricts every such test run.

A test that parametrises ``nnx_backend`` itself (``@pytest.mark.parametrize``)
keeps its own list; the fixture still skips the unavailable ones.

* the fixture ``nnx_trace``: a function ``nnx_trace(model, loss, x, y, *, optimizer=None,
  steps=3, name=None, rtol=None, tolerances=None)`` that trains a copy of the model and
  compares every tensor with the trace stored for the test
  (``nnx_traces/<test file>/<test>[-<name>].nnxtrace`` beside the test file;
  :mod:`nnx.testing.trace`); a missing trace fails the test, naming the option that records it;
* the option ``--nnx-record-traces``: ``nnx_trace`` records the trace instead (once per test
  and run: a test run on several backends records on the first and compares the others).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from nnx import backend as _backend

FIXTURE = "nnx_backend"
MARKER = "nnx_backends"
TRACE_FIXTURE = "nnx_trace"
RECORD_OPTION = "--nnx-record-traces"
TRACE_FOLDER = "nnx_traces"
_recorded = pytest.StashKey[set]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnx")
    group.addoption(
        "--nnx-backends",
        default=None,
        metavar="NAMES",
        help="comma-separated nnx backends that tests taking the 'nnx_backend' fixture run on "
        "(default: every backend nnx knows, unavailable ones skipped with the reason; "
        "torch only where installed)",
    )
    group.addoption(
        RECORD_OPTION,
        action="store_true",
        default=False,
        help=f"tests taking the '{TRACE_FIXTURE}' fixture record their traces (under {TRACE_FOLDER}/ beside "
        "the test file) instead of comparing with them",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nnx_backends(*names): run a test that takes the 'nnx_backend' fixture only on these backends",
    )


def _validated(names: list[str], where: str) -> list[str]:
    known = _backend.names()
    for name in names:
        if name not in known:
            raise pytest.UsageError(
                f"{where} names unknown nnx backend {name!r}; valid names are: {', '.join(known)}"
            )
    return names


def _parametrized_by_hand(metafunc: pytest.Metafunc) -> bool:
    """Whether the test names its own backends with ``@pytest.mark.parametrize("nnx_backend", ...)``."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if FIXTURE in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if FIXTURE not in metafunc.fixturenames or _parametrized_by_hand(metafunc):
        return
    report = _backend.available()
    names = [n for n in _backend.names()
             if report[n] is None or _backend.BACKENDS[n].tested_when_unavailable]
    option = metafunc.config.getoption("--nnx-backends")
    if option:
        chosen = _validated([n.strip() for n in option.split(",") if n.strip()], "--nnx-backends")
        names = [n for n in names if n in chosen]
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is not None:
        wanted = _validated(list(marker.args), f"@pytest.mark.{MARKER} on {metafunc.definition.nodeid}")
        names = [n for n in names if n in wanted]
    metafunc.parametrize(FIXTURE, names, indirect=True, ids=names)


@pytest.fixture
def nnx_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a backend that can run here, selected (``nnx.use``) for the test's duration."""
    name = getattr(request, "param", None)
    if name is None:
        name = _backend.current()
    reason = _backend.available()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    with _backend.use(name):
        yield name


def _trace_path(request: pytest.FixtureRequest, name: str | None) -> Path:
    """Where the test's trace lives: its name and its parameters other than the backend."""
    from nnx.testing.trace import SUFFIX

    node = request.node
    parts = [getattr(node, "originalname", node.name)]
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        parts += [f"{key}={value}" for key, value in sorted(callspec.params.items()) if key != FIXTURE]
    if name:
        parts.append(name)
    stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(parts))[:150]
    return request.path.parent / TRACE_FOLDER / request.path.stem / f"{stem}{SUFFIX}"


@pytest.fixture
def nnx_trace(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Compare a short training run with the test's stored trace (record it with --nnx-record-traces)."""
    from nnx.testing.trace import assert_matches_trace, record_trace

    def check(model: Any, loss: Any, x: Any, y: Any, *, optimizer: Any = None, steps: int = 3,
              name: str | None = None, rtol: float | None = None, tolerances: Any = None) -> Any:
        path = _trace_path(request, name)
        recorded = request.config.stash.setdefault(_recorded, set())
        if request.config.getoption(RECORD_OPTION) and path not in recorded:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorded.add(path)
            return record_trace(model, loss, x, y, optimizer=optimizer, steps=steps).save(path)
        if not path.exists():
            pytest.fail(f"no trace for this test at {path}; record it with pytest {RECORD_OPTION}", pytrace=False)
        return assert_matches_trace(model, path, optimizer=optimizer, rtol=rtol, tolerances=tolerances)

    return check
