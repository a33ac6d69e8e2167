"""``nnx train --task regression`` with its defaults against scikit-learn's MLPRegressor on the diabetes table.

The table is scikit-learn's bundled copy of the diabetes data (Efron et al.,
2004: 442 patients, 10 baseline measurements, a disease-progression score a
year later), written unscaled as a CSV file with a header. For each of 5 seeds
all sides use the same 80/20 split (nnx's ``train_val_split``, as
``nnx train`` makes it): nnx through its command line; ``MLPRegressor()``
(its defaults) on standardised inputs (a ``StandardScaler`` fitted on the
training split), the reference of the target; the same with the target
standardised too (``TransformedTargetRegressor``), and ``RidgeCV`` on
standardised inputs, for context. The score is the held-out RMSE in the
target's units (lower is better); the target is nnx's mean RMSE within 5% of
``MLPRegressor``'s.

    pip install scikit-learn
    python benchmarks/regression_bench.py [--out results.md] [-- extra nnx train options]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

SEEDS = range(5)
ROOT = Path(__file__).resolve().parents[1]


def write_diabetes(folder: Path) -> Path:
    """scikit-learn's diabetes table, unscaled, as ``diabetes.csv`` (the target last, named ``progression``)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    path = folder / "diabetes.csv"
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*bunch.feature_names, "progression"])
        for row, target in zip(bunch.data, bunch.target):
            out.writerow([*(repr(float(v)) for v in row), repr(float(target))])
    return path


def nnx_rmse(path: Path, seed: int, extra: list[str]) -> float:
    """The held-out RMSE ``nnx train --task regression`` prints for this seed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "nnx", "train", str(path), "--task", "regression", "--seed",
                             str(seed), "--quiet", *extra], capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return float(re.search(r"held-out RMSE ([\d.eE+-]+)", result.stdout).group(1))


def sklearn_rmses(path: Path, seed: int) -> list[float]:
    """Held-out RMSEs of MLPRegressor (standardised inputs), the same with a standardised target, and RidgeCV."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sys.path.insert(0, str(ROOT))
    import nnx

    ds = nnx.datasets.load_csv(path, target="values")
    x, y = ds.x, ds.y
    (train, _), (held, _) = nnx.datasets.train_val_split(np.arange(len(y)), y, val=0.2, seed=seed)
    models = [
        make_pipeline(StandardScaler(), MLPRegressor(random_state=seed)),
        TransformedTargetRegressor(make_pipeline(StandardScaler(), MLPRegressor(random_state=seed)),
                                   transformer=StandardScaler()),
        make_pipeline(StandardScaler(), RidgeCV()),
    ]
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in models:
            model.fit(x[train], y[train])
            scores.append(float(np.sqrt(np.mean((model.predict(x[held]) - y[held]) ** 2))))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table (markdown) there")
    parser.add_argument("extra", nargs="*", help="options passed on to nnx train (after --)")
    args = parser.parse_args()
    import sklearn

    columns = ["nnx train", "MLPRegressor (std. inputs)", "MLPRegressor (std. inputs and target)", "RidgeCV"]
    rows: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_diabetes(Path(tmp))
        for seed in SEEDS:
            rows.append([nnx_rmse(path, seed, args.extra), *sklearn_rmses(path, seed)])
            print(f"seed {seed}: " + ", ".join(f"{c} {v:.2f}" for c, v in zip(columns, rows[-1])), flush=True)
    table = np.array(rows)
    means = table.mean(axis=0)
    extra = f" {' '.join(args.extra)}" if args.extra else ""
    lines = [f"nnx train --task regression{extra} vs scikit-learn {sklearn.__version__} on the diabetes table "
             f"(442 rows, 10 inputs), held-out RMSE (lower is better), seeds {list(SEEDS)}, 80/20 split",
             f"machine: {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}", "",
             "| seed | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for seed, row in zip(SEEDS, rows):
        lines.append(f"| {seed} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    lines.append("| mean | " + " | ".join(f"{v:.2f}" for v in means) + " |")
    ratio = means[0] / means[1]
    lines += ["", f"nnx / MLPRegressor (standardised inputs): {ratio:.3f} (target <= 1.05: "
              f"{'met' if ratio <= 1.05 else 'NOT met'}); nnx / MLPRegressor (standardised inputs and target): "
              f"{means[0] / means[2]:.3f}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
