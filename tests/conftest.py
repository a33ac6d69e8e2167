"""Shared fixtures: every test that takes ``backend`` runs once per known backend.

A backend that cannot run here is skipped with the reason ``available()`` gives.
"""

from __future__ import annotations

import pytest

import nnx
from nnx import backend as nb


@pytest.fixture(params=nb.names())
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend that can run here, selected for the test's duration."""
    name = request.param
    reason = nb.available()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    with nnx.use(name):
        yield name
