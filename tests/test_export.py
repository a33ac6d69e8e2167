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
from nnx.testing.examples import EXAMPLES, example, held_out_like

_EXTRA = "the ONNX extra is not installed: pip install '.[onnx]'"
pytest.importorskip("ndonnx", reason=_EXTRA)
onnx = pytest.importorskip("onnx", reason=_EXTRA)
ort = pytest.importorskip("onnxruntime", reason=_EXTRA)

BATCHES = (1, 5, 33)  # none of them a size the trace saw: it saw only a symbolic batch


def _session(path, skip_unsupported: bool = False):
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime lacks a kernel for this dtype (float64 of some operators)
        if skip_unsupported and "NOT_IMPLEMENTED" in str(exc):
            pytest.skip(f"onnxruntime has no kernel for this graph: {str(exc)[:300]}")
        raise


def _held_out(shape, batch: int, rng):
    """Inputs of ``shape`` (its first axis ``batch``, other dynamic axes 3), standard normal values."""
    sizes = (batch, *(3 if d is None else d for d in shape[1:]))
    return nnx.to_device(_random.normal(rng, sizes, 0.0, 1.0), "numpy", "float32")


def _agree(model, path, shape) -> None:
    session = _session(path)
    rng = _random.make_rng(100)
    for batch in BATCHES:
        x = _held_out(shape, batch, rng)
        with model.inference():
            expected = model.forward(x)
        assert_close(session.run(None, {"input": x})[0], expected, name=f"onnxruntime output at batch {batch}")


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_example_models_export_and_agree(name, dtype, tmp_path):
    """The batch axis dynamic, the rest as in the example's data (sequence models fixed in length: LSTM/GRU
    unroll over it, learned positions and the causal mask need it as a number)."""
    case = example(name, dtype)
    case.model.forward(case.x)  # batch norms now hold running statistics other than 0 and 1
    case.model.drop_saved()
    model = case.model.eval()
    path = nnx.export_onnx(model, tmp_path / f"{name}.onnx", (None, *case.x.shape[1:]), dtype)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    names = {p for p, _ in model.named_parameters()}
    assert names <= {t.name for t in proto.graph.initializer}  # parameters are initializers, not inputs
    assert [i.name for i in proto.graph.input] == ["input"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = _session(path, skip_unsupported=dtype == "float64")
    rng = _random.make_rng(100)  # not the examples' seeds: held-out inputs
    for batch in BATCHES:
        x = held_out_like(case.x, batch, rng)
        with model.inference():
            expected = model.forward(x)
        (got,) = session.run(["output"], {"input": np.asarray(x)})
        assert got.shape == tuple(expected.shape)
        assert_close(got, expected, name=f"onnxruntime output at batch {batch}")


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


def _families():
    """Layer families the example models leave out, each in a small model, with its input shape."""
    f = {"dtype": "float32", "backend": "numpy"}
    return {
        "conv1d": (nnx.Sequential(nnx.Conv1d(3, 4, 3, padding=1, seed=0, **f), nnx.LeakyReLU(0.1),
                                  nnx.Flatten(), nnx.Linear(40, 2, seed=1, **f)), (None, 3, 10)),
        "global_pool": (nnx.Sequential(nnx.Conv2d(2, 4, 3, stride=2, seed=0, **f), nnx.GlobalAvgPool2d(),
                                       nnx.Linear(4, 3, seed=1, **f), nnx.Softmax()), (None, 2, 9, 9)),
        "reshape_mean": (nnx.Sequential(nnx.Linear(6, 12, seed=0, **f), nnx.Reshape((3, 4)), nnx.Mean(1),
                                        nnx.Sigmoid()), (None, 6)),
        "attention": (nnx.MultiHeadAttention(8, 2, seed=0, **f), (None, 5, 8)),
        "lstm_sequences": (nnx.Sequential(nnx.LSTM(4, 6, num_layers=2, seed=0, **f), nnx.Linear(6, 2, seed=1, **f)),
                           (None, 4, 4)),
        "silu_rmsnorm": (nnx.Sequential(nnx.Linear(4, 8, seed=0, **f), nnx.SiLU(), nnx.RMSNorm(8, **f),
                                        nnx.Linear(8, 2, seed=1, **f)), (None, 4)),
        "gru_cell": (nnx.GRUCell(4, 5, seed=0, **f), (None, 4)),
        "lstm_cell": (nnx.LSTMCell(4, 5, seed=0, **f), (None, 4)),
    }


@pytest.mark.parametrize("family", list(_families()))
def test_every_layer_family_exports(family, tmp_path):
    model, shape = _families()[family]
    model.eval()
    path = nnx.export_onnx(model, tmp_path / f"{family}.onnx", shape)
    session = _session(path)
    rng = _random.make_rng(7)
    for batch in BATCHES:
        x = _held_out(shape, batch, rng)
        with model.inference():
            expected = model.forward(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {"input": x})
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_close(g, e, name=f"{family} at batch {batch}")


def test_an_empty_batch(tmp_path):
    """Products of empty operands: ndonnx guards them with an If that the export leaves out (see _tracing)."""
    model = example("mlp", "float32").model.eval()
    session = _session(nnx.export_onnx(model, tmp_path / "mlp.onnx"))
    assert session.run(None, {"input": np.zeros((0, 8), np.float32)})[0].shape == (0, 4)


def test_residual_and_sinusoidal_positions(tmp_path):
    f = {"dtype": "float32", "backend": "numpy"}
    model = nnx.Sequential(
        nnx.Linear(3, 8, seed=0, **f),
        nnx.Residual(nnx.Sequential(nnx.Linear(8, 8, seed=1, **f), nnx.Tanh())),
        nnx.SinusoidalPositions(8), nnx.Mean(1), nnx.Linear(8, 2, seed=4, **f), nnx.Softmax()).eval()
    path = nnx.export_onnx(model, tmp_path / "res.onnx", (None, 6, 3))
    _agree(model, path, (None, 6, 3))


def _table(path, rng, rows: int = 120, regression: bool = False) -> None:
    x = _random.normal(rng, (rows, 4), 0.0, 1.0)
    if regression:
        labels = [f"{v:.4f}" for v in 3.0 * x[:, 0] - x[:, 2] + 10.0]
    else:
        labels = ["yes" if a + b > 0 else "maybe" if c > 0 else "no" for a, b, c, _ in x]
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.4f}" for v in r) + f",{t}" for r, t in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n")


