"""Mixed precision's numerics: what float16 and bfloat16 compute cost in accuracy and save in memory.

    PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/precision_accuracy.py [--quick]

Prints Markdown:

1. Per-layer error against float64, in units of the dtype's epsilon (float16 2**-10, bfloat16 2**-7,
   float32 2**-23): the largest absolute difference over the largest reference value, for the forward
   output and for the backward (the input's and the parameters' gradients, the worst of them). Inputs
   and output gradients are rounded to the low dtype first and the float64 reference takes the same
   rounded values; the weights are the float32 master weights, which the policy rounds to the low dtype
   for the step (that rounding is part of the error, as it is in training).
2. Held-out accuracy of ``nnx train`` (digits and mnist_5k, MLP and CNN) and the tiny GPT example's
   exact match, trained in float32, float16 (loss scaling) and bfloat16 on torch's CPU tensors (NumPy
   has no bfloat16 that its array-API namespace takes, and its float16 matrix product has no BLAS);
   held-out scores come from the float32 master weights.
3. Peak memory of the activations a training forward keeps, float16 against float32, on NumPy
   (tracemalloc sees NumPy's allocations; bfloat16 arrays are the same size as float16 ones).

CPU seconds are process time on whatever machine runs it: context, not a speed claim.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

import nnx
from nnx import backend

EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23}
LOW = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16")]


# 1. per-layer error ----------------------------------------------------------------------------


def _layers() -> list[tuple[str, Callable[[str], nnx.Layer], tuple[int, ...]]]:
    """(name, build(dtype) with fixed seeds, input shape)."""
    return [
        ("Linear 64->64", lambda d: nnx.Linear(64, 64, seed=0, dtype=d), (32, 64)),
        ("Conv2d 4->8 3x3", lambda d: nnx.Conv2d(4, 8, 3, padding=1, seed=0, dtype=d), (8, 4, 12, 12)),
        ("LayerNorm 64", lambda d: nnx.LayerNorm(64, dtype=d), (32, 64)),
        ("BatchNorm1d 64", lambda d: nnx.BatchNorm1d(64, dtype=d), (32, 64)),
        ("Softmax", lambda d: nnx.Softmax(), (32, 64)),
        ("GELU", lambda d: nnx.GELU(), (32, 64)),
        ("Tanh", lambda d: nnx.Tanh(), (32, 64)),
        ("MultiHeadAttention 32x4", lambda d: nnx.MultiHeadAttention(32, 4, seed=0, dtype=d), (4, 10, 32)),
        ("LSTM 16->32", lambda d: nnx.LSTM(16, 32, seed=0, dtype=d), (4, 10, 16)),
    ]


def _relative(got: Any, want: Any) -> float:
    a, b = nnx.to_host(got).astype(np.float64), nnx.to_host(want)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _one_layer(name: str, build: Callable[[str], nnx.Layer], shape: tuple[int, ...], dtype: str) -> tuple[float, float]:
    """(forward, backward) error of ``dtype`` (a low dtype under a policy, or plain float32) in its epsilons."""
    rng = np.random.default_rng(0)
    layer = build("float32")
    x, xp = nnx.to_device(rng.normal(size=shape), name, "float32"), backend.namespace(name)
    policy = nnx.Precision(dtype) if dtype != "float32" else None
    compute = policy.compute(layer) if policy else contextlib.nullcontext()
    with compute, backend.overflow_expected():
        xin = policy.cast(x) if policy else x
        y = layer.forward(xin)
        g = nnx.to_device(rng.normal(size=tuple(y.shape)), name, "float32")
        gin = policy.cast(g) if policy else g
        dx = layer.backward(gin)
    ref = build("float64")
    ref.load_state_dict({k: nnx.to_device(nnx.to_host(v), name, "float64") for k, v in layer.state_dict().items()})
    y_ref = ref.forward(xp.astype(xin, xp.float64))
    dx_ref = ref.backward(xp.astype(gin, xp.float64))
    back = [_relative(dx, dx_ref)] + [_relative(p.grad, r.grad) for p, r in zip(layer.parameters(), ref.parameters())]
    return _relative(y, y_ref) / EPS[dtype], max(back) / EPS[dtype]


def layer_errors() -> str:
    columns = [("numpy", "float32"), *LOW]
    head = " | ".join(f"{n} {d} fwd / bwd" for n, d in columns)
    lines = [f"| layer | {head} |", "|---" * (len(columns) + 1) + "|"]
    for label, build, shape in _layers():
        cells = []
        for name, dtype in columns:
            if backend.available()[name] is not None:
                cells.append("n/a")
                continue
            with nnx.use(name):
                f, b = _one_layer(name, build, shape, dtype)
            cells.append(f"{f:.2f} / {b:.2f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


# 2. training ---------------------------------------------------------------------------------


def train_command(dataset: str, model: str, precision: str, epochs: int, limit: int | None) -> tuple[float, float]:
    """``nnx train`` on torch: (held-out accuracy in %, CPU seconds)."""
    from nnx import cli

    args = ["train", dataset, "--backend", "torch", "--model", model, "--precision", precision,
            "--epochs", str(epochs), "--batch-size", "64", "--quiet"]
    if limit:
        args += ["--limit", str(limit)]
    out = io.StringIO()
    started = time.process_time()
    with contextlib.redirect_stdout(out):
        if cli.main(args) != 0:
            raise RuntimeError(f"nnx {' '.join(args)} failed")
    found = re.search(r"held-out accuracy: ([0-9.]+)%", out.getvalue())
    return float(found.group(1)), time.process_time() - started


def tiny_gpt(precision: str, steps: int) -> tuple[float, float]:
    """The tiny GPT example (reversing 4 digits) on torch: (held-out exact match in %, CPU seconds)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import tiny_gpt as gpt

    started = time.process_time()
    with nnx.use("torch"):
        model, _ = gpt.train(steps, 4, 0, precision=None if precision == "float32" else precision)
        match = gpt.exact_match(model, 4, 0)
    return 100 * match, time.process_time() - started


