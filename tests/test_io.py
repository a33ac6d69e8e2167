"""Saving and loading models: round trips, across backends, and the file's promises."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import backend as nb

# Backends whose outputs from identical weights match NumPy's bit for bit.
CPU_EXACT = ("numpy", "array_api_strict")


def _net(nnx_backend: str | None = None, dtype: str = "float64") -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(3, 5, seed=0, dtype=dtype, backend=nnx_backend), nnx.Tanh(),
        nnx.Sequential(nnx.Linear(5, 4, seed=1, dtype=dtype, backend=nnx_backend), nnx.ReLU()),
        nnx.Linear(4, 2, bias=False, seed=2, dtype=dtype, backend=nnx_backend), nnx.Sigmoid(),
    )


def _x(nnx_backend: str, dtype: str = "float64") -> object:
    host = np.random.default_rng(5).normal(size=(7, 3))
    return nnx.to_device(host, nnx_backend, dtype=dtype)


def _out(model: nnx.Layer, nnx_backend: str, dtype: str = "float64") -> np.ndarray:
    return nnx.to_host(model.forward(_x(nnx_backend, dtype)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(nnx_backend: str, dtype: str, tmp_path: Path) -> None:
    net = _net(dtype=dtype)
    path = nnx.save(net, tmp_path / "m.nnx")
    again = nnx.load(path)
    assert again.backend == nnx_backend
    assert repr(again) == repr(net)
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), again.named_parameters()):
        assert n1 == n2
        assert nb.dtype_name(p2.data) == dtype
        assert np.array_equal(nnx.to_host(p1.data), nnx.to_host(p2.data))
    assert np.array_equal(_out(net, nnx_backend, dtype), _out(again, nnx_backend, dtype))


def _saved_on(source: str, tmp_path: Path) -> Path:
    with nnx.use(source):
        return nnx.save(_net(), tmp_path / f"{source}.nnx")


def test_saved_on_one_backend_loads_on_every_other(nnx_backend: str, tmp_path: Path) -> None:
    """A file does not depend on the backend it came from: outputs agree bit for bit."""
    sources = [n for n, reason in nb.available().items() if reason is None]
    reference = _out(nnx.load(_saved_on("numpy", tmp_path), backend="numpy"), "numpy")
    for source in sources:
        model = nnx.load(_saved_on(source, tmp_path), backend=nnx_backend)
        assert model.backend == nnx_backend
        out = _out(model, nnx_backend)
        if nnx_backend not in CPU_EXACT:  # a GPU sums in another order; the weights are still identical
            np.testing.assert_allclose(out, reference, rtol=1e-12)
        else:
            assert np.array_equal(out, reference), f"saved on {source}, loaded on {nnx_backend}"


def test_load_leaves_the_default_generator_alone(tmp_path: Path) -> None:
    path = nnx.save(_net(), tmp_path / "m.nnx")
    nnx.random.seed(3)
    expected = nnx.Linear(3, 5).weight.data
    nnx.random.seed(3)
    nnx.load(path)
    assert np.array_equal(nnx.Linear(3, 5).weight.data, expected)


def test_loaded_model_trains(nnx_backend: str, tmp_path: Path) -> None:
    """Loaded parameters are writable arrays of their own, not views of the file's buffer."""
    model = nnx.load(nnx.save(_net(), tmp_path / "m.nnx"))
    before = [nnx.to_host(p.data).copy() for p in model.parameters()]
    y = nnx.to_device(np.zeros((7, 2)), nnx_backend, dtype="float64")
    nnx.train_step(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.5), _x(nnx_backend), y)
    assert any(not np.array_equal(b, nnx.to_host(p.data)) for b, p in zip(before, model.parameters()))


