"""Shared test setup.

The ``nnx_backend`` fixture (one run per backend, unavailable ones skipped with
the reason) and the ``@pytest.mark.nnx_backends(...)`` marker come from nnx's
own pytest plugin, :mod:`nnx.testing.plugin`. Installing nnx registers it
(entry point ``pytest11``); when the tests run from a source tree that is only
on ``PYTHONPATH``, it is loaded here instead.
"""

from importlib.metadata import entry_points
from typing import Iterator

import pytest

from nnx import backend as _backend

_INSTALLED = any(ep.value == "nnx.testing.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _INSTALLED else ["nnx.testing.plugin"]


@pytest.fixture(autouse=True)
def _restore_the_process_backend() -> Iterator[None]:
    """A test that runs the ``nnx`` command in this process selects its backend for the whole process
    (a plain ``nnx.use``); put the selection back so later tests see the default."""
    saved = _backend._process_choice[0], _backend._selected.get()
    yield
    _backend._process_choice[0] = saved[0]
    _backend._selected.set(saved[1])