def training(quick: bool) -> tuple[str, list[str]]:
    runs = [("digits", "mlp", 4 if quick else 20, None), ("digits", "cnn", 2 if quick else 10, None),
            ("mnist_5k", "mlp", 2 if quick else 10, None), ("mnist_5k", "cnn", 1 if quick else 4, None)]
    dtypes = ("float32", "float16", "bfloat16")
    commands, lines = [], ["| run | " + " | ".join(dtypes) + " | float16 - float32 | bfloat16 - float32 |",
                           "|---|---|---|---|---|---|"]
    for dataset, model, epochs, limit in runs:
        got = {d: train_command(dataset, model, d, epochs, limit) for d in dtypes}
        commands.append(f"nnx train {dataset} --backend torch --model {model} --epochs {epochs} --batch-size 64 "
                        f"--precision {{float32,float16,bfloat16}}")
        lines.append(_row(f"{dataset} {model}, {epochs} epochs", got))
    steps = 60 if quick else 500
    got = {d: tiny_gpt(d, steps) for d in dtypes}
    commands.append(f"tiny_gpt.train({steps}, 4, 0, precision=...) on torch (examples/tiny_gpt.py --backend torch "
                    f"--length 4 --steps {steps} --precision ...), exact match on 1,000 held-out sequences")
    lines.append(_row(f"tiny GPT, {steps} steps (exact match)", got))
    return "\n".join(lines), commands


def _row(label: str, got: dict[str, tuple[float, float]]) -> str:
    cells = [f"{a:.2f}% ({s:.0f} s)" for a, s in got.values()]
    base = got["float32"][0]
    return (f"| {label} | {' | '.join(cells)} | {got['float16'][0] - base:+.2f} | "
            f"{got['bfloat16'][0] - base:+.2f} |")


# 3. memory ----------------------------------------------------------------------------------


def _mlp() -> tuple[nnx.Layer, tuple[int, ...]]:
    return nnx.Sequential(nnx.Linear(784, 512, seed=0), nnx.ReLU(), nnx.Linear(512, 512, seed=1), nnx.GELU(),
                          nnx.Linear(512, 10, seed=2)), (256, 784)


def _cnn() -> tuple[nnx.Layer, tuple[int, ...]]:
    return nnx.Sequential(nnx.Conv2d(1, 16, 3, padding=1, seed=0), nnx.ReLU(), nnx.MaxPool2d(2),
                          nnx.Conv2d(16, 32, 3, padding=1, seed=1), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(),
                          nnx.Linear(32 * 7 * 7, 10, seed=2)), (64, 1, 28, 28)


def _activation_bytes(build: Callable[[], tuple[nnx.Layer, tuple[int, ...]]], precision: str | None) -> tuple[int, int]:
    """(bytes a training forward keeps, peak bytes above the start during forward and backward)."""
    model, shape = build()
    x = nnx.to_device(np.random.default_rng(0).normal(size=shape), "numpy", "float32")
    policy = nnx.Precision(precision) if precision else None
    with policy.compute(model) if policy else contextlib.nullcontext(), backend.overflow_expected():
        xin = policy.cast(x) if policy else x
        model.backward(model.forward(xin), input_grad=False)  # scratch buffers and caches made once, before
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        y = model.forward(xin)
        kept = tracemalloc.get_traced_memory()[0] - start
        model.backward(y, input_grad=False)
        peak = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
    return kept, peak


def memory() -> str:
    lines = ["| model (batch) | kept by forward, float32 | float16 | ratio | peak fwd+bwd, float32 | float16 | ratio |",
             "|---|---|---|---|---|---|---|"]
    with nnx.use("numpy"):
        for ops in ("NumPy's float32 fast paths", "generic ops"):
            if ops == "generic ops":  # the fast paths (in-place scratch buffers) exist for float32 and float64 only
                backend.disable_fast_path("numpy")
            for label, build in (("MLP 784-512-512-10 (256)", _mlp), ("CNN 16-32 conv, 28x28 (64)", _cnn)):
                k32, p32 = _activation_bytes(build, None)
                k16, p16 = _activation_bytes(build, "float16")
                lines.append(f"| {label}, {ops} | {k32 / 2**20:.2f} MiB | {k16 / 2**20:.2f} MiB | {k16 / k32:.2f} | "
                             f"{p32 / 2**20:.2f} MiB | {p16 / 2**20:.2f} MiB | {p16 / p32:.2f} |")
        backend.enable_fast_path("numpy")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs only (checks the script runs)")
    parser.add_argument("--skip-training", action="store_true", help="only the layer errors and memory")
    args = parser.parse_args()
    if backend.available()["torch"] is None:
        import torch

        torch.set_num_threads(1)
    print("## Per-layer error against float64, in epsilons of the dtype (forward / backward)\n")
    print(layer_errors())
    print("\n## Activation memory (NumPy, tracemalloc)\n")
    print(memory())
    if args.skip_training:
        return
    print("\n## Held-out accuracy (torch CPU tensors; CPU seconds in brackets)\n")
    table, commands = training(args.quick)
    print(table)
    print("\nCommands:\n")
    for c in commands:
        print(f"    {c}")


if __name__ == "__main__":
    main()
