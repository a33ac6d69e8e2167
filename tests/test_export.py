"""ONNX export (nnx.export_onnx, nnx export): every example model and a model trained by ``nnx train`` on a
CSV file become ONNX files that pass onnx's checker and that onnxruntime runs to nnx's outputs (float32 within
1e-5 relative, float64 within 1e-12 where onnxruntime runs float64), on held-out inputs of several batch sizes;
bad input is refused with an nnx error and nothing written."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx import cli
from nnx import random as _random
from nnx.errors import DTypeError, ExportError, OutputPathError, ShapeError, StateError
from nnx.testing import assert_close
from nnx.testing.examples import EXAMPLES, example

_EXTRA = "the ONNX extra is not installed: pip install 'nnx-array[onnx]'"
pytest.importorskip("ndonnx", reason=_EXTRA)
onnx = pytest.importorskip("onnx", reason=_EXTRA)
ort = pytest.importorskip("onnxruntime", reason=_EXTRA)

# The examples' input shapes: the batch dynamic; sequence models fixed in length (LSTM/GRU unroll over it,
# learned positions and attention's causal mask need it as a number).
SHAPES = {"cnn": (None, 1, 8, 8), "rnn": (None, 5, 4), "tiny_gpt": (None, 6)}
BATCHES = (1, 5, 33)  # none of them a size the trace saw: it saw only a symbolic batch


def _session(path, skip_unsupported: bool = False):
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime lacks a kernel for this dtype (float64 of some operators)
        if skip_unsupported and "NOT_IMPLEMENTED" in str(exc):
            pytest.skip(f"onnxruntime has no kernel for this graph: {str(exc)[:300]}")
        raise


def _trained(name: str, dtype: str):
    """The example after one training-mode forward (batch norms hold running statistics other than 0 and 1),
    in evaluation mode."""
    case = example(name, dtype)
    case.model.forward(case.x)
    case.model.drop_saved()
    return case.model.eval()


def _held_out(model, shape, batch: int, rng, dtype: str):
    """Inputs of ``shape`` (its first axis ``batch``, other dynamic axes 3): token ids for a model that starts
    with an Embedding, else standard normal values."""
    sizes = (batch, *(3 if d is None else d for d in shape[1:]))
    first = model
    while first.children():
        first = first.children()[0]
    if getattr(first, "takes_indices", False):
        return nnx.to_device(rng.integers(0, first.num_embeddings, sizes), "numpy", "int64")
    return nnx.to_device(_random.normal(rng, sizes, 0.0, 1.0), "numpy", dtype)


def _agree(model, path, dtype: str, shape, batches=BATCHES, seed: int = 100) -> None:
    session = _session(path, skip_unsupported=dtype == "float64")
    rng = _random.make_rng(seed)  # not the examples' seeds: held-out inputs
    for batch in batches:
        x = _held_out(model, shape, batch, rng, dtype)
        with model.inference():
            expected = model.forward(x)
        (got,) = session.run(["output"], {"input": np.asarray(x)})
        assert got.shape == tuple(expected.shape)
        assert_close(got, expected, name=f"onnxruntime output at batch {batch}")


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_example_models_export_and_agree(name, dtype, tmp_path):
    model = _trained(name, dtype)
    path = nnx.export_onnx(model, tmp_path / f"{name}.onnx", SHAPES.get(name), dtype)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    names = {p for p, _ in model.named_parameters()}
    assert names <= {t.name for t in proto.graph.initializer}  # parameters are initializers, not inputs
    assert [i.name for i in proto.graph.input] == ["input"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    _agree(model, path, dtype, SHAPES.get(name) or model.fixed_input_shape())


def test_dynamic_sequence_axis(tmp_path):
    """A per-position model exports with batch and length dynamic; lengths the trace never saw agree."""
    model = nnx.Sequential(nnx.Linear(4, 8, seed=0), nnx.GELU(), nnx.LayerNorm(8), nnx.Linear(8, 3, seed=1)).eval()
    path = nnx.export_onnx(model, tmp_path / "tokens.onnx", (None, None, 4))
    session = _session(path)
    rng = _random.make_rng(1)
    for shape in ((1, 1, 4), (3, 7, 4), (2, 40, 4)):
        x = nnx.to_device(_random.normal(rng, shape, 0.0, 1.0), "numpy", "float32")
        with model.inference():
            expected = model.forward(x)
        assert_close(session.run(None, {"input": x})[0], expected)


def test_transformer_block_with_key_padding_mask(tmp_path):
    """The mask is a second graph input; rows padded differently agree, a fully padded row gives what nnx gives."""
    block = nnx.TransformerBlock(8, 2, hidden_dim=16, seed=3, dtype="float32", backend="numpy").eval()
    path = nnx.export_onnx(block, tmp_path / "block.onnx", (None, 7, 8), key_padding_mask=True)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["input", "key_padding_mask"]
    rng = _random.make_rng(2)
    for batch in (1, 4):
        x = nnx.to_device(_random.normal(rng, (batch, 7, 8), 0.0, 1.0), "numpy", "float32")
        mask = np.arange(7)[None, :] >= rng.integers(0, 8, (batch, 1))  # lengths 0..7: 0 pads the whole row
        with block.inference():
            expected = block.forward(x, key_padding_mask=nnx.to_device(mask, "numpy"))
        got = session.run(None, {"input": x, "key_padding_mask": mask})[0]
        assert_close(got, expected)


def test_residual_and_sinusoidal_positions(tmp_path):
    f = {"dtype": "float32", "backend": "numpy"}
    model = nnx.Sequential(
        nnx.Linear(3, 8, seed=0, **f),
        nnx.Residual(nnx.Sequential(nnx.Linear(8, 8, seed=1, **f), nnx.Tanh())),
        nnx.SinusoidalPositions(8), nnx.Mean(1), nnx.Linear(8, 2, seed=4, **f), nnx.Softmax()).eval()
    path = nnx.export_onnx(model, tmp_path / "res.onnx", (None, 6, 3))
    _agree(model, path, "float32", (None, 6, 3))
