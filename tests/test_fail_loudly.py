"""The hostile user's examples on the newer surfaces: each gives a clear nnx error (from the command: exit 1
or 2, no traceback) or the right answer, and nothing a command reads is overwritten.

One test per example of each class (outputs, locks, numbers, arguments, shapes, containers, data); the
properties behind them are in tests/test_fuzz.py, the hostile lock files in tests/hostile_files.py.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx


@pytest.fixture(autouse=True)
def _on_numpy() -> Any:
    with nnx.use("numpy"):
        yield


def _main(capsys: Any, *args: str) -> tuple[int, str]:
    """``nnx ARGS`` in this process: the exit status and standard error (never a traceback)."""
    from nnx import cli

    try:
        code = cli.main(list(args))
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


# outputs that destroy inputs: nnx parity ----------------------------------------------------------


@pytest.fixture(scope="module")
def parity_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from hostile_files import valid_model, valid_trace

    directory = tmp_path_factory.mktemp("parity")
    valid_trace().save(directory / "t.nnxtrace")
    return nnx.save(valid_model(), directory / "m.nnx"), directory / "t.nnxtrace"


def test_parity_never_writes_over_what_it_reads(parity_files: tuple[Path, Path], capsys: Any) -> None:
    model, trace = parity_files
    before = model.read_bytes(), trace.read_bytes()
    for args in (["--record", str(model), "--model", str(model), "--backends", "numpy"],
                 ["--record", str(model.parent / "new.nnxtrace"), "--model", str(model), "--json", str(model),
                  "--backends", "numpy"],
                 ["--against", str(trace), "--json", str(trace), "--backends", "numpy"],
                 ["--model", str(model), "--json", str(model), "--backends", "numpy,array_api_strict"]):
        code, err = _main(capsys, "parity", *args)
        assert code == 2 and "is also an input of this command" in err, (args, err)
    assert (model.read_bytes(), trace.read_bytes()) == before
    assert not (model.parent / "new.nnxtrace").exists()


def test_parity_record_writes_its_json_report(parity_files: tuple[Path, Path], tmp_path: Path,
                                              capsys: Any) -> None:
    model, _ = parity_files
    out, report = tmp_path / "r.nnxtrace", tmp_path / "r.json"
    code, _ = _main(capsys, "parity", "--record", str(out), "--model", str(model), "--backends", "numpy",
                    "--steps", "2", "--json", str(report))
    assert code == 0
    document = json.loads(report.read_text())
    assert document["ok"] and document["recorded"] and document["steps"] == 2
    assert document["models"]["m.nnx"]["trace"] == str(out)
    assert document["models"]["m.nnx"]["bytes"] == out.stat().st_size


# numbers out of range -------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--tolerance", "*=1e308"], ["--rtol", "-1"], ["--rtol", "nan"],
                                    ["--rtol", "1e308"], ["--tolerance", "*=inf"]])
def test_parity_tolerances_out_of_range_exit_2(parity_files: tuple[Path, Path], capsys: Any,
                                               option: list[str]) -> None:
    _, trace = parity_files
    code, err = _main(capsys, "parity", "--against", str(trace), "--backends", "numpy", *option)
    assert code == 2 and ("finite number" in err or "RTOL a number" in err), err


def test_check_trace_reports_the_tolerance_the_caller_passed(parity_files: tuple[Path, Path]) -> None:
    from nnx.testing import check_trace

    _, trace = parity_files
    with pytest.raises(nnx.errors.ArgumentError, match=r"tolerance of '\*'.*got 1e\+308"):
        check_trace(trace, tolerances={"*": 1e308})
    for rtol in (float("nan"), -1.0, "1e-5", True):
        with pytest.raises(nnx.errors.ArgumentError, match=f"rtol .*got {rtol!r}"):
            check_trace(trace, rtol=rtol)
    report = check_trace(trace, tolerances={"*": 1e-3})
    assert report.ok and report.checked > 0


def test_classifier_on_inputs_near_the_float64_limit_classifies_them() -> None:
    from nnx.sklearn import NNXClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = (x[:, 0] > 0).astype(int)
    clf = NNXClassifier(epochs=20, hidden=(16,)).fit(x * 1e300, y)
    assert np.all(np.isfinite(nnx.to_host(clf.model_[0].std)))
    predicted = clf.predict(x * 1e300)
    assert len(set(predicted.tolist())) == 2  # an overflowed standardisation gives every row one class
    same = NNXClassifier(epochs=20, hidden=(16,)).fit(x, y).predict(x)
    assert (predicted == same).mean() > 0.95  # the scale is standardised away


def test_regressor_targets_beyond_their_dtype_are_refused_and_within_it_predicted() -> None:
    from nnx.sklearn import NNXRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    with pytest.raises(nnx.errors.NonFiniteError, match="beyond float32's largest"):
        NNXRegressor(epochs=2, dtype="float32").fit(x, x[:, 0] * 1e39)
    reg = NNXRegressor(epochs=40, hidden=(16,)).fit(x, x[:, 0] * 1e160)
    predicted = reg.predict(x) / 1e160
    assert np.all(np.isfinite(predicted)) and np.corrcoef(predicted, x[:, 0])[0, 1] > 0.9


def test_regression_cli_on_values_near_the_float64_limit(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    table, model = tmp_path / "big.csv", tmp_path / "big.nnx"
    np.savetxt(table, np.c_[x * 1e300, x[:, 0] * 1e300], delimiter=",", header="a,b,t", comments="")
    code, _ = _main(capsys, "train", str(table), "--task", "regression", "--dtype", "float64", "--epochs", "30",
                    "--save", str(model), "--quiet")
    assert code == 0
    assert _main(capsys, "predict", str(model), str(table))[0] == 0  # loads: nothing in it looks forged
    code, err = _main(capsys, "train", str(table), "--task", "regression", "--epochs", "1", "--quiet")
    assert code == 1 and "beyond float32's largest" in err and "non-finite" not in err, err


def test_fit_names_data_its_dtype_cannot_hold_not_non_finite_values() -> None:
    model = nnx.Sequential(nnx.Linear(2, 1, seed=0))
    x = np.ones((8, 2))
    with pytest.raises(nnx.errors.NonFiniteError, match="finite values up to 1e\\+300, beyond float32"):
        nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), (x, np.full((8, 1), 1e300)), epochs=1)


# arguments -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, name", [
    (lambda: nnx.GRUCell(3, 4, bias="False"), "bias"),
    (lambda: nnx.LSTMCell(3, 4, bias="False"), "bias"),
    (lambda: nnx.MultiHeadAttention(8, 2, causal="False"), "causal"),
    (lambda: nnx.TransformerBlock(8, 2, causal="False"), "causal"),
    (lambda: nnx.Linear(3, 4, bias="False"), "bias"),
    (lambda: nnx.Conv2d(3, 4, 3, bias=0), "bias"),
    (lambda: nnx.LayerNorm(3, affine="no"), "affine"),
    (lambda: nnx.LSTM(3, 4, batch_first="True"), "batch_first"),
    (lambda: nnx.TransformerBlock(8, 2, hidden_dim=0), "hidden_dim"),
    (lambda: nnx.MultiHeadAttention(8, 2, kdim=0), "kdim"),
    (lambda: nnx.MultiHeadAttention(8, 2, dropout="0.1"), "dropout"),
    (lambda: nnx.LayerNorm(3, eps=float("nan")), "eps"),
])
def test_arguments_of_the_wrong_kind_are_refused_with_their_name(make: Any, name: str) -> None:
    with pytest.raises(nnx.errors.ArgumentError, match=name):
        make()


def test_a_dtype_object_becomes_its_name_and_the_model_saves(tmp_path: Path) -> None:
    model = nnx.Sequential(nnx.Linear(2, 3, seed=0), nnx.LayerNorm(3))
    model.to(dtype=np.dtype("float64"))
    assert [m.dtype for m in model.layers] == ["float64", "float64"]
    loaded = nnx.load(nnx.save(model, tmp_path / "m.nnx"))
    assert nnx.backend.dtype_name(loaded.layers[0].weight.data) == "float64"
    with pytest.raises(nnx.errors.DTypeError):
        model.to(dtype=np.int32)


# empty and odd shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: nnx.LSTM(3, 4), lambda: nnx.GRU(3, 4, bidirectional=True),
                                  lambda: nnx.LSTM(3, 4, return_sequences=False)])
def test_a_0_length_sequence_into_a_recurrent_layer_is_a_shape_error(make: Any) -> None:
    with pytest.raises(nnx.errors.ShapeError, match="length 0"):
        make().forward(np.zeros((2, 0, 3), np.float32))


def test_attention_over_0_positions_gives_empty_results_and_to_0_keys_zero_weights() -> None:
    torch = pytest.importorskip("torch")

    mha = nnx.MultiHeadAttention(4, 2, seed=0, dtype="float64")
    y = mha.forward(np.zeros((2, 0, 4)))
    assert y.shape == (2, 0, 4) and mha.backward(np.ones((2, 0, 4))).shape == (2, 0, 4)
    block = nnx.TransformerBlock(4, 2, seed=0)
    assert block.forward(np.zeros((2, 0, 4), np.float32)).shape == (2, 0, 4)
    cross = nnx.MultiHeadAttention(4, 2, seed=0, dtype="float64")
    cross.out_proj_bias.data[...] = np.arange(4.0)
    q, k = np.random.default_rng(0).normal(size=(2, 3, 4)), np.zeros((2, 0, 4))
    out = cross.forward(q, k, k)
    reference = torch.nn.MultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        reference.out_proj.bias.copy_(torch.arange(4.0))
        expected = reference(torch.tensor(q), torch.tensor(k), torch.tensor(k))[0].numpy()
    np.testing.assert_allclose(out, expected)  # no key: the output projection's bias alone
    dq, dk, dv = cross.backward(np.ones((2, 3, 4)))
    assert (dq.shape, dk.shape, dv.shape) == ((2, 3, 4), (2, 0, 4), (2, 0, 4)) and not dq.any()


@pytest.mark.parametrize("state", [(np.zeros((2, 4), np.float32),), (np.zeros((2, 4), np.float32),) * 3,
                                   "h"])
def test_an_lstm_cell_state_that_is_not_a_pair_is_a_shape_error(state: Any) -> None:
    with pytest.raises(nnx.errors.ShapeError, match=r"the pair \(h, c\)"):
        nnx.LSTMCell(3, 4).forward(np.ones((2, 3), np.float32), state)


def test_a_gradient_of_the_wrong_shape_is_refused_where_it_is_added() -> None:
    class Bias(nnx.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nnx.Parameter(np.zeros(3, np.float32), "bias")

        def forward(self, x: Any) -> Any:
            return x + self.bias.data

        def backward(self, grad: Any) -> Any:
            self.bias.accumulate(grad)  # forgot to sum over the batch
            return grad

    model = Bias()
    with pytest.raises(nnx.errors.ShapeError, match=r"gradient of shape \(5, 3\).*parameter of shape \(3,\)"):
        nnx.train_step(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), np.ones((5, 3), np.float32),
                       np.zeros((5, 3), np.float32))
    assert model.bias.grad is None


# containers ------------------------------------------------------------------------------------------


def test_layers_in_nested_lists_or_beside_a_sequentials_own_are_refused() -> None:
    class Nested(nnx.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = [[nnx.Linear(2, 2, seed=0)]]

    class Tower(nnx.Sequential):
        def __init__(self) -> None:
            super().__init__(nnx.Linear(2, 2, seed=0))
            self.extra = [nnx.Linear(2, 2, seed=1)]

    with pytest.raises(nnx.errors.LayerTreeError, match=r"blocks\[0\]\[0\] is Linear"):
        Nested()
    with pytest.raises(nnx.errors.LayerTreeError, match=r"Tower.extra is a plain list"):
        Tower()


def test_del_of_a_layer_dict_key() -> None:
    heads = nnx.LayerDict({"a": nnx.Linear(2, 2, seed=0), "b": nnx.Linear(2, 3, seed=1)})
    del heads["a"]
    assert list(heads) == ["b"] and sorted(heads.state_dict()) == ["b.bias", "b.weight"]
    with pytest.raises(KeyError):
        del heads["a"]


# checkpoint locks -----------------------------------------------------------------------------------


def test_two_threads_on_one_checkpoint_directory_the_second_is_refused(tmp_path: Path) -> None:
    held, release, seen = threading.Event(), threading.Event(), []

    def first() -> None:
        with nnx.checkpoint.claim_directory(tmp_path):
            with nnx.checkpoint.claim_directory(tmp_path):  # the same thread again: allowed
                held.set()
                release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    try:
        model = nnx.Sequential(nnx.Linear(2, 1, seed=0))
        nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), (np.ones((4, 2)), np.ones((4, 1))),
                epochs=1, checkpoint=tmp_path, progress=False)
    except nnx.errors.CheckpointInUseError as exc:
        seen.append(str(exc))
    finally:
        release.set()
        thread.join()
    assert seen and "in use by another run in this process" in seen[0]
    assert nnx.checkpoint.latest_checkpoint(tmp_path) is None
    with nnx.checkpoint.claim_directory(tmp_path):  # released: free again
        pass


# data ----------------------------------------------------------------------------------------------


def test_evaluate_refuses_a_file_without_the_models_target_column(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    train, ids, model = tmp_path / "r.csv", tmp_path / "ids.csv", tmp_path / "r.nnx"
    np.savetxt(train, np.c_[x, 3 * x[:, 0]], delimiter=",", header="a,b,t", comments="", fmt="%.6f")
    np.savetxt(ids, np.c_[np.arange(40), x], delimiter=",", header="id,a,b", comments="", fmt="%.6f")
    assert _main(capsys, "train", str(train), "--task", "regression", "--epochs", "2", "--save", str(model),
                 "--quiet")[0] == 0
    code, err = _main(capsys, "evaluate", str(model), str(ids))
    assert code == 2 and "no label column" in err and "'t'" in err
    assert _main(capsys, "evaluate", str(model), str(train))[0] == 0


def test_a_class_of_one_sample_stays_in_training_with_a_note() -> None:
    x, y = np.arange(11.0)[:, None], np.array([0] * 5 + [1] * 5 + [2])
    with pytest.warns(UserWarning, match=r"single sample \(\[2\]\); it is kept for training"):
        (_, yt), (_, yv) = nnx.datasets.train_val_split(x, y, val=0.6, stratify=True)
    assert 2 in yt and 2 not in yv and len(yv) == 7
    model = nnx.Sequential(nnx.Linear(1, 3, seed=0))
    with pytest.warns(UserWarning, match="single sample"):
        nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.SGD(model.parameters(), lr=0.1), (x, y), epochs=1,
                validation_split=0.6, progress=False)


def test_one_hot_of_no_labels() -> None:
    assert nnx.datasets.one_hot(np.array([], dtype=np.int64), 3).shape == (0, 3)
    with pytest.raises(nnx.errors.ShapeError, match="pass classes=N"):
        nnx.datasets.one_hot(np.array([], dtype=np.int64))


def test_a_label_written_like_a_measurement_is_noted(tmp_path: Path, capsys: Any) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n1,2,0\n3,4,1e12\n5,6,1\n2,2,0\n4,4,1\n")
    with pytest.warns(UserWarning, match="the label '1e12' is read as the class number 1000000000000"):
        nnx.datasets.load_csv(table)
    code, err = _main(capsys, "train", str(table), "--epochs", "1", "--quiet")
    assert code == 0 and "nnx: note:" in err and "1e12" in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table.write_text("a,b,y\n1,2,0\n3,4,7\n")
        nnx.datasets.load_csv(table)  # ordinary class numbers: no note
