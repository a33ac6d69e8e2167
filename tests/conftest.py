"""Shared test setup.

The ``backend`` fixture (one run per backend, unavailable ones skipped with the
reason) and the ``@pytest.mark.backends(...)`` marker come from nnx's own
pytest plugin, :mod:`nnx.pytest_plugin`, installed with the package.
"""
