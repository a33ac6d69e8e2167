"""Export a model to ONNX by running its own forward on ndonnx arrays.

ndonnx is an array-API library whose arrays record an ONNX graph instead of
computing. nnx's layers are written against the array API, so the model's
evaluation-mode ``forward``, run once on an ndonnx input, *is* the graph: no
layer has a second implementation for export. The parameters and buffers
enter the trace as named graph inputs and leave it as ONNX initializers of the
same dotted names (``0.weight``). Checks that must read values (finite
inputs, index ranges) are skipped while tracing through the backend record's
``holds_values`` switch (:data:`nnx.backend.registry.NDONNX`); checks of shapes
and dtypes run as always.

The only module besides :mod:`nnx.backend.registry` that imports ndonnx (and
onnx); both come with the optional extra, from a clone of the repository:
``pip install '.[onnx]'``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from nnx import backend as _backend
from nnx.paths import atomic_write, check_output
from nnx.backend.registry import NDONNX
from nnx.errors import BackendUnavailableError, DTypeError, ExportError, ShapeError, StateError
from nnx.layers.base import Layer
from nnx.layers.preprocess import ClassLabels

#: the float dtypes a model exports in (onnxruntime runs both on the CPU)
DTYPES = ("float32", "float64")
INPUT = "input"
OUTPUT = "output"
LABEL = "label"
MASK = "key_padding_mask"


def export_onnx(model: Layer, path: str | os.PathLike[str], input_shape: Sequence[int | None] | None = None,
                dtype: str | None = None, *, key_padding_mask: bool = False,
                inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write ``model``'s evaluation-mode forward as an ONNX model at ``path``; returns the path.

    Parameters
    ----------
    model : a layer or container in evaluation mode (``model.eval()``), on any backend.
    path : the ``.onnx`` file to write (atomically; never one of ``inputs``).
    input_shape : the input's shape with ``None`` for each dynamic axis, e.g. ``(None, 784)``, or
        ``(None, 20, 4)`` for an LSTM over 20 steps (unrolled: the length is fixed); a length may be
        dynamic too where no layer needs it as a number (``(None, None, 8)`` for Linear and LayerNorm per
        position). Default: the shape the first layer fixes (:meth:`~nnx.Layer.fixed_input_shape`) with a
        dynamic batch axis.
    dtype : ``"float32"`` or ``"float64"`` (default: the parameters' dtype); the parameters are cast to it.
    key_padding_mask : for a model whose ``forward`` takes ``key_padding_mask`` (a ``TransformerBlock``, an
        attention model of one's own): a second graph input of that name, boolean ``(batch, seq)``, True
        where a key is padding, passed to every call. A causal mask needs nothing: it is part of the config.
    inputs : files the caller read (the model file), which ``path`` must not be.

    The graph has one input ``input`` (indices as int64 for a model that starts with an Embedding),
    one output ``output`` (what ``forward`` returns; ``output0``, ``output1``, ... for a tuple, such as an
    LSTMCell's ``(h, c)``) and, for a model ending in
    :class:`~nnx.ClassLabels`, a second output ``label``: the label of the highest output per row.

    Raises
    ------
    StateError : the model is in training mode. ShapeError : ``input_shape`` does not fit the model.
    DTypeError : a dtype ONNX export does not take. OutputPathError : ``path`` may not be written.
    BackendUnavailableError : the ONNX extra is not installed. ExportError : a layer cannot be traced.
    """
    target = check_output(path, inputs=inputs, what="the ONNX file")
    proto = to_onnx(model, input_shape, dtype, key_padding_mask=key_padding_mask)
    atomic_write(target, [proto.SerializeToString()])
    return target


