"""The exceptions nnx raises.

Every error says what was expected, what came, and how to fix it. Each class
subclasses the built-in exception a caller would naturally catch
(``ValueError`` for bad values and shapes, ``TypeError`` for wrong types and
dtypes), plus :class:`NnxError` so that ``except nnx.NnxError`` catches them all.
"""

from __future__ import annotations


class NnxError(Exception):
    """Base class of every nnx error."""


class UnknownBackendError(NnxError, ValueError):
    """A backend name that nnx does not know."""


class BackendUnavailableError(NnxError, RuntimeError):
    """A known backend that cannot run on this machine (the reason is in the message)."""


class BackendMismatchError(NnxError, TypeError):
    """Arrays from two backends met in one computation; nnx never moves data implicitly."""


class ShapeError(NnxError, ValueError):
    """An array whose shape does not fit the layer, loss or optimizer."""


class DTypeError(NnxError, TypeError):
    """An array of the wrong dtype (integer where float is needed, or a float32/float64 mix)."""


class StateError(NnxError, RuntimeError):
    """A call out of order, such as ``backward`` without a ``forward`` before it."""


class NonFiniteError(NnxError, ValueError):
    """NaN where a finite array is needed (a loss's prediction or target, a network's input),
    or a training run whose loss or gradient stopped being finite."""


class TargetError(NnxError, ValueError):
    """A loss target that does not fit the prediction: a class index out of range, a wrong kind."""


class DataFormatError(NnxError, ValueError):
    """A data file that is not what its format promises: wrong magic number, truncated, bad rows."""


class ParityError(NnxError, AssertionError):
    """Two arrays (or two backends' training runs) that should agree do not."""