def test_file_is_readable_by_the_safetensors_package(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    net = _net(dtype="float32")
    path = nnx.save(net, tmp_path / "m.nnx")
    tensors = load_file(str(path))
    assert set(tensors) == {n for n, _ in net.named_parameters()}
    for name, p in net.named_parameters():
        assert tensors[name].dtype == np.float32
        assert np.array_equal(tensors[name], nnx.to_host(p.data))
    with st.safe_open(str(path), framework="np") as f:
        description = json.loads(f.metadata()["nnx"])
    assert description["format_version"] == nnx.io.FORMAT_VERSION
    assert description["nnx_version"] == nnx.__version__
    assert description["dtype"] == "float32"
    assert [(name, layer["type"]) for name, layer in description["model"]["children"]] == [
        ("0", "Linear"), ("1", "Tanh"), ("2", "Sequential"), ("3", "Linear"), ("4", "Sigmoid")]
    assert description["model"]["children"][0][1]["config"] == {
        "in_features": 3, "out_features": 5, "bias": True, "dtype": "float32"}


def test_safetensors_file_without_nnx_description_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(nnx.errors.NotAModelFileError, match="without an nnx description"):
        nnx.load(path)


def test_layer_classes_must_be_registered(tmp_path: Path) -> None:
    class Doubler(nnx.Layer):
        def forward(self, x: object) -> object:
            return 2 * x

    model = nnx.Sequential(nnx.Linear(2, 2, seed=0), Doubler())
    with pytest.raises(nnx.errors.UnknownLayerError, match="register_layer"):
        nnx.save(model, tmp_path / "m.nnx")
    assert not (tmp_path / "m.nnx").exists()
    nnx.register_layer(Doubler, "test_io.Doubler")
    try:
        loaded = nnx.load(nnx.save(model, tmp_path / "m.nnx"))
        assert type(loaded[1]) is Doubler
    finally:
        del nnx.layers.registry._LAYERS["test_io.Doubler"]
    with pytest.raises(nnx.errors.UnknownLayerError, match="'test_io.Doubler'"):
        nnx.load(tmp_path / "m.nnx")


def test_registering_a_taken_name_or_a_non_layer_fails() -> None:
    class Sigmoid(nnx.Layer):
        pass

    with pytest.raises(ValueError, match="already registered"):
        nnx.register_layer(Sigmoid)
    with pytest.raises(TypeError):
        nnx.register_layer(dict)  # type: ignore[arg-type]


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "m.nnx"
    nnx.save(_net(), path)
    nnx.save(nnx.Linear(2, 1, seed=0), path)
    assert repr(nnx.load(path)) == "Linear(2, 1)"
    assert os.listdir(tmp_path) == ["m.nnx"]


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = nnx.save(_net(), tmp_path / "m.nnx")
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        nnx.save(nnx.Linear(2, 1, seed=0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.nnx"]


def test_save_to_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(nnx.errors.OutputPathError, match="is a directory"):
        nnx.save(_net(), tmp_path)


class _Centre(nnx.Layer):
    """A test layer with a non-trainable buffer (a running mean), as normalisation layers have."""

    def __init__(self, features: int, dtype: str = "float64") -> None:
        super().__init__()
        self.features, self.dtype = features, dtype
        self.mean = nnx.to_device(np.zeros(features), dtype=dtype)

    def forward(self, x: object) -> object:
        return x - self.mean

    def config(self) -> dict[str, object]:
        return {"features": self.features, "dtype": self.dtype}

    def named_buffers(self, prefix: str = "") -> list[tuple[str, object]]:
        return [(prefix + "mean", self.mean)]

    def set_buffer(self, name: str, value: object) -> None:
        assert name == "mean"
        self.mean = value


def test_buffers_are_saved_and_restored(nnx_backend: str, tmp_path: Path) -> None:
    nnx.register_layer(_Centre, "test_io.Centre")
    try:
        layer = _Centre(3)
        layer.mean = nnx.to_device([0.5, -1.0, 2.0], dtype="float64")
        path = nnx.save(layer, tmp_path / "c.nnx")
        loaded = nnx.load(path)
        assert nnx.backend.backend_of(loaded.mean) == nnx_backend
        assert np.array_equal(nnx.to_host(loaded.mean), [0.5, -1.0, 2.0])
        tensors = nnx.io.read_tensors(path).tensors
        del tensors["mean"]
        nnx.io.write_tensors(path, tensors, nnx.io.read_tensors(path).description)
        with pytest.raises(nnx.errors.TensorMismatchError, match="lacks tensors the architecture needs: 'mean'"):
            nnx.load(path)
    finally:
        del nnx.layers.registry._LAYERS["test_io.Centre"]


def _every_layer(nnx_backend: str | None = None) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Flatten(),
        nnx.Linear(6, 8, seed=0, dtype="float64", backend=nnx_backend), nnx.BatchNorm1d(8, momentum=0.3, dtype="float64", backend=nnx_backend),
        nnx.LeakyReLU(0.2), nnx.Dropout(0.25, seed=1),
        nnx.Linear(8, 8, seed=2, dtype="float64", backend=nnx_backend), nnx.LayerNorm(8, dtype="float64", backend=nnx_backend),
        nnx.GELU(), nnx.RMSNorm(8, dtype="float64", backend=nnx_backend), nnx.SiLU(),
        nnx.Sequential(nnx.Linear(8, 5, seed=3, dtype="float64", backend=nnx_backend), nnx.Tanh(), nnx.ReLU()),
        nnx.Linear(5, 3, bias=False, seed=4, dtype="float64", backend=nnx_backend), nnx.Sigmoid(), nnx.Softmax(),
    )


def _every_image_layer() -> nnx.Sequential:
    f = {"dtype": "float64"}
    return nnx.Sequential(
        nnx.Conv2d(2, 4, 3, padding="same", bias=False, seed=5, **f), nnx.BatchNorm2d(4, momentum=0.3, **f),
        nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Residual(nnx.Conv2d(4, 6, 3, padding=1, groups=2, seed=6, **f), shortcut=nnx.Conv2d(4, 6, 1, seed=7, **f)),
        nnx.AvgPool2d(2, stride=1), nnx.GlobalAvgPool2d(), nnx.Linear(6, 3, seed=8, **f),
    )


def _every_sequence_layer() -> nnx.Sequential:
    return nnx.Sequential(nnx.Embedding(11, 6, padding_idx=0, seed=9, dtype="float64"), nnx.Mean(1),
                          nnx.Residual(nnx.Linear(6, 6, seed=10, dtype="float64")), nnx.Linear(6, 2, dtype="float64"))


def _every_signal_layer() -> nnx.Sequential:
    return nnx.Sequential(nnx.Conv1d(3, 4, 3, stride=2, dilation=2, seed=11, dtype="float64"), nnx.Flatten())


def _every_tabular_layer() -> nnx.Sequential:
    scale = nnx.preprocessing.Standardize(3, names=["a", "b", "c"], dtype="float64")
    scale.fit(np.random.default_rng(12).normal(5.0, 2.0, (30, 3)))
    return nnx.Sequential(scale, nnx.Reshape((1, 3)), nnx.Flatten(), nnx.Linear(3, 2, seed=13, dtype="float64"),
                          nnx.preprocessing.ClassLabels(["no", "yes"], name="answer"))


def _every_regression_layer() -> nnx.Sequential:
    out = nnx.preprocessing.Destandardize(2, names=["price", "tax"], dtype="float64")
    out.fit(np.random.default_rng(14).normal([300.0, -2.0], [50.0, 0.1], (30, 2)))
    return nnx.Sequential(nnx.Linear(3, 2, seed=15, dtype="float64"), out)


def _every_seq2seq_layer() -> nnx.Sequential:
    """An encoder–decoder (its decoder blocks inside): x is 3 source ids, then 2 decoder input ids."""
    return nnx.Sequential(nnx.TransformerSeq2Seq(11, 7, 3, 2, embed_dim=8, num_heads=2, hidden_dim=12, num_layers=1,
                                                 seed=17, dtype="float64"))


def _every_recurrent_layer() -> nnx.Sequential:
    return nnx.Sequential(nnx.LSTM(3, 4, num_layers=2, bidirectional=True, seed=14, dtype="float64"),
                          nnx.GRU(8, 3, return_sequences=False, seed=15, dtype="float64"),
                          nnx.Linear(3, 2, seed=16, dtype="float64"))


def _every_attention_layer() -> nnx.Sequential:
    f = {"dtype": "float64"}
    return nnx.Sequential(nnx.Embedding(11, 8, seed=14, **f), nnx.PositionalEmbedding(5, 8, seed=15, **f),
                          nnx.SinusoidalPositions(8),
                          nnx.TransformerBlock(8, 2, dropout=0.1, causal=True, seed=16, **f),
                          nnx.MultiHeadAttention(8, 4, seed=17, **f), nnx.Linear(8, 2, seed=18, **f))


# each model and an input for it: together they hold every layer nnx exports
MODELS = {
    "dense": (_every_layer, lambda rng: rng.normal(size=(9, 2, 3))),
    "image": (_every_image_layer, lambda rng: rng.normal(size=(9, 2, 6, 6))),
    "sequence": (_every_sequence_layer, lambda rng: rng.integers(0, 11, (9, 5))),
    "signal": (_every_signal_layer, lambda rng: rng.normal(size=(9, 3, 12))),
    "tabular": (_every_tabular_layer, lambda rng: rng.normal(5.0, 2.0, size=(9, 3))),
    "regression": (_every_regression_layer, lambda rng: rng.normal(size=(9, 3))),
    "recurrent": (_every_recurrent_layer, lambda rng: rng.normal(size=(9, 5, 3))),
    "attention": (_every_attention_layer, lambda rng: rng.integers(0, 11, (9, 5))),
    "seq2seq": (_every_seq2seq_layer, lambda rng: rng.integers(0, 7, (9, 5))),
}


def test_every_exported_layer_is_allowed() -> None:
    exported = {getattr(nnx.layers, n) for n in nnx.layers.__all__}
    layer_classes = {c for c in exported if isinstance(c, type) and issubclass(c, nnx.Layer) and c is not nnx.Layer}
    unregistered = sorted(c.__name__ for c in layer_classes - set(nnx.io.registered_layers().values()))
    assert not unregistered, f"register {unregistered} with @register_layer in their files under nnx/layers/"
    used = {type(layer) for make, _ in MODELS.values() for _, layer in make().named_modules()}
    # LayerList/LayerDict wire nothing: tests/test_layer_collections.py saves and loads a layer holding them
    # LSTMCell/GRUCell return states for a loop of one's own: tests/test_recurrent.py saves and loads them
    missing = sorted(c.__name__ for c in layer_classes - {nnx.LayerList, nnx.LayerDict, nnx.LSTMCell, nnx.GRUCell}
                     - used)
    assert not missing, f"put {missing} into one of the MODELS in tests/test_io.py (every exported layer is saved)"


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"dense"}))
def test_every_other_model_crosses_backends(nnx_backend: str, name: str, tmp_path: Path) -> None:
    make, data = MODELS[name]
    with nnx.use("numpy"):
        model = make()
        host = data(np.random.default_rng(1))
        x = nnx.to_device(host, "numpy", dtype="float64" if host.dtype.kind == "f" else "int64")
        for _ in range(3):
            model.forward(x)  # training mode: BatchNorm2d updates its running statistics
            model.drop_saved()  # no backward comes
        reference = nnx.to_host(model.eval().forward(x))
        path = nnx.save(model, tmp_path / f"{name}.nnx")
    loaded = nnx.load(path).eval()
    _assert_same_model(loaded, model, x, reference, nnx_backend)


