"""The ``nnx`` command."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import nnx


def run_nnx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nnx", *args], capture_output=True, text=True)


def test_info_tells_each_backends_state() -> None:
    result = run_nnx("info")
    assert result.returncode == 0, result.stderr
    assert f"nnx {nnx.__version__}" in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for name, reason in nnx.available().items():
        if reason is None:
            assert lines[name].split()[1] == "available"
        else:
            assert "unavailable" in lines[name]
            assert reason.split(";")[0] in lines[name]


def test_no_command_prints_help_and_fails() -> None:
    result = run_nnx()
    assert result.returncode == 2
    assert "info" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_nnx("fly")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_train_runs_end_to_end_on_a_tiny_subset(tmp_path) -> None:
    png = tmp_path / "h.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    result = run_nnx("train", "digits", "--limit", "120", "--epochs", "3", "--hidden", "16", *plot)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nnx train digits: 96 training and 24 held-out samples (stratified), 64 inputs, "
                               "10 classes")
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [["epoch", f"{i}/3"] for i in (1, 2, 3)]
    final = [line for line in lines if line.startswith("held-out accuracy")]
    assert len(final) == 1 and "/24)" in final[0]
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_reads_mnist_idx_and_csv_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40, dtype=np.uint8) % 4
    images = (rng.integers(0, 60, (40, 6, 6)) + 50 * labels[:, None, None]).astype(np.uint8)
    for name, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (tmp_path / name).write_bytes(header + arr.tobytes())
    result = run_nnx("train", str(tmp_path), "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "36 inputs, 4 classes" in result.stdout and "held-out accuracy" in result.stdout
    csv = tmp_path / "d.csv"
    csv.write_text("".join(f"{i % 3},{i % 3 * 2.0},{(i * 7) % 5}\n" for i in range(30)))
    result = run_nnx("train", str(csv), "--label-column", "0", "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "2 inputs, 3 classes" in result.stdout


def test_train_a_cnn(tmp_path) -> None:
    result = run_nnx("train", "mnist_5k", "--model", "cnn", "--limit", "300", "--epochs", "2", "--quiet",
                     "--save", str(tmp_path / "lenet.nnx"))
    assert result.returncode == 0, result.stderr
    assert ("model: standardise -> 1x28x28 -> conv 6@5x5 ReLU pool -> conv 16@5x5 ReLU pool -> 120 ReLU -> 84 ReLU -> 10 "
            "(107,786 parameters)") in result.stdout
    assert "held-out accuracy" in result.stdout
    assert [type(m).__name__ for m in nnx.load(tmp_path / "lenet.nnx")][:3] == ["Standardize", "Reshape", "Conv2d"]
    digits = run_nnx("train", "digits", "--model", "cnn", "--limit", "200", "--epochs", "1", "--quiet")
    assert digits.returncode == 0, digits.stderr
    assert "1x8x8 -> conv 6@3x3" in digits.stdout
    csv = tmp_path / "rows.csv"
    csv.write_text("".join(f"{i % 2},{i},{i + 1}\n" for i in range(20)))
    refused = run_nnx("train", str(csv), "--model", "cnn", "--label-column", "0")
    assert refused.returncode == 2 and "not a square image" in refused.stderr


def test_train_bad_arguments_exit_2_with_a_message() -> None:
    for args, message in (
        (["nowhere"], "neither a bundled data set (digits, mnist_5k)"),
        (["digits", "--epochs", "0"], "must be > 0"),
        (["digits", "--lr", "fast"], "expected a float"),
        (["digits", "--backend", "tpu"], "unknown backend 'tpu'"),
        (["digits", "--val", "2"], "fraction between 0 and 1"),
    ):
        result = run_nnx("train", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_train_on_a_corrupt_file_exits_1_naming_it(tmp_path) -> None:
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(10))
    result = run_nnx("train", str(tmp_path))
    assert result.returncode == 1
    assert "IDX file truncated" in result.stderr and str(bad) in result.stderr


def test_output_paths_are_checked_before_training(tmp_path) -> None:
    for option, value in (("--save", str(tmp_path / "missing" / "m.nnx")), ("--plot", str(tmp_path / "nope" / "c.png")),
                          ("--save", str(tmp_path))):
        result = run_nnx("train", "digits", "--epochs", "1", "--quiet", option, value)
        assert result.returncode == 2, result.stderr
        assert option in result.stderr and "held-out accuracy" not in result.stdout  # nothing was trained


def test_more_usage_errors_exit_2_before_any_work(tmp_path, capsys) -> None:
    from nnx import cli

    regular = tmp_path / "file.txt"
    regular.write_text("not a directory")
    for args, message in (
        (["train", "digits", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["train", "digits", "--checkpoint", str(regular)], "is a file; it names the directory"),
        (["parity", "--backends", "numpy,array_api_strict", "--json", str(tmp_path)], "is a directory"),
        (["train", "digits", "--header", "--no-header"], "not allowed with argument"),
    ):
        try:
            code = cli.main(args)
        except SystemExit as exit_info:
            code = exit_info.code
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err and "Traceback" not in err, (args, err)


def test_csv_header_flags_and_label_names(tmp_path, capsys) -> None:
    from nnx import cli

    table = tmp_path / "t.csv"
    rows = "".join(f"{i % 3 * 2.0},{(i * 7) % 5},{'abc'[i % 3]}\n" for i in range(30))
    table.write_text("0,1,2\n" + rows)
    base = ["train", str(table), "--epochs", "1", "--quiet"]
    assert cli.main(base) == 0
    assert "24 training and 6 held-out samples (stratified), 2 inputs, 3 classes" in capsys.readouterr().out
    assert cli.main([*base, "--no-header"]) == 1
    assert f"{table}: line 1, column 3: the label '2' is a number" in capsys.readouterr().err
    table.write_text("x,y,kind\n" + rows)
    assert cli.main([*base, "--label-column", "kind"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,kind\n1,2,a\n3,1e999,b\n")
    assert cli.main(["train", str(bad)]) == 1
    assert f"{bad}: line 3, column 2 ('y'): '1e999' is not a finite number" in capsys.readouterr().err


def test_resume_with_another_learning_rate_is_refused_unless_allowed(tmp_path, capsys) -> None:
    from nnx import cli

    base = ["train", "digits", "--limit", "200", "--hidden", "8", "--quiet", "--checkpoint", str(tmp_path)]
    assert cli.main([*base, "--epochs", "1"]) == 0
    assert cli.main([*base, "--epochs", "2", "--resume", "--lr", "0.01", "--seed", "3"]) == 1
    err = capsys.readouterr().err
    assert "settings differ from the checkpointed run's (lr: 0.001 -> 0.01" in err and "seed: 0 -> 3" in err
    assert nnx.load_checkpoint(tmp_path / "checkpoint.nnx").epoch == 1
    assert cli.main([*base, "--epochs", "2", "--resume", "--lr", "0.01", "--seed", "3", "--allow-changes"]) == 0
    err = capsys.readouterr().err
    assert "keeping the checkpointed run's data split (seed 0)" in err
    assert "changed settings: lr: 0.001 -> 0.01; seed: 0 -> 3" in err
    assert nnx.load_checkpoint(tmp_path / "checkpoint.nnx").epoch == 2


def test_info_survives_a_reader_that_goes_away_and_a_bad_environment() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nnx", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `nnx info | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
    env = {**__import__("os").environ, "NNX_BACKEND": "bogus"}
    result = subprocess.run([sys.executable, "-m", "nnx", "info"], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "selected backend: none: unknown backend 'bogus'" in result.stdout and "(from $NNX_BACKEND)" in result.stdout
    assert "numpy             available" in result.stdout  # the backends are still listed


def test_csv_to_saved_model_to_predictions_end_to_end(tmp_path) -> None:
    rng = np.random.default_rng(1)
    rows = ["width,height,kind"]
    for k, name in enumerate(["cat", "dog", "eel"]):
        for w, h in rng.normal(k * 3.0, 1.0, (40, 2)) * [100.0, 0.01]:
            rows.append(f"{w:.4f},{h:.6f},{name}")
    table = tmp_path / "animals.csv"
    table.write_text("\n".join(rows) + "\n")
    model_file = tmp_path / "animals.nnx"
    trained = run_nnx("train", str(table), "--quiet", "--save", str(model_file))
    assert trained.returncode == 0, trained.stderr
    assert "3 classes" in trained.stdout and "(stratified)" in trained.stdout

    shuffled = tmp_path / "new.csv"  # the columns in another order, no labels: matched by name
    shuffled.write_text("height,width\n" + "".join(f"{r.split(',')[1]},{r.split(',')[0]}\n" for r in rows[1:]))
    predicted = run_nnx("predict", str(model_file), str(shuffled), "--proba", "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "kind,p(cat),p(dog),p(eel)" and len(lines) == 121
    cli_labels = [line.split(",")[0] for line in lines[1:]]
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    model = nnx.load(model_file)
    x = np.array([[float(v) for v in r.split(",")[:2]] for r in rows[1:]])
    assert nnx.predict_classes(model, x).tolist() == cli_labels  # the same labels through Python
    assert sum(a == r.split(",")[2] for a, r in zip(cli_labels, rows[1:])) >= 108  # 90% of an easy table

    scored = run_nnx("evaluate", str(model_file), str(table))
    assert scored.returncode == 0, scored.stderr
    assert "macro avg" in scored.stdout and "confusion matrix" in scored.stdout and "eel" in scored.stdout
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("width,height,kind\n1,2,cow\n")
    refused = run_nnx("evaluate", str(model_file), str(wrong))
    assert refused.returncode == 1 and "the label 'cow' is not one the model knows" in refused.stderr
    missing = tmp_path / "missing.csv"
    missing.write_text("width,size\n1,2\n")
    refused = run_nnx("predict", str(model_file), str(missing))
    assert refused.returncode == 1 and "input columns 'height' are not in the file's header" in refused.stderr


def _main(capsys, *args: str) -> tuple[int, str]:
    """``nnx ARGS`` in this process: the exit status and standard error."""
    from nnx import cli

    try:
        code = cli.main(list(args))
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def _model_and_table(tmp_path, capsys):
    model, table = tmp_path / "m.nnx", tmp_path / "d.csv"
    assert _main(capsys, "train", "digits", "--limit", "60", "--epochs", "1", "--hidden", "4", "--quiet",
                 "--save", str(model))[0] == 0
    ds = nnx.datasets.load("digits", scale=False)
    table.write_text("".join(",".join(str(int(v)) for v in row) + f",{label}\n"
                             for row, label in zip(ds.x[:12], ds.y[:12])))
    return model, table


def test_no_output_destroys_an_input_or_another_output(tmp_path, capsys) -> None:
    model, table = _model_and_table(tmp_path, capsys)
    (tmp_path / "sub").mkdir()
    files = {p: p.read_bytes() for p in (model, table)}
    cases = [
        (["predict", str(model), str(table), "--out", str(model)], "is also an input"),
        (["predict", str(model), str(table), "--out", str(table)], "is also an input"),
        (["predict", str(model), str(table), "--out", str(tmp_path / "sub" / ".." / "m.nnx")], "is also an input"),
        (["predict", str(model), str(table), "--out", os.devnull], "not a regular file"),
        (["train", str(table), "--epochs", "1", "--save", str(table)], "is also an input"),
        (["train", "digits", "--epochs", "1", "--save", str(tmp_path / "x.png"), "--plot", str(tmp_path / "x.png")],
         "is also another output"),
        (["train", "digits", "--epochs", "1", "--checkpoint", str(tmp_path / "ck"),
          "--save", str(tmp_path / "ck" / "checkpoint.nnx")], "is also another output"),
        (["parity", "--backends", "numpy,array_api_strict", "--model", str(model), "--json", str(model)],
         "is also an input"),
    ]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        cases.append((["predict", str(model), str(table), "--out", str(tmp_path / "fifo")], "not a regular file"))
    for args, phrase in cases:
        code, err = _main(capsys, *args)
        assert code == 2 and phrase in err, (args, err)
    assert all(p.read_bytes() == content for p, content in files.items())
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "ck").exists()
    assert _is_char_device(os.devnull)


def _is_char_device(path: str) -> bool:
    import stat

    return stat.S_ISCHR(os.stat(path).st_mode) if os.name == "posix" else True


def test_a_second_run_on_a_checkpoint_directory_is_refused_with_the_holders_pid(tmp_path, capsys) -> None:
    from test_outputs import _hold

    if nnx.checkpoint.fcntl is None:
        pytest.skip("no advisory file locks on this system")
    holder = _hold(tmp_path)
    try:
        code, err = _main(capsys, "train", "digits", "--limit", "60", "--epochs", "1", "--quiet",
                          "--checkpoint", str(tmp_path))
    finally:
        holder.communicate("")
    assert code == 1 and f"in use by another run (process {holder.pid})" in err, err
    assert not (tmp_path / "checkpoint.nnx").exists()
    regular = tmp_path / "file"
    regular.write_text("x")
    code, err = _main(capsys, "train", "digits", "--epochs", "1", "--checkpoint", str(regular / "sub"))
    assert code == 2 and "cannot be made" in err


def test_bad_data_files_are_clear_errors(tmp_path, capsys) -> None:
    model, table = _model_and_table(tmp_path, capsys)
    long_cell = tmp_path / "long.csv"
    long_cell.write_text("1,2,0\n3," + "9" * 200_000 + ",1\n5,6,0\n7,8,1\n")
    huge_label = tmp_path / "huge.csv"
    huge_label.write_text("1,2,0\n3,4,1e300\n5,6,0\n7,8,1\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("a,a,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    plain = nnx.save(nnx.Sequential(nnx.Linear(2, 3, seed=0)), tmp_path / "plain.nnx")  # no ClassLabels
    beyond = tmp_path / "beyond.csv"
    beyond.write_text("1,2,0\n3,4,1e300\n5,6,2\n")
    named = tmp_path / "named.csv"
    named.write_text(",".join(f"p{i}" for i in range(64)) + ",label\n" + table.read_text())
    for args, phrase in (
        (["train", str(long_cell), "--epochs", "1"], "line 2 cannot be read as CSV"),
        (["evaluate", str(model), str(long_cell)], "cannot be read as CSV"),
        (["train", str(huge_label), "--epochs", "1"], "the label '1e300' is beyond"),
        (["train", str(twice), "--epochs", "1"], "names column(s) 'a' more than once"),
        (["evaluate", str(model), str(named), "--label-column", "nosuch"], "no column named 'nosuch'"),
        (["evaluate", str(model), str(table), "--label-column", "nosuch"], "the file has no header"),
        (["evaluate", str(plain), str(beyond), "--no-header"], "data row 2: the label '1e300' is not a class number"),
    ):
        code, err = _main(capsys, *args)
        assert code == 1 and phrase in err, (args, err)
    code, err = _main(capsys, "train", "digits", "--limit", "10", "--val", "0.01", "--epochs", "1")
    assert code == 2 and "holds out 0" in err
    images = np.ones((4, 2, 2), ">f4")
    images[1, 0, 1] = np.nan  # one NaN once scaled every value by a NaN maximum
    (tmp_path / "idx").mkdir()
    for name, array, code_byte in (("train-images-idx3-ubyte", images, 0x0D),
                                   ("train-labels-idx1-ubyte", np.array([0, 1, 0, 1], ">u1"), 0x08)):
        (tmp_path / "idx" / name).write_bytes(bytes([0, 0, code_byte, array.ndim])
                                              + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())
    code, err = _main(capsys, "train", str(tmp_path / "idx"), "--epochs", "1")
    assert code == 1 and "the value at index (1, 0, 1) is nan, not a finite number" in err, err


def test_a_resumed_run_keeps_its_held_out_samples(tmp_path, capsys) -> None:
    base = ["train", "digits", "--limit", "200", "--hidden", "8", "--quiet", "--checkpoint", str(tmp_path)]
    assert _main(capsys, *base, "--epochs", "1")[0] == 0  # its split: 160 training and 40 held out
    for changed in (["--val", "0.5"], ["--limit", "150"], ["--val", "0.5", "--limit", "100", "--seed", "4"]):
        from nnx import cli

        code = cli.main([*base, "--epochs", "2", "--resume", "--allow-changes", *changed])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "160 training and 40 held-out samples" in out, (changed, out)
        assert "keeping the checkpointed run's data split" in err
        code, err = _main(capsys, *base, "--epochs", "3", "--resume", *changed)
        assert code == 1 and "settings differ" in err
