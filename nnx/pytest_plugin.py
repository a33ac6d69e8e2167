"""pytest plugin: run a test once per nnx backend, skipping those that cannot run here.

Installed with nnx (entry point ``pytest11``), it gives every project:

* the fixture ``backend``: a test that takes it runs once per backend nnx
  knows, with that backend selected (``nnx.use``) for the test's duration; a
  backend that cannot run on the machine is skipped with the reason
  ``nnx.available()`` gives, never faked (an optional integration such as
  torch, which nnx ships no extra for, is listed only where it can run);
* the marker ``@pytest.mark.backends("numpy", "cupy")``: restricts such a test
  to the named backends (an unknown name is a collection error);
* the option ``--nnx-backends=numpy,cupy``: restricts every such test run.

A test that parametrises ``backend`` itself (``@pytest.mark.parametrize``)
keeps its own list; the fixture still skips the unavailable ones.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from nnx import backend as _backend


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnx")
    group.addoption(
        "--nnx-backends",
        default=None,
        metavar="NAMES",
        help="comma-separated nnx backends that tests taking the 'backend' fixture run on "
        "(default: every backend nnx knows, unavailable ones skipped with the reason; "
        "torch only where installed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run a test that takes the nnx 'backend' fixture only on these backends",
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
    """Whether the test names its own backends with ``@pytest.mark.parametrize("backend", ...)``."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "backend" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or _parametrized_by_hand(metafunc):
        return
    report = _backend.available()
    names = [n for n in _backend.names()
             if report[n] is None or _backend.BACKENDS[n].tested_when_unavailable]
    option = metafunc.config.getoption("--nnx-backends")
    if option:
        chosen = _validated([n.strip() for n in option.split(",") if n.strip()], "--nnx-backends")
        names = [n for n in names if n in chosen]
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        wanted = _validated(list(marker.args), f"@pytest.mark.backends on {metafunc.definition.nodeid}")
        names = [n for n in names if n in wanted]
    metafunc.parametrize("backend", names, indirect=True, ids=names)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a backend that can run here, selected (``nnx.use``) for the test's duration."""
    name = getattr(request, "param", None)
    if name is None:
        name = _backend.current()
    reason = _backend.available()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    with _backend.use(name):
        yield name
