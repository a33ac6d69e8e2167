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


class ModelFileError(NnxError, ValueError):
    """A model or checkpoint file nnx cannot use; ``path`` and ``problem`` say which and why."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotAModelFileError(ModelFileError):
    """The path is no nnx file at all: missing, a directory, empty, a pickle, a zip or other format."""


class CorruptModelFileError(ModelFileError):
    """An nnx file whose bytes are damaged: truncated, flipped, or sizes that do not add up."""


class FormatVersionError(ModelFileError):
    """An nnx file written in a format version this nnx cannot read."""


class UnknownLayerError(ModelFileError):
    """A layer type that is not in nnx's allow-list of layer classes (``nnx.io.register_layer``)."""


class TensorMismatchError(ModelFileError):
    """Tensors that disagree with the architecture: missing, extra, or of the wrong shape or dtype."""


class NonFiniteError(NnxError, ValueError):
    """NaN where a finite array is needed (a loss's prediction or target, a network's input),
    or a training run whose loss or gradient stopped being finite."""


class ConfigError(NnxError, ValueError):
    """Arguments that do not fit together, such as an optimizer built for another model's parameters."""


class ArgumentError(NnxError, ValueError, TypeError):
    """An argument of the wrong kind or out of range: a float, bool or ``None`` where an integer
    belongs, a size below 1. Both a ``ValueError`` and a ``TypeError``, so either ``except`` catches it."""


class IndexRangeError(NnxError, ValueError):
    """An integer index outside the table it indexes (an Embedding's token id, say)."""


class TargetError(NnxError, ValueError):
    """A loss target that does not fit the prediction: a class index out of range, a wrong kind."""


class DataFormatError(NnxError, ValueError):
    """A data file that is not what its format promises: wrong magic number, truncated, bad rows."""


class ParityError(NnxError, AssertionError):
    """Two arrays (or two backends' training runs) that should agree do not."""


class DistributedError(NnxError, RuntimeError):
    """A data-parallel run that cannot go on: MPI missing, ranks that disagree (architecture,
    data, checkpoint), or a rank that stopped answering within the timeout."""


class OutputPathError(NnxError, ValueError):
    """An output path nnx will not write: an input of the same command, a directory, a device or
    FIFO, a missing or read-only folder (see :func:`nnx.io.check_output`)."""


class CheckpointInUseError(NnxError, RuntimeError):
    """A checkpoint directory that another running process holds (its lock file names the process)."""


class LayerTreeError(NnxError, TypeError):
    """Layers kept where the layer tree does not look (a plain list, tuple or dict attribute),
    so their weights would be neither trained nor saved; ``nnx.LayerList`` / ``nnx.LayerDict`` hold them."""


class ExportError(NnxError, ValueError):
    """A model ONNX export cannot record: the message names the layer and why."""
