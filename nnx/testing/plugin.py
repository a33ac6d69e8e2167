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
"""

from __future__ import annotations

from typing import Iterator

import pytest

from nnx import backend as _backend

FIXTURE = "nnx_backend"
MARKER = "nnx_backends"


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