def _assert_same_model(loaded: nnx.Layer, model: nnx.Layer, x: object, reference: np.ndarray, backend: str) -> None:
    """The loaded model prints as the saved one and computes its outputs: bit for bit on the CPU backends."""
    out = nnx.to_host(loaded.forward(nnx.to_device(nnx.to_host(x), backend)))
    if backend not in CPU_EXACT:
        np.testing.assert_allclose(out, reference, rtol=1e-12)
    else:
        assert np.array_equal(out, reference)
    assert repr(loaded) == repr(model)


def test_every_layer_and_its_buffers_cross_backends(nnx_backend: str, tmp_path: Path) -> None:
    """Trained running statistics included, a model saved on numpy gives identical outputs here."""
    with nnx.use("numpy"):
        model = _every_layer()
        x = nnx.to_device(np.random.default_rng(0).normal(size=(9, 2, 3)), dtype="float64")
        for _ in range(3):
            model.forward(x)  # training mode: BatchNorm1d updates its running statistics
            model.drop_saved()  # no backward comes
        reference = nnx.to_host(model.eval().forward(x))
        path = nnx.save(model, tmp_path / "all.nnx")
    loaded = nnx.load(path).eval()
    buffers = dict(loaded.named_buffers())
    assert set(buffers) == {"2.running_mean", "2.running_var"}
    assert all(nnx.backend.backend_of(b) == nnx_backend for b in buffers.values())
    assert np.array_equal(nnx.to_host(buffers["2.running_mean"]), nnx.to_host(dict(model.named_buffers())["2.running_mean"]))
    _assert_same_model(loaded, model, x, reference, nnx_backend)


