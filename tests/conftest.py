"""Shared test setup.

The ``nnx_backend`` fixture (one run per backend, unavailable ones skipped with
the reason) and the ``@pytest.mark.nnx_backends(...)`` marker come from nnx's
own pytest plugin, :mod:`nnx.testing.plugin`. Installing nnx registers it
(entry point ``pytest11``); when the tests run from a source tree that is only
on ``PYTHONPATH``, it is loaded here instead.
"""

from importlib.metadata import entry_points

_INSTALLED = any(ep.value == "nnx.testing.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _INSTALLED else ["nnx.testing.plugin"]
