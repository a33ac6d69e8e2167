"""Everything for testing nnx models, usable in any project's tests.

* :func:`assert_close` / :func:`compare`: two arrays of any backends, judged on the host;
* :func:`gradcheck`: a layer's or loss's backward against float64 central differences;
* :func:`check_parity` / :func:`assert_parity`: one model trained on several
  backends, compared tensor by tensor (the example models ``nnx parity`` runs
  are in :mod:`nnx.testing.examples`);
* :func:`record_trace` / :func:`assert_matches_trace` / :func:`check_trace` /
  :func:`load_trace`: a training run recorded on one machine, replayed on another
  (:mod:`nnx.testing.trace`);
* :mod:`nnx.testing.plugin`: the pytest plugin (fixtures ``nnx_backend`` and
  ``nnx_trace``, marker ``nnx_backends``, options ``--nnx-backends`` and ``--nnx-record-traces``).
"""

from nnx.errors import ParityError
from nnx.testing.compare import Comparison, assert_close, compare
from nnx.testing.gradcheck import GradcheckResult, gradcheck
from nnx.testing.parity import ParityReport, TensorCheck, assert_parity, check_parity, clone_to
from nnx.testing.trace import Trace, TraceReport, assert_matches_trace, check_trace, load_trace, record_trace

__all__ = [
    "Comparison",
    "GradcheckResult",
    "ParityError",
    "ParityReport",
    "TensorCheck",
    "Trace",
    "TraceReport",
    "assert_close",
    "assert_matches_trace",
    "assert_parity",
    "check_parity",
    "check_trace",
    "clone_to",
    "compare",
    "gradcheck",
    "load_trace",
    "record_trace",
]
