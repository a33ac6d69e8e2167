"""Shared test setup.

The ``backend`` fixture (one run per backend, unavailable ones skipped with the
reason) and the ``@pytest.mark.backends(...)`` marker come from nnx's own
pytest plugin, :mod:`nnx.pytest_plugin`. Installing nnx registers it (entry
point ``pytest11``, under the same name); naming it here also loads it when
the tests run from a source tree that is only on ``PYTHONPATH``.
"""

pytest_plugins = ["nnx.pytest_plugin"]
