"""Speed and memory of nnx against references measured in the same run, on the same data.

    python benchmarks/bench.py --backend numpy --threads 2  # the CPU table
    python benchmarks/bench.py --backend cupy --fast-path   # GPU: generic and fast path vs torch CUDA
    python benchmarks/bench.py --quick --workloads W1,W2    # a smoke run

References: a hand-written NumPy network (benchmarks/reference_numpy.py; on
the numpy and array_api_strict backends), PyTorch eager if installed (CPU, or
CUDA for the cupy backend), and the floor: the step's own matrix products at
the same shapes, timed alone. Every implementation starts from the same
weights and sees the same seeded synthetic MNIST-shaped data (784 features,
10 classes).

nnx is timed as users run it: ``nnx.train_step`` with default settings (the
finiteness and class-index checks on; ``--no-checks`` turns them off), and
``nnx.fit`` (``nnx_fit``: one epoch over the timed samples, shuffled, progress
off, its non-finite guard on) for W1 and W2; INF is ``nnx.predict``. The conv
workloads (``conv``) are those of benchmarks/conv_bench.py, nnx against
PyTorch. Every implementation runs once per repeat, in turn (interleaved);
times are medians and minima of the repeats. ``--threads N`` runs BLAS and
PyTorch with N threads; the thread counts in effect are recorded. Results go
to benchmarks/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import nnx  # noqa: E402
import conv_bench  # noqa: E402
import reference_numpy  # noqa: E402
import reference_torch  # noqa: E402

N_SAMPLES, N_FEATURES, N_CLASSES = 60_000, 784, 10
W1_SIZES = (784, 200, 10)
W2_SIZES = (784, 512, 512, 10)
W3_SIZES = (784, 2048, 2048, 10)
LR_SIGMOID, LR_SCE, MOMENTUM = 0.1, 0.05, 0.9


# data ---------------------------------------------------------------------------

def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped data drawn on the host: pixels in [0, 1) as float32, labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.random((N_SAMPLES, N_FEATURES), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, N_SAMPLES)
    return x, y


def rashid_targets(y: np.ndarray) -> np.ndarray:
    """Rashid's targets: 0.99 for the label, 0.01 elsewhere."""
    t = np.full((y.shape[0], N_CLASSES), 0.01, np.float32)
    t[np.arange(y.shape[0]), y] = 0.99
    return t


# backends -------------------------------------------------------------------------