def to_onnx(model: Layer, input_shape: Sequence[int | None] | None = None, dtype: str | None = None, *,
          key_padding_mask: bool = False) -> Any:
    """The checked ``onnx.ModelProto`` of ``model`` (see :func:`export_onnx`), written nowhere."""
    _require_extra()
    import ndonnx as ndx
    import onnx

    _check_mode(model)
    if key_padding_mask and MASK not in inspect.signature(model.forward).parameters:
        raise ExportError(f"key_padding_mask=True passes a mask to the model's forward, but "
                          f"{type(model).__name__}.forward takes no key_padding_mask; export the layer that "
                          f"takes it (a TransformerBlock, an attention model of your own), or leave it False")
    dtype = _check_dtype(model, dtype)
    shape = _check_shape(model, input_shape)
    indices = bool(getattr(_first_leaf(model), "takes_indices", False))
    copy = _host_copy(model, dtype)
    state = {name: _backend.to_host(value) for name, value in copy.state_dict().items()}
    with _tracing():
        graph_inputs = {name: ndx.argument(shape=value.shape, dtype=ndx.from_numpy_dtype(value.dtype))
                        for name, value in state.items()}
        copy.to(NDONNX.name)  # layers that remember their arrays' backend learn it is ndonnx
        _install(copy, graph_inputs)
        x = ndx.argument(shape=shape, dtype=ndx.int64 if indices else getattr(ndx, dtype))
        masks = {MASK: ndx.argument(shape=shape[:2], dtype=ndx.bool)} if key_padding_mask else {}
        with copy.inference():
            try:
                y = copy.forward(x, **masks)
            except ShapeError as exc:  # the layer says what it expected; say which layer it is
                raise ShapeError(f"{_failing_layer(copy, exc)}: {exc}") from None
            except (StateError, DTypeError):
                raise
            except Exception as exc:
                raise ExportError(f"{_failing_layer(copy, exc)} cannot be exported to ONNX: its forward does "
                                  f"something an ONNX graph cannot record ({type(exc).__name__}: {exc}); ndonnx "
                                  f"traces only array-API operations, not host reads of values") from exc
        outputs = {f"{OUTPUT}{i}": part for i, part in enumerate(y)} if isinstance(y, tuple) else {OUTPUT: y}
        labels = _labels(copy)
        if labels is not None:
            outputs[LABEL] = ndx.take(ndx.asarray(labels), ndx.argmax(y, axis=-1))
        proto = ndx.build({INPUT: x, **masks, **graph_inputs}, outputs)
    proto = _inputs_to_initializers(proto, state)
    _name_axes(proto)
    _describe(proto, model)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _require_extra() -> None:
    reason = NDONNX.probe()
    if reason is not None:
        raise BackendUnavailableError(f"ONNX export needs ndonnx and onnx: {reason}")
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(f"ONNX export needs onnx ({exc}); {NDONNX.install_hint}") from None


def _check_mode(model: Layer) -> None:
    training = [path or type(layer).__name__ for path, layer in model.named_modules() if layer.training]
    if training:
        raise StateError(f"export_onnx exports the evaluation-mode forward, but {len(training)} layer(s) are in "
                         f"training mode (first: {training[0]!r}); call model.eval() before exporting")


def _check_dtype(model: Layer, dtype: str | None) -> str:
    params = [p.data for p in model.parameters()] + [b for _, b in model.named_buffers()]
    floats = sorted({_backend.dtype_name(a) for a in params if _backend.dtype_name(a).startswith("float")})
    if dtype is None:
        dtype = floats[0] if len(floats) == 1 else "float32"
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DTypeError(f"export_onnx exports float32 or float64, got dtype {_backend.dtype_label(dtype)}; "
                         f"pass dtype='float32' (or 'float64')")
    return dtype


def _check_shape(model: Layer, input_shape: Sequence[int | None] | None) -> tuple[int | None, ...]:
    if input_shape is None:
        input_shape = model.fixed_input_shape()
        if input_shape is None:
            raise ShapeError(f"export_onnx of this {type(model).__name__} needs input_shape: its first layer "
                             f"fixes none; pass it with None for each dynamic axis, e.g. (None, 1, 28, 28) "
                             f"for images or (None, 20, 4) for sequences of 20 steps")
    shape = tuple(input_shape)
    if not shape or any(d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1)
                        for d in shape):
        raise ShapeError(f"export_onnx input_shape must be positive ints and None (a dynamic axis), "
                         f"got {shape!r}; e.g. (None, 784)")
    for size in (2, 3):  # two sizes for the dynamic axes: a shape that fits by accident at one is rare at two
        concrete = tuple(size if d is None else d for d in shape)
        try:
            model.output_shape(concrete)
        except ShapeError as exc:
            raise ShapeError(f"export_onnx input_shape {shape!r} does not fit the model (tried {concrete}): "
                             f"{exc}") from None
    return shape


