"""Everything for testing nnx models, usable in any project's tests.

* :func:`assert_close` / :func:`compare`: two arrays of any backends, judged on the host;
* :func:`gradcheck`: a layer's or loss's backward against float64 central differences;
* :func:`check_parity` / :func:`assert_parity`: one model trained on several
  backends, compared tensor by tensor (the example models ``nnx parity`` runs
  are in :mod:`nnx.testing.examples`);
* :mod:`nnx.testing.plugin`: the pytest plugin (fixture ``nnx_backend``,
  marker ``nnx_backends``, option ``--nnx-backends``).
"""

from nnx.errors import ParityError
from nnx.testing.compare import Comparison, assert_close, compare
from nnx.testing.gradcheck import GradcheckResult, gradcheck
from nnx.testing.parity import ParityReport, TensorCheck, assert_parity, check_parity, clone_to

__all__ = [
    "Comparison",
    "GradcheckResult",
    "ParityError",
    "ParityReport",
    "TensorCheck",
    "assert_close",
    "assert_parity",
    "check_parity",
    "clone_to",
    "compare",
    "gradcheck",
]