class Device:
    """Moves host data onto the benchmarked backend and waits for it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.cupy = None
        if backend == "cupy":
            import cupy

            self.cupy = cupy

    def put(self, a: np.ndarray, dtype: str | None = None) -> Any:
        return nnx.to_device(a, self.backend, dtype)

    def sync(self) -> None:
        if self.cupy is not None:
            self.cupy.cuda.get_current_stream().synchronize()

    @property
    def xp(self) -> Any:
        """A library with ``matmul(a, b, out=)`` on this backend, for the floor."""
        return self.cupy if self.cupy is not None else np


def has_w2_api() -> str | None:
    """``None`` when nnx has what W2/W3 need (softmax cross-entropy, SGD momentum), else what lacks."""
    missing = []
    if not hasattr(nnx.losses, "SoftmaxCrossEntropy"):
        missing.append("nnx.losses.SoftmaxCrossEntropy")
    if "momentum" not in inspect.signature(nnx.optim.SGD).parameters:
        missing.append("nnx.optim.SGD(momentum=)")
    return ", ".join(missing) or None


# the three implementations of one network -------------------------------------------

class Net:
    """One network spec: sizes, hidden activation, loss, learning rate, momentum, bias."""

    def __init__(self, sizes, hidden: str, loss: str, lr: float, momentum: float, bias: bool) -> None:
        self.sizes, self.hidden, self.loss = tuple(sizes), hidden, loss
        self.lr, self.momentum, self.bias = lr, momentum, bias

    def nnx_layers(self, backend: str, seed: int = 0):
        act = nnx.ReLU if self.hidden == "relu" else nnx.Sigmoid
        layers: list[Any] = []
        n = len(self.sizes) - 1
        for i in range(n):
            layers.append(nnx.Linear(self.sizes[i], self.sizes[i + 1], bias=self.bias, seed=seed + i, backend=backend))
            if i < n - 1 or self.loss == "half_sse":
                layers.append(act())
        return nnx.Sequential(*layers)

    def nnx_model(self, backend: str, seed: int = 0):
        """``(model, loss, optimizer)``."""
        model = self.nnx_layers(backend, seed)
        if self.loss == "sce":
            loss = nnx.losses.SoftmaxCrossEntropy()
            opt = nnx.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)
        else:
            loss = nnx.losses.SumSquaredError(half=True)
            opt = nnx.optim.SGD(model.parameters(), lr=self.lr)
        return model, loss, opt

    @staticmethod
    def host_weights(model) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        lins = [m for m in model if isinstance(m, nnx.Linear)]
        ws = [nnx.to_host(m.weight.data).T for m in lins]  # the hand-written MLP's (in, out)
        bs = [nnx.to_host(m.bias.data) for m in lins] if lins[0].bias is not None else None
        return ws, bs

    def hand(self, ws, bs):
        return reference_numpy.HandMLP(ws, bs, self.hidden, self.loss, self.lr, self.momentum)

    def torch(self, ws, bs, device: str):
        return reference_torch.TorchMLP(ws, bs, self.hidden, self.loss, self.lr, self.momentum, device)

    def train_shapes(self, batch: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The step's matrix products: forward, weight gradients, input gradients (not the first)."""
        s, shapes = self.sizes, []
        for i in range(len(s) - 1):
            shapes.append(((batch, s[i]), (s[i], s[i + 1])))
            shapes.append(((s[i], batch), (batch, s[i + 1])))
            if i > 0:
                shapes.append(((batch, s[i + 1]), (s[i + 1], s[i])))
        return shapes

    def infer_shapes(self, batch: int):
        s = self.sizes
        return [((batch, s[i]), (s[i], s[i + 1])) for i in range(len(s) - 1)]

    def flops(self, batch: int, train: bool = True) -> float:
        shapes = self.train_shapes(batch) if train else self.infer_shapes(batch)
        return float(sum(2 * a[0] * a[1] * b[1] for a, b in shapes))


def floor_runner(dev: Device, shapes, seed: int = 1) -> Callable[[int], None]:
    """Time only the matrix products of a step, on preallocated float32 operands."""
    rng = np.random.default_rng(seed)
    ops = []
    for a, b in shapes:
        A = dev.xp.asarray(rng.random(a, dtype=np.float32))
        B = dev.xp.asarray(rng.random(b, dtype=np.float32))
        ops.append((A, B, dev.xp.empty((a[0], b[1]), dtype=dev.xp.float32)))
    # a product over one term (a one-sample weight gradient) is an outer product: a broadcast
    # multiplication, as nnx and the hand-written reference compute it
    ops = [(dev.xp.matmul if A.shape[1] != 1 else dev.xp.multiply, A, B, C) for A, B, C in ops]

    def run(steps: int) -> None:
        for _ in range(steps):
            for mm, A, B, C in ops:
                mm(A, B, out=C)

    return run


def with_fast_path(dev: Device, run: Callable[[int], None]) -> Callable[[int], None]:
    """``run`` with the backend's op overrides (fused kernels) switched on around each call."""

    def fast_run(steps: int) -> None:
        with nnx.backend.fast_path(dev.backend):
            run(steps)

    return fast_run


def batches(n: int, batch: int) -> list[tuple[int, int]]:
    return [(i, min(i + batch, n)) for i in range(0, n, batch)]