def test_tabular_model_trained_by_nnx_train_exports_with_its_labels(tmp_path, capsys):
    """Standardize first, ClassLabels last: the graph's 'label' output is nnx.predict_classes's answer."""
    rng = _random.make_rng(5)
    _table(tmp_path / "t.csv", rng)
    assert cli.main(["train", str(tmp_path / "t.csv"), "--epochs", "3", "--save", str(tmp_path / "m.nnx"),
                     "--quiet"]) == 0
    assert cli.main(["export", str(tmp_path / "m.nnx"), str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    model = nnx.load(tmp_path / "m.nnx", backend="numpy").eval()
    assert isinstance(model[0], nnx.preprocessing.Standardize) and isinstance(model[-1], nnx.preprocessing.ClassLabels)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.producer_name == "nnx"
    assert {p.key: p.value for p in proto.metadata_props}["input_names"] == '["a", "b", "c", "d"]'

    session = _session(tmp_path / "m.onnx")
    assert [o.name for o in session.get_outputs()] == ["output", "label"]
    for batch in (1, 7, 50):
        x = _held_out((None, 4), batch, rng)
        scores, labels = session.run(None, {"input": x})
        with model.inference():
            assert_close(scores, model.forward(x))
        assert labels.tolist() == nnx.predict_classes(model, x).tolist()


def test_regression_model_trained_by_nnx_train_answers_in_the_targets_units(tmp_path):
    rng = _random.make_rng(6)
    _table(tmp_path / "r.csv", rng, regression=True)
    assert cli.main(["train", str(tmp_path / "r.csv"), "--task", "regression", "--epochs", "3",
                     "--save", str(tmp_path / "r.nnx"), "--quiet"]) == 0
    assert cli.main(["export", str(tmp_path / "r.nnx"), str(tmp_path / "r.onnx")]) == 0
    model = nnx.load(tmp_path / "r.nnx", backend="numpy").eval()
    session = _session(tmp_path / "r.onnx")
    x = _held_out((None, 4), 9, rng)
    with model.inference():
        assert_close(session.run(None, {"input": x})[0], model.forward(x))


def test_export_leaves_the_model_as_it_was(tmp_path):
    case = example("classifier", "float32")
    model = case.model.eval()
    before = {k: nnx.to_host(v) for k, v in model.state_dict().items()}
    nnx.export_onnx(model, tmp_path / "c.onnx", dtype="float64")
    for k, v in model.state_dict().items():
        assert nnx.backend.backend_of(v) == "numpy" and np.array_equal(nnx.to_host(v), before[k]), k
    assert "ndonnx" not in nnx.backend.names()  # the tracing record is gone after the export
    with model.inference():
        model.forward(case.x)  # finite checks and the rest work as before


def _existing(tmp_path):
    out = tmp_path / "old.onnx"
    out.write_bytes(b"previous contents")
    return out


@pytest.mark.parametrize("problem, error, words", [
    ("training", StateError, "model.eval()"),
    ("shape", ShapeError, "does not fit"),
    ("float16", DTypeError, "float32 or float64"),
    ("int32", DTypeError, "float32 or float64"),
    ("bad sizes", ShapeError, "positive ints and None"),
])
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, problem, error, words):
    model = example("mlp", "float32").model
    if problem != "training":
        model.eval()
    out = _existing(tmp_path)
    kwargs = {"training": {}, "shape": {"input_shape": (None, 9)}, "float16": {"dtype": "float16"},
              "int32": {"dtype": "int32"}, "bad sizes": {"input_shape": (None, 0)}}[problem]
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        nnx.export_onnx(model, out, **kwargs)
    assert out.read_bytes() == b"previous contents"


def test_output_path_that_is_an_input_is_refused(tmp_path, capsys):
    model = example("mlp", "float32").model.eval()
    nnx.save(model, tmp_path / "m.nnx")
    before = (tmp_path / "m.nnx").read_bytes()
    with pytest.raises(OutputPathError, match="input"):
        nnx.export_onnx(model, tmp_path / "m.nnx", inputs=[tmp_path / "m.nnx"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", str(tmp_path / "m.nnx"), str(tmp_path / "m.nnx")])
    assert exit_.value.code == 2 and "also an input" in capsys.readouterr().err
    with pytest.raises(OutputPathError, match="directory"):
        nnx.export_onnx(model, tmp_path)
    assert (tmp_path / "m.nnx").read_bytes() == before


def test_cli_bad_input_shape_and_a_model_that_needs_one(tmp_path, capsys):
    model = example("cnn", "float32").model
    nnx.save(model, tmp_path / "cnn.nnx")
    assert cli.main(["export", str(tmp_path / "cnn.nnx"), str(tmp_path / "cnn.onnx")]) == 1
    assert "needs input_shape" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", str(tmp_path / "cnn.nnx"), str(tmp_path / "cnn.onnx"), "--input-shape", "N,x"])
    assert cli.main(["export", str(tmp_path / "cnn.nnx"), str(tmp_path / "cnn.onnx"), "--input-shape",
                     "N,1,8,8"]) == 0
    assert not (tmp_path / "cnn.onnx.tmp").exists()


class _HostRead(nnx.Layer):
    """A layer of one's own that reads a value on the host: no graph can record that."""

    def forward(self, x):
        scale = float(nnx.backend.namespace_of(x).max(x))
        self.save_for_backward()
        return x / scale

    def backward(self, grad):
        raise NotImplementedError


def test_a_layer_that_cannot_export_is_named_with_the_reason(tmp_path):
    model = nnx.Sequential(nnx.Linear(3, 2, seed=0), _HostRead()).eval()
    with pytest.raises(ExportError, match=r"_HostRead.*cannot be exported.*host reads"):
        nnx.export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_two_dynamic_axes_where_a_layer_needs_a_length(tmp_path):
    """The rnn unrolls over its length: a dynamic length is refused with a message that says to fix it."""
    model = example("rnn", "float32").model.eval()
    with pytest.raises((ShapeError, ExportError), match="fixed size|fixed length"):
        nnx.export_onnx(model, tmp_path / "rnn.onnx", (None, None, 4))


def test_key_padding_mask_needs_a_forward_that_takes_it(tmp_path):
    model = example("tiny_gpt", "float32").model.eval()
    with pytest.raises(ExportError, match="takes no key_padding_mask"):
        nnx.export_onnx(model, tmp_path / "g.onnx", (None, 6), key_padding_mask=True)


def test_mixed_labels_have_no_class_table(tmp_path):
    model = nnx.Sequential(nnx.Linear(3, 2, seed=0), nnx.preprocessing.ClassLabels([1, "b"])).eval()
    with pytest.raises(ExportError, match="mix"):
        nnx.export_onnx(model, tmp_path / "m.onnx")


def test_without_the_extra_the_error_says_what_to_install(tmp_path, monkeypatch):
    import dataclasses

    import nnx.export

    missing = dataclasses.replace(nnx.export.NDONNX, probe=lambda: "ndonnx is not installed; pip install ...")
    monkeypatch.setattr(nnx.export, "NDONNX", missing)
    model = example("mlp", "float32").model.eval()
    with pytest.raises(nnx.errors.BackendUnavailableError, match="ndonnx is not installed"):
        nnx.export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_holds_values_is_the_one_switch_for_checks_that_read_values():
    """Finite checks run on NumPy arrays and are skipped on arrays of a record with holds_values=False."""
    import ndonnx

    from nnx.backend.registry import NDONNX
    from nnx.layers.checks import check_finite

    x = nnx.to_device([[1.0, float("nan")]], "numpy", "float32")
    assert nnx.backend.holds_values(x)
    with pytest.raises(nnx.errors.NonFiniteError):
        check_finite(x, nnx.backend.namespace_of(x), "here")
    nnx.backend.register(NDONNX)
    try:
        traced = ndonnx.argument(shape=(None, 2), dtype=ndonnx.float32)
        assert not nnx.backend.holds_values(traced)
        check_finite(traced, ndonnx, "here")  # nothing to read: no check, no error
    finally:
        nnx.backend.unregister(NDONNX.name)


def test_integer_labels(tmp_path):
    model = nnx.Sequential(nnx.Linear(3, 2, seed=0), nnx.preprocessing.ClassLabels([10, 20])).eval()
    session = _session(nnx.export_onnx(model, tmp_path / "m.onnx"))
    x = _held_out((None, 3), 16, _random.make_rng(8))
    scores, labels = session.run(None, {"input": x})
    assert labels.dtype == np.int64 and labels.tolist() == nnx.predict_classes(model, x).tolist()
    assert set(labels.tolist()) == {10, 20}  # both classes among 16 rows, so the table is really read


def test_a_model_on_another_backend_exports(tmp_path):
    """The export copies the parameters through the host: a model on array_api_strict exports the same graph."""
    if nnx.available()["array_api_strict"] is not None:
        pytest.skip(nnx.available()["array_api_strict"])
    model = example("mlp", "float32").model.eval()
    nnx.export_onnx(model, tmp_path / "numpy.onnx")
    nnx.export_onnx(model.to("array_api_strict"), tmp_path / "strict.onnx")
    assert (tmp_path / "numpy.onnx").read_bytes() == (tmp_path / "strict.onnx").read_bytes()
