"""``nnx train --task regression``, and ``nnx predict`` / ``nnx evaluate`` of a regression model, end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import cli


def run_nnx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nnx", *args], capture_output=True, text=True)


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``nnx ARGS`` run in this process (no interpreter start-up): exit status, stdout, stderr."""
    try:
        status = cli.main(list(args))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _houses(folder: Path, n: int = 120) -> tuple[Path, np.ndarray, np.ndarray]:
    """A CSV file with a header: three inputs on very different scales and a price of mean ~300,000."""
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(40, 200, n), rng.integers(1, 6, n), rng.uniform(0, 0.05, n)], axis=1)
    price = 2000.0 * x[:, 0] + 15000.0 * x[:, 1] - 1e6 * x[:, 2] + 50000.0 + rng.normal(0, 2000.0, n)
    lines = ["area,rooms,distance,price"] + [f"{a:.3f},{int(r)},{d:.6f},{p:.2f}" for (a, r, d), p in zip(x, price)]
    path = folder / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, x, price


def test_csv_to_train_save_predict_evaluate(tmp_path: Path) -> None:
    path, _, price = _houses(tmp_path)
    trained = run_nnx("train", str(path), "--task", "regression", "--epochs", "60", "--lr", "0.01", "--quiet",
                      "--save", str(tmp_path / "houses.nnx"))
    assert trained.returncode == 0, trained.stderr
    assert "96 training and 24 held-out samples, 3 inputs, target 'price' (regression)" in trained.stdout
    assert "MSE on the standardised target" in trained.stdout
    held = re.search(r"held-out RMSE ([\d.e+]+), MAE ([\d.e+]+), R\^2 ([\d.-]+) \(24 samples\)", trained.stdout)
    assert held is not None, trained.stdout
    assert float(held.group(3)) > 0.9  # the price is nearly linear in the inputs
    model = nnx.load(tmp_path / "houses.nnx")
    assert [type(m).__name__ for m in model][0] == "Standardize"
    assert type(model[-1]).__name__ == "Destandardize" and model[-1].names == ["price"]

    predicted = run_nnx("predict", str(tmp_path / "houses.nnx"), str(path), "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "price" and len(rows) == 121
    values = np.array([float(r) for r in rows[1:]])
    assert abs(values.mean() - price.mean()) < 0.05 * price.std()  # in the target's units, not standardised
    table = nnx.datasets.load_csv(path, target="values")  # the inputs as the file rounds them
    direct = nnx.to_host(nnx.predict(model, table.x)).reshape(-1)
    np.testing.assert_allclose(values, direct, rtol=1e-6)

    evaluated = run_nnx("evaluate", str(tmp_path / "houses.nnx"), str(path))
    assert evaluated.returncode == 0, evaluated.stderr
    scores = dict(re.findall(r"^(RMSE|MAE|R\^2)\s+([\d.e+-]+)$", evaluated.stdout, re.M))
    expected = nnx.metrics.regression_scores(table.y, values)
    assert float(scores["RMSE"]) == float(f"{expected['rmse']:.6g}")
    assert float(scores["MAE"]) == float(f"{expected['mae']:.6g}")
    assert abs(float(scores["R^2"]) - expected["r2"]) < 1e-6 and expected["r2"] > 0.9


def test_a_regression_resumes_from_its_checkpoint_exactly(tmp_path: Path) -> None:
    path, _, _ = _houses(tmp_path, 40)
    common = ["train", str(path), "--task", "regression", "--quiet", "--hidden", "8"]
    straight = run_nnx(*common, "--epochs", "4")
    first = run_nnx(*common, "--epochs", "2", "--checkpoint", str(tmp_path / "ck"))
    resumed = run_nnx(*common, "--epochs", "4", "--checkpoint", str(tmp_path / "ck"), "--resume")
    assert straight.returncode == first.returncode == resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "after epoch 2" in resumed.stdout

    def held(text: str) -> str:
        return re.search(r"held-out RMSE .*\)", text).group(0)

    assert held(resumed.stdout) == held(straight.stdout)


def test_a_classification_of_a_continuous_target_points_to_regression(tmp_path: Path, capsys) -> None:
    path, _, _ = _houses(tmp_path, 30)
    status, _, err = in_process(capsys, "train", str(path), "--epochs", "1")
    assert status == 1
    assert "not a whole number" in err and "continuous target" in err and "--task regression" in err
    whole = tmp_path / "scores.csv"  # whole numbers, but nearly one value per row
    whole.write_text("a,b,score\n" + "".join(f"{i},{i % 7},{100 + 3 * i}\n" for i in range(60)))
    status, _, err = in_process(capsys, "train", str(whole), "--epochs", "1", "--quiet")
    assert status == 0, err
    assert "60 distinct numbers for 60 samples" in err and "--task regression" in err
    classes = tmp_path / "classes.csv"
    classes.write_text("a,b,c\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(60)))
    status, _, err = in_process(capsys, "train", str(classes), "--epochs", "1", "--quiet")
    assert status == 0 and "--task regression" not in err


def test_regression_usage_errors_and_bad_targets(tmp_path: Path, capsys) -> None:
    path, _, _ = _houses(tmp_path, 30)
    for args, message in (
        (["train", "digits", "--task", "regression"], "--task regression needs a CSV file"),
        (["train", str(path), "--task", "regression", "--model", "cnn"], "--model cnn classifies images"),
        (["train", str(path), "--task", "ranking"], "invalid choice: 'ranking'"),
    ):
        status, _, err = in_process(capsys, *args)
        assert status == 2 and message in err, (args, err)
    model = str(tmp_path / "m.nnx")
    assert in_process(capsys, "train", str(path), "--task", "regression", "--epochs", "1", "--quiet",
                      "--save", model)[0] == 0
    status, _, err = in_process(capsys, "predict", model, str(path), "--proba")
    assert status == 2 and "--proba is for classifiers" in err
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("\n", "\n1,1,0.01,high\n", 1))
    status, _, err = in_process(capsys, "evaluate", model, str(bad))
    assert status == 1 and "data row 1: the target 'high' is not a finite number" in err
    text = tmp_path / "text.csv"
    text.write_text("a,b,y\n1,2,low\n3,4,high\n5,6,low\n7,8,high\n")
    status, _, err = in_process(capsys, "train", str(text), "--task", "regression")
    assert status == 1 and "'low' is not a number" in err


def test_load_csv_reads_a_regression_target(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,2,0.5\n3,4,-1e3\n5,6,7\n")
    ds = nnx.datasets.load_csv(path, target="values")
    assert ds.y.dtype == np.float64 and ds.y.tolist() == [0.5, -1000.0, 7.0]
    assert ds.labels is None and ds.classes == 0 and ds.label_name == "y" and ds.x.tolist()[1] == [3.0, 4.0]
    first = nnx.datasets.load_csv(path, label_column="a", target="values")
    assert first.y.tolist() == [1.0, 3.0, 5.0] and first.x.shape == (3, 2)
    path.write_text("a,b,y\n1,2,0.5\n3,4,inf\n")
    with pytest.raises(nnx.errors.DataFormatError, match=r"line 3, column 3 \('y'\): 'inf' is not a finite number"):
        nnx.datasets.load_csv(path, target="values")
    with pytest.raises(ValueError, match="target must be 'classes' or 'values'"):
        nnx.datasets.load_csv(path, target="numbers")
    assert nnx.datasets.looks_continuous([0.5, 1.0]) and nnx.datasets.looks_continuous(np.arange(30))
    assert not nnx.datasets.looks_continuous(np.arange(300) % 30) and not nnx.datasets.looks_continuous([1, 2, 3])