class Trainers:
    """Builds ``run(steps)`` callables for every implementation of one training workload."""

    def __init__(self, args, dev: Device, net: Net, x: np.ndarray, t: np.ndarray, batch: int, fast: bool,
                 with_fit: bool = False):
        self.dev, self.net, self.batch = dev, net, batch
        self.spans = batches(x.shape[0], batch)
        self.notes: list[str] = []
        self.runners: dict[str, Callable[[int], None]] = {}
        model_probe = None
        missing = has_w2_api() if net.loss == "sce" else None
        if missing:
            self.notes.append(f"nnx lacks {missing}: nnx not timed")
            ws, bs = self._fallback_weights()
        else:
            model_probe = net.nnx_model(dev.backend)
            ws, bs = net.host_weights(model_probe[0])
        self.ws, self.bs = ws, bs
        if model_probe is not None:
            self.runners["nnx"] = self._nnx(model_probe, x, t, dev)
            if with_fit:
                self.runners["nnx_fit"] = self._nnx_fit(net.nnx_model(dev.backend), x, t, dev)
            if fast:
                fast_model = net.nnx_model(dev.backend)
                self.runners["nnx_fast"] = with_fast_path(dev, self._nnx(fast_model, x, t, dev))
        if dev.backend != "cupy":
            self.runners["numpy"] = self._hand(x, t)
        if not args.no_torch and reference_torch.available() is None:
            self.runners["torch"] = self._torch(x, t, "cuda" if dev.backend == "cupy" else "cpu")
        elif not args.no_torch:
            self.notes.append(reference_torch.available())
        self.runners["floor"] = floor_runner(dev, net.train_shapes(batch))

    def _fallback_weights(self):
        rng = np.random.default_rng(0)
        s = self.net.sizes
        ws = [rng.uniform(-1, 1, (s[i], s[i + 1])).astype(np.float32) * np.sqrt(6 / (s[i] + s[i + 1]))
              for i in range(len(s) - 1)]
        bs = [np.zeros(s[i + 1], np.float32) for i in range(len(s) - 1)] if self.net.bias else None
        return ws, bs

    def _nnx(self, built, x, t, dev: Device):
        model, loss_fn, opt = built
        X = dev.put(x, "float32")
        T = dev.put(t) if t.dtype.kind in "iu" else dev.put(t, "float32")
        return self._cycle(lambda xb, tb: nnx.train_step(model, loss_fn, opt, xb, tb), X, T)

    def _nnx_fit(self, built, x, t, dev: Device):
        """``run(steps)``: one ``nnx.fit`` epoch over the first ``steps`` batches (shuffled, as by default)."""
        model, loss_fn, opt = built
        X = dev.put(x, "float32")
        T = dev.put(t) if t.dtype.kind in "iu" else dev.put(t, "float32")
        calls = [0]

        def run(steps: int) -> None:
            n = min(steps * self.batch, int(X.shape[0]))
            calls[0] += 1
            nnx.fit(model, loss_fn, opt, (X[:n], T[:n]), epochs=1, batch_size=self.batch, progress=False,
                    seed=calls[0])
            dev.sync()

        return run

    def _hand(self, x, t):
        net = self.net.hand(self.ws, self.bs)
        return self._cycle(net.step, x, t)

    def _torch(self, x, t, device: str):
        import torch

        net = self.net.torch(self.ws, self.bs, device)
        X = net.tensor(x)
        T = net.tensor(t, torch.int64 if t.dtype.kind in "iu" else torch.float32)
        return self._cycle(net.step, X, T, after=net.sync)

    def _cycle(self, step: Callable[[Any, Any], Any], X: Any, T: Any,
               after: Callable[[], Any] | None = None) -> Callable[[int], None]:
        """``run(steps)``: ``steps`` calls of ``step`` on successive batches, cycling through the data."""
        spans, pos = self.spans, [0]

        def run(steps: int) -> None:
            k = pos[0]
            for _ in range(steps):
                a, b = spans[k % len(spans)]
                step(X[a:b], T[a:b])
                k += 1
            pos[0] = k
            if after is not None:
                after()

        return run