OLD = Path(__file__).parent / "data" / "nnx-0.1"  # written by nnx 0.1, before the layer tree was generic


def _old_build() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(4, 8, seed=0, dtype="float64"), nnx.BatchNorm1d(8, dtype="float64"),
                          nnx.Dropout(0.25, seed=1), nnx.Sequential(nnx.Tanh(), nnx.Linear(8, 3, seed=2, dtype="float64")))


def test_files_written_by_nnx_0_1_load_and_resume(tmp_path: Path) -> None:
    """A model file and a fit checkpoint of nnx 0.1 (Sequential as {"type", "layers"}, a seeded
    dropout's bare generator state) load, predict what 0.1 predicted, and resume: the checkpoint's
    first epoch was computed with 0.1's rounding, so the resumed run matches a run made wholly with
    today's code to float64 rounding (a checkpoint of today's code resumes bit for bit:
    tests/test_fit_checkpoint.py)."""
    import shutil

    expected = json.loads((OLD / "expected.json").read_text())
    x, y = np.array(expected["x"]), np.array(expected["y"])
    with nnx.use("numpy"):
        model = nnx.load(OLD / "model.nnx")
        assert np.array_equal(nnx.to_host(nnx.predict(model, x)), np.array(expected["predictions"]))

        shutil.copy(OLD / "checkpoint.nnx", tmp_path / "checkpoint.nnx")
        resumed = _old_build()
        opt = nnx.Adam(resumed.parameters(), lr=0.01)
        nnx.fit(resumed, nnx.SoftmaxCrossEntropy(), opt, (x, y), epochs=3, batch_size=8, seed=3, progress=False,
                checkpoint=tmp_path, resume=True)
        straight = _old_build()
        opt = nnx.Adam(straight.parameters(), lr=0.01)
        nnx.fit(straight, nnx.SoftmaxCrossEntropy(), opt, (x, y), epochs=3, batch_size=8, seed=3, progress=False)
    for name, value in straight.state_dict().items():
        np.testing.assert_allclose(nnx.to_host(resumed.state_dict()[name]), nnx.to_host(value), rtol=1e-9,
                                   atol=1e-9, err_msg=name)