def _name_axes(proto: Any) -> None:
    """Name the graph inputs' dynamic axes (``batch``, then ``axis1``, ...) so a reader sees which they are
    (ndonnx's arrays have ``None`` there while tracing, as the array API says an unknown size is)."""
    for value in proto.graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = "batch" if i == 0 else f"axis{i}"


def _describe(proto: Any, model: Layer) -> None:
    """Who wrote the file, and the input columns' names where the model keeps them (a ``Standardize``
    fitted on a CSV file with a header), as metadata ``input_names`` (a JSON list), so a server can
    order a table's columns as the model expects."""
    from nnx import __version__

    proto.producer_name, proto.producer_version = "nnx", __version__
    names = getattr(_first_leaf(model), "names", None)
    if names:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "input_names", json.dumps(list(names))


def _first_leaf(model: Layer) -> Layer:
    layer = model
    while layer.children():
        layer = layer.children()[0]
    return layer


def _host_copy(model: Layer, dtype: str) -> Layer:
    """A copy of ``model`` on numpy in ``dtype`` (the model itself is never changed)."""
    from nnx.testing.parity import clone_to

    return clone_to(model, "numpy").to(dtype=dtype)


def _install(model: Layer, arrays: dict[str, Any]) -> None:
    """Put the traced arrays in place of the copy's parameters and buffers (by dotted name)."""
    params = dict(model.named_parameters())
    for name, value in arrays.items():
        if name in params:
            params[name].data = value
        else:
            path, _, attr = name.rpartition(".")
            setattr(model.get_submodule(path) if path else model, attr, value)


@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    """The ndonnx record registered (so nnx knows its arrays hold no values) and plain matrix products,
    for the block only.

    ndonnx wraps each product in an ONNX ``If`` that answers empty operands itself, against an old
    onnxruntime bug; the ``If`` hides the product's shape from ONNX shape inference (nnx's layers check the
    sizes they are given: ``Linear`` its input's last axis) and adds about 170 nodes per product. The
    onnxruntime the extra requires multiplies empty operands correctly (``test_export.py`` runs a batch of 0).
    """
    from ndonnx._typed_array import onnx as typed

    known = _backend.BACKENDS.get(NDONNX.name)
    product = typed._matmul_mitigate_zero_sized
    _backend.register(NDONNX)
    typed._matmul_mitigate_zero_sized = lambda a, b: type(a)(typed.op.matmul(a._var, b._var))
    try:
        yield
    finally:
        typed._matmul_mitigate_zero_sized = product
        if known is None:
            _backend.unregister(NDONNX.name)


def _labels(model: Layer) -> np.ndarray | None:
    """The class table of a model whose last layer is ClassLabels (ints or strings, not mixed)."""
    last = model
    while last.children():
        last = last.children()[-1]
    if not isinstance(last, ClassLabels):
        return None
    kinds = {type(v) for v in last.labels}
    if len(kinds) != 1:
        raise ExportError(f"{last!r}: ONNX tensors hold one type, but the labels mix "
                          f"{sorted(k.__name__ for k in kinds)}; the export would have no 'label' output. "
                          f"Rebuild the labels as all strings")
    return np.asarray(last.labels, dtype=str if str in kinds else np.int64)


def _failing_layer(model: Layer, exc: Exception) -> str:
    """The innermost layer whose forward was running when ``exc`` was raised (its repr's first line)."""
    name = type(model).__name__
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Layer):
            name = repr(owner).split("\n")[0]
        tb = tb.tb_next
    return name


def _inputs_to_initializers(proto: Any, state: dict[str, np.ndarray]) -> Any:
    """The parameters' graph inputs turned into initializers holding their values."""
    from onnx import numpy_helper

    graph = proto.graph
    keep = [i for i in graph.input if i.name not in state]
    used = [i.name for i in graph.input if i.name in state]
    del graph.input[:]
    graph.input.extend(keep)
    graph.initializer.extend(numpy_helper.from_array(state[name], name) for name in used)
    return proto


__all__ = ["DTYPES", "export_onnx", "to_onnx"]