def measure(runners: dict[str, Callable[[int], None]], steps: int, repeats: int, dev: Device) -> dict[str, float]:
    """Median seconds per call of ``run(steps)``, warm-up first, implementations interleaved.

    Interleaving spreads slow phases of a shared machine over every implementation
    instead of charging them to whichever ran then.
    """
    for run in runners.values():
        run(min(3, steps))
        dev.sync()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            run(1)  # untimed: wakes this library's thread pool after the others ran
            dev.sync()
            t0 = time.perf_counter()
            run(steps)
            dev.sync()
            times[name].append(time.perf_counter() - t0)
    _LAST_MINS.clear()
    _LAST_MINS.update({name: min(v) for name, v in times.items()})
    return {name: statistics.median(v) for name, v in times.items()}


_LAST_MINS: dict[str, float] = {}  # the fastest repeat of the last measure(): robust on a shared machine


# parity: the implementations compute the same thing -------------------------------------

def parity(net: Net, dev: Device, x, t, batch: int, steps: int = 3) -> dict[str, float]:
    """Max relative parameter difference to nnx after ``steps`` identical steps."""
    if net.loss == "sce" and has_w2_api():
        return {}
    model, loss_fn, opt = net.nnx_model(dev.backend)
    ws, bs = net.host_weights(model)
    X, T = dev.put(x[: batch * steps], "float32"), (dev.put(t[: batch * steps]) if t.dtype.kind in "iu"
                                                   else dev.put(t[: batch * steps], "float32"))
    hand = net.hand(ws, bs)
    tnet = net.torch(ws, bs, "cpu") if reference_torch.available() is None else None
    for k in range(steps):
        a, b = k * batch, (k + 1) * batch
        nnx.train_step(model, loss_fn, opt, X[a:b], T[a:b])
        hand.step(x[a:b], t[a:b])
        if tnet is not None:
            tt = tnet.tensor(t[a:b]) if t.dtype.kind in "iu" else tnet.tensor(t[a:b])
            tnet.step(tnet.tensor(x[a:b]), tt)
    ref_ws, ref_bs = net.host_weights(model)
    ref = ref_ws + (ref_bs or [])

    def rel(params) -> float:
        return max(float(np.max(np.abs(p - r)) / (np.max(np.abs(r)) + 1e-30)) for p, r in zip(params, ref))

    out = {"numpy": rel(hand.params())}
    if tnet is not None:
        out["torch"] = rel(tnet.params_nnx_layout())
    return out


# memory --------------------------------------------------------------------------------