def test_overwriting_keeps_the_files_permissions(tmp_path: Path) -> None:
    path = nnx.save(_net(), tmp_path / "private.nnx")
    os.chmod(path, 0o600)
    nnx.save(_net(), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    nnx.save(_net(), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_casts_with_to_dtype_and_saves_in_the_new_dtype(name: str, tmp_path: Path) -> None:
    """``model.to(dtype=...)`` casts every layer's arrays and the dtype it was built with (float64 to float32)."""
    make, data = MODELS[name]
    model = make()
    host = data(np.random.default_rng(1))
    x64 = nnx.to_device(host, "numpy", dtype="float64" if host.dtype.kind == "f" else "int64")
    expected = nnx.to_host(model.eval().forward(x64))
    model.to(dtype="float32")
    floats = {nnx.backend.dtype_name(v) for v in model.state_dict().values()} - {"int64"}
    assert floats == {"float32"}
    x32 = nnx.to_device(host, "numpy", dtype="float32" if host.dtype.kind == "f" else "int64")
    out = nnx.to_host(model.forward(x32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
    loaded = nnx.load(nnx.save(model, tmp_path / f"{name}.nnx")).eval()
    np.testing.assert_array_equal(nnx.to_host(loaded.forward(x32)), out)


def test_random_layers_of_a_loaded_model_each_get_their_own_generator(tmp_path: Path) -> None:
    """A file names no seed: each random layer gets a generator of its own, seeded by its place, so a
    restored state (a checkpoint's, a trace's) is each layer's own and loads draw the same masks."""
    model = nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.Dropout(0.5, seed=1), nnx.Dropout(0.5, seed=2))
    path = nnx.save(model, tmp_path / "m.nnx")
    first, second = nnx.load(path), nnx.load(path)
    generators = [first[1].rng, first[2].rng]
    assert generators[0] is not generators[1] and nnx.random.default() not in generators
    first.set_random_states(model.random_states())
    x = nnx.to_device(np.ones((5, 3)), dtype="float32")
    np.testing.assert_array_equal(nnx.to_host(first.forward(x)), nnx.to_host(model.forward(x)))
    np.testing.assert_array_equal(nnx.to_host(second.forward(x)), nnx.to_host(nnx.load(path).forward(x)))
