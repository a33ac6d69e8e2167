"""``nnx train FILE.csv`` with its defaults against scikit-learn's MLPClassifier on public tables.

The tables are scikit-learn's bundled copies of three UCI sets (iris: 150
rows, 4 features, 3 classes; wine: 178, 13, 3; breast cancer: 569, 30, 2),
written as CSV files with a header and the class names as string labels.
For each of 5 seeds both sides use the same stratified 80/20 split (nnx's
``train_val_split``, as ``nnx train`` makes it): nnx through its command
line, scikit-learn as ``MLPClassifier()`` on standardised features (a
``StandardScaler`` fitted on the training split) and as ``MLPClassifier()``
on the raw features. With ``--nnx-root DIR`` the command is taken from another
checkout (an earlier version, for a before/after table).

    pip install scikit-learn
    python benchmarks/tabular_vs_sklearn.py [--out results.md] [--nnx-root DIR] [--numeric-labels]
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
TABLES = ("iris", "wine", "breast_cancer")


def write_table(name: str, folder: Path, numeric: bool) -> Path:
    from sklearn import datasets as sk

    bunch = getattr(sk, f"load_{name}")()
    path = folder / f"{name}.csv"
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*(n.replace(" ", "_") for n in bunch.feature_names), "class"])
        for row, target in zip(bunch.data, bunch.target):
            out.writerow([*(repr(float(v)) for v in row), int(target) if numeric else str(bunch.target_names[target])])
    return path


def nnx_accuracy(path: Path, seed: int, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-m", "nnx", "train", str(path), "--seed", str(seed), "--quiet",
                             "--label-column", "-1"],
                            capture_output=True, text=True, env=env, cwd=root)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return float(re.search(r"held-out accuracy: ([\d.]+)%", result.stdout).group(1))


def sklearn_accuracies(path: Path, seed: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import nnx

    ds = nnx.datasets.load_csv(path, label_column=-1)
    x, y = ds.x, ds.y
    (train, _), (held, _) = nnx.datasets.train_val_split(np.arange(len(y)), y, val=0.2, seed=seed, stratify=True)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in (make_pipeline(StandardScaler(), MLPClassifier(random_state=seed)),
                      MLPClassifier(random_state=seed)):
            model.fit(x[train], y[train])
            scores.append(100.0 * float((model.predict(x[held]) == y[held]).mean()))
    return scores[0], scores[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table (markdown) there")
    parser.add_argument("--nnx-root", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout whose nnx command runs (default: this one)")
    parser.add_argument("--numeric-labels", action="store_true",
                        help="write class numbers instead of names (earlier versions read only numbers)")
    args = parser.parse_args()
    root = Path(args.nnx_root).resolve()
    import sklearn

    lines = [f"nnx train (defaults) vs scikit-learn {sklearn.__version__} MLPClassifier(), held-out accuracy %, "
             f"mean of seeds {list(SEEDS)}, stratified 80/20 split; nnx from {root}",
             f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}",
             "", "| table | nnx train | sklearn (standardised) | sklearn (raw) | nnx - sklearn std | per seed nnx / sklearn std |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in TABLES:
            path = write_table(name, Path(tmp), args.numeric_labels)
            ours, std, raw = [], [], []
            for seed in SEEDS:
                ours.append(nnx_accuracy(path, seed, root))
                a, b = sklearn_accuracies(path, seed)
                std.append(a)
                raw.append(b)
            per_seed = ", ".join(f"{o:.1f}/{s:.1f}" for o, s in zip(ours, std))
            lines.append(f"| {name} | {np.mean(ours):.2f} | {np.mean(std):.2f} | {np.mean(raw):.2f} | "
                         f"{np.mean(ours) - np.mean(std):+.2f} | {per_seed} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
