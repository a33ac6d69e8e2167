"""Every layer's forward and backward and every optimizer update: nnx against the fastest NumPy form.

    python benchmarks/ops_bench.py              # the table, written to benchmarks/results/
    python benchmarks/ops_bench.py --quick      # a smoke run

Three contenders per row, run in turn within each repeat (interleaved):

* ``nnx``: the layer method, loss or optimizer op as a model calls it (input
  checks, the gradient check of the base class, dispatch to the backend's
  overrides of nnx.ops, which are on by default on NumPy);
* ``generic``: the same call with NumPy's overrides switched off, i.e. the
  array-API form alone (what every backend without overrides runs);
* ``numpy``: the fastest NumPy formulation we know, written by hand: buffers
  allocated once, every operation through ``out=``, no checks.

A backward is timed alone: its forward runs untimed before each call. Shapes
are the benchmark networks' (benchmarks/bench.py): W2 (batch 128, 784-512-512-10),
W1 (batch 1, 784-200-10), optimizer updates on a 784x512 weight. float32.
Times are microseconds per call, medians and minima over repeats.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import nnx  # noqa: E402
from nnx import ops  # noqa: E402

F32 = np.float32


class Case:
    """One row: ``contenders[name] = (setup, run)``; ``setup`` (untimed) runs before each ``run``."""

    def __init__(self, name: str, shape: str) -> None:
        self.name, self.shape = name, shape
        self.contenders: dict[str, tuple[Callable[[], Any] | None, Callable[[], Any]]] = {}

    def add(self, who: str, run: Callable[[], Any], setup: Callable[[], Any] | None = None) -> "Case":
        self.contenders[who] = (setup, run)
        return self


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _arr(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> np.ndarray:
    return (_rng(seed).standard_normal(shape) * scale).astype(F32)


def _layer_case(name: str, shape: str, make: Callable[[], nnx.Layer], x: np.ndarray, g: np.ndarray,
                hand_fwd: Callable[[], Any], hand_bwd: Callable[[], Any], params_only: bool = False) -> list[Case]:
    """A forward row and a backward row for layer ``make()`` on input ``x`` and output gradient ``g``."""
    nx, gen = make(), make()
    fwd = Case(f"{name} forward", shape)
    fwd.add("nnx", lambda: nx.forward(x)).add("generic", lambda: gen.forward(x)).add("numpy", hand_fwd)
    bwd = Case(f"{name} backward{'(input_grad=False)' if params_only else ''}", shape)
    bwd.add("nnx", lambda: nx.backward(g, input_grad=not params_only), lambda: nx.forward(x))
    bwd.add("generic", lambda: gen.backward(g, input_grad=not params_only), lambda: gen.forward(x))
    bwd.add("numpy", hand_bwd, hand_fwd)
    return [fwd, bwd]


def linear_cases(batch: int, n_in: int, n_out: int, bias: bool, params_only: bool) -> list[Case]:
    x, g = _arr((batch, n_in), 1), _arr((batch, n_out), 2)
    make = lambda: nnx.Linear(n_in, n_out, bias=bias, seed=0)  # noqa: E731
    W = nnx.to_host(make().weight.data)  # (out, in)
    b = np.zeros(n_out, F32)
    z, gW, gb, dx = np.empty((batch, n_out), F32), np.empty_like(W), np.empty_like(b), np.empty_like(x)

    def hand_fwd() -> None:
        np.matmul(x, W.T, out=z)
        if bias:
            np.add(z, b, out=z)

    def hand_bwd() -> None:
        if batch == 1:  # the outer product: several times faster than matmul's one-term path
            np.multiply(g.T, x, out=gW)
        else:
            np.matmul(g.T, x, out=gW)
        if bias:
            np.sum(g, axis=0, out=gb)
        if not params_only:
            np.matmul(g, W, out=dx)

    return _layer_case(f"Linear {n_in}->{n_out}", f"batch {batch}", make, x, g, hand_fwd, hand_bwd, params_only)


def activation_cases(shape: tuple[int, int]) -> list[Case]:
    x, g = _arr(shape, 3, 2.0), _arr(shape, 4)
    y, d = np.empty(shape, F32), np.empty(shape, F32)
    mask = np.empty(shape, np.bool_)
    label = f"{shape[0]}x{shape[1]}"
    rows: list[Case] = []

    # ReLU: max(x, 0); the gradient through a bool mask
    rows += _layer_case("ReLU", label, nnx.ReLU, x, g,
                        lambda: np.maximum(x, 0.0, out=y),
                        lambda: (np.greater(y, 0.0, out=mask), np.multiply(g, mask, out=d)))

    def sig_fwd() -> None:
        np.negative(x, out=y)
        np.exp(y, out=y)
        np.add(y, 1.0, out=y)
        np.reciprocal(y, out=y)

    def sig_bwd() -> None:
        np.subtract(1.0, y, out=d)
        np.multiply(d, y, out=d)
        np.multiply(d, g, out=d)

    rows += _layer_case("Sigmoid", label, nnx.Sigmoid, x, g, sig_fwd, sig_bwd)

    def tanh_bwd() -> None:
        np.multiply(y, y, out=d)
        np.subtract(1.0, d, out=d)
        np.multiply(d, g, out=d)

    rows += _layer_case("Tanh", label, nnx.Tanh, x, g, lambda: np.tanh(x, out=y), tanh_bwd)

    a = 0.01

    def leaky_fwd() -> None:
        np.multiply(x, a, out=y)
        np.maximum(x, y, out=y)

    def leaky_bwd() -> None:  # g * (a + (1 - a) * [x > 0])
        np.greater(x, 0.0, out=mask)
        np.multiply(mask, 1.0 - a, out=d)
        np.add(d, a, out=d)
        np.multiply(d, g, out=d)

    rows += _layer_case("LeakyReLU", label, nnx.LeakyReLU, x, g, leaky_fwd, leaky_bwd)

    c, k = math.sqrt(2.0 / math.pi), 0.044715
    t, u = np.empty(shape, F32), np.empty(shape, F32)

    def gelu_fwd() -> None:  # x/2 (1 + tanh(c (x + k x^3)))
        np.multiply(x, x, out=t)
        np.multiply(t, k, out=t)
        np.add(t, 1.0, out=t)
        np.multiply(t, x, out=t)
        np.multiply(t, c, out=t)
        np.tanh(t, out=t)
        np.add(t, 1.0, out=t)
        np.multiply(t, x, out=y)
        np.multiply(y, 0.5, out=y)

    def gelu_bwd() -> None:  # (1 + t)/2 + x/2 (1 - t^2) c (1 + 3k x^2), t = tanh(...)
        np.multiply(x, x, out=u)
        np.multiply(u, k, out=t)
        np.add(t, 1.0, out=t)
        np.multiply(t, x, out=t)
        np.multiply(t, c, out=t)
        np.tanh(t, out=t)
        np.multiply(u, 3 * k, out=u)
        np.add(u, 1.0, out=u)
        np.multiply(u, c, out=u)
        np.multiply(t, t, out=d)
        np.subtract(1.0, d, out=d)
        np.multiply(d, u, out=d)
        np.multiply(d, x, out=d)
        np.add(d, 1.0, out=d)
        np.add(d, t, out=d)
        np.multiply(d, 0.5, out=d)
        np.multiply(d, g, out=d)

    rows += _layer_case("GELU", label, nnx.GELU, x, g, gelu_fwd, gelu_bwd)

    rowmax, rowsum = np.empty((shape[0], 1), F32), np.empty((shape[0], 1), F32)

    def softmax_fwd() -> None:
        np.max(x, axis=1, keepdims=True, out=rowmax)
        np.subtract(x, rowmax, out=y)
        np.exp(y, out=y)
        np.sum(y, axis=1, keepdims=True, out=rowsum)
        np.divide(y, rowsum, out=y)

    def softmax_bwd() -> None:
        np.multiply(g, y, out=d)
        np.sum(d, axis=1, keepdims=True, out=rowsum)
        np.subtract(g, rowsum, out=d)
        np.multiply(d, y, out=d)

    rows += _layer_case("Softmax", label, nnx.Softmax, x, g, softmax_fwd, softmax_bwd)
    return rows


def loss_cases() -> list[Case]:
    rows = []
    n, c = 128, 10
    logits, labels = _arr((n, c), 5, 3.0), _rng(6).integers(0, c, n)
    sce, gen = nnx.losses.SoftmaxCrossEntropy(), nnx.losses.SoftmaxCrossEntropy()
    g, rowmax, rowsum = np.empty((n, c), F32), np.empty((n, 1), F32), np.empty((n, 1), F32)
    rows_idx = np.arange(n)

    def hand_sce() -> float:  # the loss and its gradient, as a careful hand-written step computes them
        np.max(logits, axis=1, keepdims=True, out=rowmax)
        np.subtract(logits, rowmax, out=g)
        picked = g[rows_idx, labels]
        np.exp(g, out=g)
        np.sum(g, axis=1, keepdims=True, out=rowsum)
        loss = float(np.mean(np.log(rowsum[:, 0]) - picked))
        np.multiply(rowsum, n, out=rowsum)
        np.divide(g, rowsum, out=g)
        g[rows_idx, labels] -= F32(1.0 / n)
        return loss

    case = Case("SoftmaxCrossEntropy forward (loss and gradient)", f"batch {n}, {c} classes")
    case.add("nnx", lambda: sce.forward(logits, labels)).add("generic", lambda: gen.forward(logits, labels))
    rows.append(case.add("numpy", hand_sce))

    o, t = _rng(7).random((1, c), dtype=F32), _rng(8).random((1, c), dtype=F32)
    sse, gen2 = nnx.losses.SumSquaredError(half=True), nnx.losses.SumSquaredError(half=True)
    d = np.empty((1, c), F32)

    def hand_sse() -> float:
        np.subtract(o, t, out=d)
        return 0.5 * float(np.dot(d[0], d[0]))

    case = Case("SumSquaredError(half) forward (loss and gradient)", f"batch 1, {c} outputs")
    case.add("nnx", lambda: sse.forward(o, t)).add("generic", lambda: gen2.forward(o, t))
    rows.append(case.add("numpy", hand_sse))
    return rows


def finite_check_cases() -> list[Case]:
    """The NaN/inf check a Sequential runs on its input (and a loss on its prediction and target)."""
    from nnx.layers.checks import check_finite

    rows = []
    for n in (1, 128):
        x = _arr((n, 784), 9)
        buf = np.empty(x.shape, np.bool_)
        case = Case("finite check (Sequential input)", f"{n}x784")
        case.add("nnx", lambda x=x: check_finite(x, nnx.backend.namespace_of(x), "input"))
        case.add("generic", lambda x=x: check_finite(x, nnx.backend.namespace_of(x), "input"))
        rows.append(case.add("numpy", lambda x=x, buf=buf: np.logical_and.reduce(np.isfinite(x, out=buf), axis=None)))
    return rows


def optimizer_cases(shape: tuple[int, int]) -> list[Case]:
    label = f"{shape[0]}x{shape[1]}"
    grad = _arr(shape, 9, 1e-3)
    rows = []

    def fresh() -> dict[str, np.ndarray]:
        return {"p": _arr(shape, 10, 0.05), "b": np.zeros(shape, F32), "m": np.zeros(shape, F32),
                "v": np.zeros(shape, F32), "s": np.empty(shape, F32)}

    def both(name: str, nnx_call: Callable[[dict], Any], hand: Callable[[dict], Any], what: str) -> Case:
        a, b, h = fresh(), fresh(), fresh()
        case = Case(f"{name} update", label + what)
        case.add("nnx", lambda: nnx_call(a))
        case.add("generic", lambda: nnx_call(b))
        return case.add("numpy", lambda: hand(h))

    lr, mu = 0.05, 0.9

    def sgd_hand(s: dict) -> None:
        np.multiply(grad, lr, out=s["s"])
        s["p"] -= s["s"]

    rows.append(both("SGD", lambda s: ops.sgd_update(s["p"], grad, None, lr, 0.0, 0.0, False), sgd_hand, ""))

    def mom_hand(s: dict) -> None:
        s["b"] *= mu
        s["b"] += grad
        np.multiply(s["b"], lr, out=s["s"])
        s["p"] -= s["s"]

    rows.append(both("SGD momentum", lambda s: ops.sgd_update(s["p"], grad, s["b"], lr, mu, 0.0, False),
                     mom_hand, ""))
    b1, b2, eps, step = 0.9, 0.999, 1e-8, 10

    def adam_hand(s: dict) -> None:
        m, v, t = s["m"], s["v"], s["s"]
        m *= b1
        np.multiply(grad, 1.0 - b1, out=t)
        m += t
        np.multiply(grad, grad, out=t)
        t *= 1.0 - b2
        v *= b2
        v += t
        np.sqrt(v, out=t)
        t *= 1.0 / math.sqrt(1.0 - b2**step)
        t += eps
        np.divide(m, t, out=t)
        t *= 1e-3 / (1.0 - b1**step)
        s["p"] -= t

    rows.append(both("Adam", lambda s: ops.adam_update(s["p"], grad, s["m"], s["v"], 1e-3, b1, b2, eps, step),
                     adam_hand, ""))
    alpha = 0.99

    def rms_hand(s: dict) -> None:
        v, t = s["v"], s["s"]
        np.multiply(grad, grad, out=t)
        t *= 1.0 - alpha
        v *= alpha
        v += t
        np.sqrt(v, out=t)
        t += eps
        np.divide(grad, t, out=t)
        t *= 1e-2
        s["p"] -= t

    rows.append(both("RMSProp", lambda s: ops.rmsprop_update(s["p"], grad, s["v"], None, 1e-2, alpha, eps, 0.0),
                     rms_hand, ""))
    return rows


class _Generic:
    """Inside the block (around the ``generic`` contender's calls), NumPy's overrides are off."""

    def __init__(self, on: bool) -> None:
        self.on = on and "numpy" in ops.backends_with_overrides()  # older nnx: the generic ops only

    def __enter__(self) -> None:
        if self.on:
            nnx.backend.disable_fast_path("numpy")

    def __exit__(self, *exc: object) -> None:
        if self.on:
            nnx.backend.enable_fast_path("numpy")


def cases(quick: bool) -> list[Case]:
    rows: list[Case] = []
    rows += linear_cases(128, 784, 512, True, params_only=True)
    rows += linear_cases(128, 512, 512, True, params_only=False)
    rows += linear_cases(1, 784, 200, False, params_only=True)
    rows += linear_cases(1, 200, 10, False, params_only=False)
    rows += activation_cases((128, 512))
    if not quick:
        rows += [r for r in activation_cases((1, 200)) if r.name.split()[0] in ("Sigmoid", "ReLU")]
    rows += loss_cases()
    rows += finite_check_cases()
    rows += optimizer_cases((784, 512))
    rows += [r for r in optimizer_cases((784, 200)) if r.name.startswith("SGD update")]
    return rows


def time_case(case: Case, repeats: int, budget_s: float) -> dict[str, dict[str, float]]:
    """Microseconds per call, median and minimum over ``repeats``, contenders interleaved per repeat."""
    calls: dict[str, int] = {}
    for who, (setup, run) in case.contenders.items():  # warm up and size the repeats
        n, spent = 0, 0.0
        with _Generic(who == "generic"):
            while spent < budget_s / 4 or n < 3:
                if setup is not None:
                    setup()
                t0 = time.perf_counter()
                run()
                spent += time.perf_counter() - t0
                n += 1
        calls[who] = max(3, int(n * 4 * budget_s / max(spent, 1e-9) / 4))
    samples: dict[str, list[float]] = {who: [] for who in case.contenders}
    for _ in range(repeats):
        for who, (setup, run) in case.contenders.items():
            total = 0.0
            with _Generic(who == "generic"):
                for _ in range(calls[who]):
                    if setup is not None:
                        setup()
                    t0 = time.perf_counter()
                    run()
                    total += time.perf_counter() - t0
            samples[who].append(total / calls[who] * 1e6)
    return {who: {"median": statistics.median(v), "min": min(v)} for who, v in samples.items()}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(), "numpy": np.__version__, "nnx": nnx.__version__,
        "cores": os.cpu_count(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl") if f in flags]
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = {p.get("internal_api"): p.get("num_threads") for p in threadpool_info()}
    except ImportError:
        pass
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        pass
    return info


def compare_table(before: dict[str, Any], after: list[dict[str, Any]], source: str) -> list[str]:
    """Markdown: each op's nnx time in ``before`` (another run) and in this run, beside the fastest NumPy form."""
    old = {(r["op"], r["shape"]): r["us"] for r in before["rows"]}
    lines = ["", f"Before and after: `nnx` in {source} ({before['machine']['date']}, nnx {before['machine']['nnx']}, "
             f"command `{before['command']}`) and in this run; the fastest NumPy form from this run. Medians (µs):",
             "", "| op | shape | before | after | fastest NumPy | before / NumPy | after / NumPy |",
             "|---|---|---|---|---|---|---|"]
    for r in after:
        was = old.get((r["op"], r["shape"]))
        if was is None:
            continue
        b, a, h = was["nnx"]["median"], r["us"]["nnx"]["median"], r["us"]["numpy"]["median"]
        lines.append(f"| {r['op']} | {r['shape']} | {b:.1f} | {a:.1f} | {h:.1f} | {b / h:.2f}x | {a / h:.2f}x |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="few repeats, short budgets: a smoke run")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--compare", default=None, metavar="BEFORE.json",
                   help="an earlier run's JSON (e.g. of another nnx version: PYTHONPATH=<its checkout>); adds "
                        "a before/after table of the nnx column")
    args = p.parse_args(argv)
    nnx.use("numpy")
    repeats = args.repeats or (3 if args.quick else 7)
    budget = 0.01 if args.quick else 0.05
    results = []
    head = "| op | shape | nnx µs | generic µs | fastest NumPy µs | nnx / NumPy | generic / NumPy |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    print(head, flush=True)
    for case in cases(args.quick):
        t = time_case(case, repeats, budget)
        r = {"op": case.name, "shape": case.shape, "us": t}
        results.append(r)
        med = {k: v["median"] for k, v in t.items()}
        line = (f"| {case.name} | {case.shape} | {med['nnx']:.1f} | {med['generic']:.1f} | {med['numpy']:.1f} | "
                f"{med['nnx'] / med['numpy']:.2f}x | {med['generic'] / med['numpy']:.2f}x |")
        lines.append(line)
        print(line, flush=True)
    mins = ["| op | shape | nnx µs | generic µs | fastest NumPy µs | nnx / NumPy | generic / NumPy |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        m = {k: v["min"] for k, v in r["us"].items()}
        mins.append(f"| {r['op']} | {r['shape']} | {m['nnx']:.1f} | {m['generic']:.1f} | {m['numpy']:.1f} | "
                    f"{m['nnx'] / m['numpy']:.2f}x | {m['generic'] / m['numpy']:.2f}x |")
    info = machine()
    command = "python benchmarks/ops_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = ["# nnx per-op timings — NumPy", "",
          f"{info['date']}; {info.get('cpu')} ({', '.join(info.get('simd', []))}); {info['cores']} cores; "
          f"numpy {info['numpy']}; BLAS {info.get('blas', '?')}; thread settings {info['thread_env']}"
          + (f"; BLAS threads {info['blas_threads']}" if "blas_threads" in info else ""), "",
          f"Command: `{command.strip()}`", "",
          "Microseconds per call, float32. `nnx`: as a model calls it (checks, dispatch, NumPy's overrides of "
          "nnx.ops on, the default); `generic`: the same with the overrides off (the array-API form alone); "
          "`fastest NumPy`: hand-written, buffers allocated once, `out=` everywhere, no checks. "
          f"Medians of {repeats} repeats, contenders interleaved in each:", "", *lines, "",
          "Minima over the repeats:", "", *mins, ""]
    if args.compare:
        md += compare_table(json.loads(Path(args.compare).read_text()), results, args.compare)
    text = "\n".join(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_dt.date.today().isoformat()}-ops-cpu{args.tag}"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "command": command.strip(), "repeats": repeats,
                                                   "rows": results}, indent=2) + "\n")
    print(f"\nwrote {out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