def budget_bytes(net: Net, batch: int, itemsize: int = 4) -> dict[str, int]:
    """Parameters + gradients + optimizer state + one batch's activations (input and every layer output)."""
    s = net.sizes
    params = sum(s[i] * s[i + 1] + (s[i + 1] if net.bias else 0) for i in range(len(s) - 1))
    acts = batch * (s[0] + 2 * sum(s[1:-1]) + s[-1])  # input, each hidden layer before and after, logits
    state = params if net.momentum else 0
    parts = {"parameters": params, "gradients": params, "optimizer_state": state, "activations": acts}
    parts = {k: v * itemsize for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


class _CupyPeak:
    """Peak bytes handed out by CuPy's memory pool while active (a CuPy MemoryHook)."""

    def __init__(self, cupy) -> None:
        base = cupy.cuda.MemoryHook
        outer = self

        class Hook(base):
            name = "nnx_peak"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                outer.now += mem_size
                outer.peak = max(outer.peak, outer.now)

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                outer.now -= mem_size

        self.hook, self.now, self.peak = Hook(), 0, 0


def peak_training_memory(net: Net, dev: Device, x, t, batch: int, steps: int = 3) -> dict[str, Any]:
    """Peak bytes while training (parameters included), for nnx and the hand-written reference."""
    out: dict[str, Any] = {"budget": budget_bytes(net, batch)}
    xb, tb = x[: batch * steps], t[: batch * steps]
    if not (net.loss == "sce" and has_w2_api()):
        model, loss_fn, opt = net.nnx_model(dev.backend)
        param_bytes = sum(p.size * 4 for p in model.parameters())
        X = dev.put(xb, "float32")
        T = dev.put(tb) if tb.dtype.kind in "iu" else dev.put(tb, "float32")
        if dev.cupy is not None:
            dev.sync()
            peak = _CupyPeak(dev.cupy)
            with peak.hook:
                for k in range(steps):
                    nnx.train_step(model, loss_fn, opt, X[k * batch:(k + 1) * batch], T[k * batch:(k + 1) * batch])
                dev.sync()
            out["nnx"] = param_bytes + peak.peak
        else:
            tracemalloc.start()
            for k in range(steps):
                nnx.train_step(model, loss_fn, opt, X[k * batch:(k + 1) * batch], T[k * batch:(k + 1) * batch])
            out["nnx"] = param_bytes + tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if dev.cupy is None:
        ws, bs = net.host_weights(net.nnx_layers("numpy"))
        tracemalloc.start()
        hand = net.hand(ws, bs)
        for k in range(steps):
            hand.step(xb[k * batch:(k + 1) * batch], tb[k * batch:(k + 1) * batch])
        out["numpy"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


# workloads ------------------------------------------------------------------------------

def nets() -> dict[str, Net]:
    return {
        "W1": Net(W1_SIZES, "sigmoid", "half_sse", LR_SIGMOID, 0.0, bias=False),
        "W2": Net(W2_SIZES, "relu", "sce", LR_SCE, MOMENTUM, bias=True),
        "W3": Net(W3_SIZES, "relu", "sce", LR_SCE, MOMENTUM, bias=True),
    }


def row(name: str, unit: str, steps: int, med: dict[str, float], notes: list[str], extra=None) -> dict[str, Any]:
    mins = dict(_LAST_MINS)
    r = {"workload": name, "unit": unit, "steps": steps, "seconds": med, "seconds_min": mins, "notes": notes}
    nx = med.get("nnx")
    if nx is not None:
        r["ratios"] = {f"nnx/{k}": nx / v for k, v in med.items() if k != "nnx" and v}
        if mins.get("nnx"):
            r["ratios_min"] = {f"nnx/{k}": mins["nnx"] / v for k, v in mins.items() if k != "nnx" and v}
    for variant in ("nnx_fast", "nnx_fit"):
        if variant in med:
            r.setdefault("ratios", {}).update({f"{variant}/{k}": med[variant] / v for k, v in med.items()
                                               if k != variant and v})
            if mins.get(variant):
                r.setdefault("ratios_min", {}).update({f"{variant}/{k}": mins[variant] / v for k, v in mins.items()
                                                       if k != variant and v})
    if extra:
        r.update(extra)
    return r


def run_training(args, dev, label, net, x, t, batch, steps, repeats, with_fit: bool = False):
    tr = Trainers(args, dev, net, x, t, batch, args.fast_path, with_fit)
    med = measure(tr.runners, steps, repeats, dev)
    if "nnx_fast" in tr.runners:
        tr.notes.append("nnx_fast: the backend's fused kernels (nnx.backend.fast_path)")
    if "nnx_fit" in tr.runners:
        tr.notes.append("nnx_fit: nnx.fit, one epoch over the timed batches per repeat (shuffled: one gather "
                        "of the data per epoch; the data checked once per call; the non-finite guard on)")
    flops = net.flops(batch)
    extra = {"batch": batch, "sizes": net.sizes, "floor_tflops": flops * steps / med["floor"] / 1e12}
    return row(label, f"{steps} steps of batch {batch}", steps, med, tr.notes, extra)


def run_inference(args, dev, net, x, batch, steps, repeats):
    notes: list[str] = []
    runners: dict[str, Callable[[int], None]] = {}
    spans = batches(batch * steps, batch)
    model = net.nnx_layers(dev.backend).eval()
    ws, bs = net.host_weights(model)
    X = dev.put(x[: batch * steps], "float32")

    def nnx_run(n: int) -> None:  # as users run it: predict over n batches
        nnx.predict(model, X[: n * batch], batch_size=batch)

    runners["nnx"] = nnx_run
    if args.fast_path:
        runners["nnx_fast"] = with_fast_path(dev, nnx_run)
    if dev.backend != "cupy":
        hand = net.hand(ws, bs)

        def hand_run(n: int) -> None:
            for k in range(n):
                a, b = spans[k % len(spans)]
                hand.forward(x[a:b])

        runners["numpy"] = hand_run
    if not args.no_torch and reference_torch.available() is None:
        tnet = net.torch(ws, bs, "cuda" if dev.backend == "cupy" else "cpu")
        TX = tnet.tensor(x[: batch * steps])

        def torch_run(n: int) -> None:
            for k in range(n):
                a, b = spans[k % len(spans)]
                tnet.predict(TX[a:b])
            tnet.sync()

        runners["torch"] = torch_run
    runners["floor"] = floor_runner(dev, net.infer_shapes(batch))
    med = measure(runners, steps, repeats, dev)
    notes.append("INF: nnx.predict over the batches (evaluation mode, nothing kept for a backward); the "
                 "references run their forward passes")
    return row("INF", f"{steps} forward passes of batch {batch}", steps, med, notes, {"batch": batch})


def run_conv(args, dev, repeats: int) -> list[dict[str, Any]]:
    """The conv workloads of benchmarks/conv_bench.py (batch 64, SGD with momentum): nnx against PyTorch."""
    rows = []
    steps = 4 if args.quick else conv_bench.SAMPLES // conv_bench.BATCH
    checks = nnx.layers.checks.finite_checks_enabled()
    for name in conv_bench.WORKLOADS:
        runners: dict[str, Callable[[int], None]] = {}
        built = conv_bench.Runner("nnx", name, dev.backend)
        nnx.set_finite_checks(checks)  # the Runner turns them off; keep this run's setting

        def cycle(r: conv_bench.Runner) -> Callable[[int], None]:
            pos = [0]

            def run(n: int) -> None:
                for _ in range(n):
                    r.step(pos[0])
                    pos[0] += 1
                r.sync()

            return run

        runners["nnx"] = cycle(built)
        if not args.no_torch and reference_torch.available() is None:
            runners["torch"] = cycle(conv_bench.Runner("torch", name, dev.backend))
        med = measure(runners, steps, repeats, dev)
        channels, size = conv_bench.WORKLOADS[name]
        rows.append(row(name, f"{steps} steps of batch {conv_bench.BATCH}", steps, med,
                        [f"{name}: benchmarks/conv_bench.py's network ({channels}x{size}x{size} inputs); "
                         "no hand-written NumPy convolution"], {"batch": conv_bench.BATCH}))
    return rows


def run_scaling(args, dev, x, y, quick: bool, repeats: int) -> list[dict[str, Any]]:
    rows = []
    steps = 10 if quick else 30
    for b in ((32, 128, 512) if not quick else (32, 512)):
        net = nets()["W2"]
        rows.append(run_training(args, dev, f"scale-batch-{b}", net, x, y, b, steps, repeats))
    for w in ((256, 1024) if not quick else (1024,)):
        net = Net((784, w, w, 10), "relu", "sce", LR_SCE, MOMENTUM, bias=True)
        rows.append(run_training(args, dev, f"scale-width-{w}", net, x, y, 128, steps, repeats))
    return rows


# reporting ------------------------------------------------------------------------------

def machine(dev: Device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "nnx": nnx.__version__,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                       if k in os.environ},
    }
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text if line.startswith("flags"))
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl") if f in flags]
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    threads = blas_threads()
    if threads is not None:
        info["blas_threads"] = threads
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        pass
    if reference_torch.available() is None:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if dev.cupy is not None:
        cp = dev.cupy
        info["cupy"] = cp.__version__
        info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        info["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
    return info


def blas_threads() -> int | None:
    """The threads NumPy's OpenBLAS uses (asked from the loaded library), or ``None`` if unknown."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line.split()[-1].lower()})
    except OSError:
        return None
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                     "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                return int(fn())
    return None


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


RATIO_KEYS = ("nnx/numpy", "nnx/torch", "nnx/floor", "nnx_fit/nnx", "nnx_fit/numpy", "nnx_fit/torch",
              "nnx_fast/torch", "nnx_fast/floor")


def table(rows: list[dict[str, Any]]) -> str:
    impls = ["nnx", "nnx_fit", "nnx_fast", "numpy", "torch", "floor"]
    present = [i for i in impls if any(i in r["seconds"] for r in rows)]
    head = ["workload", "unit"] + [f"{i} ms/step" for i in present]
    ratio_keys = [k for k in RATIO_KEYS if any(k in r.get("ratios", {}) for r in rows)]
    head += ratio_keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["workload"], r["unit"]]
        for i in present:
            s = r["seconds"].get(i)
            cells.append("—" if s is None else f"{1000 * s / r['steps']:.3f}")
        for k in ratio_keys:
            cells.append(fmt_ratio(r.get("ratios", {}).get(k)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def min_table(rows: list[dict[str, Any]]) -> str:
    """The ratios of the fastest repeats, beside the medians' (a shared machine's noise only adds time)."""
    keys = [k for k in RATIO_KEYS if any(k in r.get("ratios_min", {}) for r in rows)]
    lines = ["| workload | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        if "ratios_min" in r:
            lines.append(f"| {r['workload']} | " + " | ".join(fmt_ratio(r["ratios_min"].get(k)) for k in keys) + " |")
    return "\n".join(lines)


def memory_table(mem: dict[str, Any]) -> str:
    lines = ["| workload | budget MiB | nnx peak MiB | nnx / budget | hand NumPy peak MiB | hand / budget |",
             "|---|---|---|---|---|---|"]
    for name, m in mem.items():
        b = m["budget"]["total"]
        n, h = m.get("nnx"), m.get("numpy")
        lines.append(
            f"| {name} | {b / 2**20:.2f} | {'—' if n is None else f'{n / 2**20:.2f}'} | "
            f"{'—' if n is None else f'{n / b:.2f}x'} | {'—' if h is None else f'{h / 2**20:.2f}'} | "
            f"{'—' if h is None else f'{h / b:.2f}x'} |"
        )
    return "\n".join(lines)


class _Progress(list):
    """The result rows; each is printed as it arrives, so a run cut short still shows its numbers."""

    def append(self, r: dict[str, Any]) -> None:
        super().append(r)
        print(table([r]).splitlines()[-1], flush=True)

    def extend(self, rs) -> None:
        for r in rs:
            self.append(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    p.add_argument("--workloads", default="W1,W2,W3,INF,conv,scale,memory",
                   help="comma list of W1, W2, W3, INF, conv, scale, memory, large (large: cupy only)")
    p.add_argument("--quick", action="store_true", help="few steps and repeats: a smoke run")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--fast-path", action="store_true", help="also time nnx with the backend's opt-in fast path")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON and markdown results")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--w1-steps", type=int, default=None, help="per-sample steps timed in W1 (default 3000)")
    p.add_argument("--no-checks", action="store_true",
                   help="turn nnx's per-call input checks off (a NaN scan of each forward's input and the "
                        "class-index range check, one device read each per step); by default they are on, "
                        "as users run train_step (fit turns them off and checks the data once)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS and PyTorch threads (the script restarts itself with OMP_NUM_THREADS, "
                        "OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set; default: as the environment says)")
    args = p.parse_args(argv)
    if args.threads is not None:
        want = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        if any(os.environ.get(k) != v for k, v in want.items()):  # BLAS reads these when it loads
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **want})
        if reference_torch.available() is None:
            import torch

            torch.set_num_threads(args.threads)
    nnx.use(args.backend)
    nnx.set_finite_checks(not args.no_checks)
    dev = Device(args.backend)
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    q = args.quick
    repeats = args.repeats or (3 if q else 5)
    x, y = make_data()
    t_rashid = rashid_targets(y)
    all_nets = nets()
    rows: list[dict[str, Any]] = _Progress()
    mem: dict[str, Any] = {}
    par: dict[str, Any] = {}
    if "W1" in wanted:
        par["W1"] = parity(all_nets["W1"], dev, x, t_rashid, 1, 5)
        rows.append(run_training(args, dev, "W1", all_nets["W1"], x, t_rashid, 1,
                                 args.w1_steps or (300 if q else 3000), repeats, with_fit=True))
    if "W2" in wanted:
        par["W2"] = parity(all_nets["W2"], dev, x, y, 128)
        steps = 60 if q else len(batches(N_SAMPLES, 128))
        rows.append(run_training(args, dev, "W2", all_nets["W2"], x, y, 128, steps, repeats, with_fit=True))
    if "W3" in wanted:
        rows.append(run_training(args, dev, "W3", all_nets["W3"], x, y, 512, 3 if q else 10, repeats))
    if "INF" in wanted:
        rows.append(run_inference(args, dev, all_nets["W2"], x, 1024, 5 if q else 20, repeats))
    if "large" in wanted and dev.cupy is not None:
        n = 8192 * (N_SAMPLES // 8192)  # full batches only, the floor's shapes
        rows.append(run_training(args, dev, "large", all_nets["W3"], x[:n], y[:n], 8192, 20, repeats))
    if "conv" in wanted:
        rows.extend(run_conv(args, dev, repeats))
    if "scale" in wanted:
        rows.extend(run_scaling(args, dev, x, y, q, repeats))
    if "memory" in wanted:
        for name, batch in (("W2", 128), ("W3", 512)):
            mem[name] = peak_training_memory(all_nets[name], dev, x, y, batch)
    info = machine(dev)
    result = {"machine": info, "backend": args.backend, "fast_path": args.fast_path, "quick": q,
              "checks": not args.no_checks, "repeats": repeats,
              "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "rows": rows, "memory": mem, "parity_max_rel_diff": par}
    threads = (f"threads: NumPy's BLAS {info.get('blas_threads', '?')}"
               f"{', PyTorch ' + str(info['torch_threads']) if 'torch_threads' in info else ''}; "
               f"environment {info['thread_env'] or 'unset'}")
    md = [f"# nnx benchmarks — backend {args.backend}{' (fast path)' if args.fast_path else ''}", "",
          f"{info['date']}; {info.get('gpu', info.get('cpu'))}"
          f"{' (' + ', '.join(info['simd']) + ')' if info.get('simd') else ''}; {info['cores']} cores; "
          f"numpy {info['numpy']}{' (' + info['blas'] + ')' if 'blas' in info else ''}"
          f"{'; torch ' + info['torch'] if 'torch' in info else ''}{'; cupy ' + info['cupy'] if 'cupy' in info else ''}",
          "", threads, "", f"Command: `{result['command']}`", "",
          f"nnx per-call checks: {'off (--no-checks)' if args.no_checks else 'on (the default settings)'}. "
          f"Medians of {repeats} repeats (W2: {repeats}), contenders interleaved in each; ratios are time over "
          "the reference's (lower is better; the floor is the step's matrix products alone; nnx_fit/nnx is "
          "fit's time per step over train_step's).", "", table(rows),
          "", "Ratios of the fastest repeats:", "", min_table(rows)]
    if mem:
        md += ["", "Peak training memory (budget: parameters + gradients + optimizer state + one batch's "
               "activations, float32)", "", memory_table(mem)]
    if par:
        md += ["", "Parity (max relative parameter difference to nnx after identical steps): "
               + json.dumps(par)]
    notes = sorted({n for r in rows for n in r["notes"]})
    if notes:
        md += ["", "Notes:"] + [f"- {n}" for n in notes]
    text = "\n".join(md) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_dt.date.today().isoformat()}-bench-{args.backend}{'-fast' if args.fast_path else ''}{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
