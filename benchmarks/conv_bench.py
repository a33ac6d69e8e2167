"""Convolutional training steps: nnx against PyTorch eager, in the same run, from the same weights.

    python benchmarks/conv_bench.py                  # numpy vs PyTorch CPU (2 threads each)
    python benchmarks/conv_bench.py --backend cupy   # cupy vs PyTorch CUDA, where a GPU is
    python benchmarks/conv_bench.py --quick          # a smoke run
    python benchmarks/conv_bench.py --threads 1 --clock process   # on a loaded machine

Workloads, batch 64, softmax cross-entropy, SGD (lr 0.05, momentum 0.9):

* LENET: 1x28x28 -> conv 6@5x5 -> ReLU -> max pool 2 -> conv 16@5x5 -> ReLU ->
  max pool 2 -> 256 -> 120 -> 84 -> 10 (ReLU between);
* CONVBLOCK: 3x32x32 -> three 64-channel 3x3 convolutions (padding 1, ReLU)
  -> global average pool -> 10.

Times are per training step, medians and minima over repeats in which nnx
and PyTorch alternate. Peak memory is measured for each implementation in a
fresh subprocess: the growth of the peak resident set size (VmHWM; on a GPU,
of the allocator's peak) over five training steps, the model and data already
built. nnx runs with its per-call checks off, as inside ``nnx.fit``; PyTorch
checks nothing either. Results go to benchmarks/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

BATCH, SAMPLES, LR, MOMENTUM = 64, 1024, 0.05, 0.9
WORKLOADS = {"LENET": (1, 28), "CONVBLOCK": (3, 32)}


def nnx_model(name: str, backend: str) -> Any:
    import nnx

    f = {"backend": backend}
    if name == "LENET":
        return nnx.Sequential(
            nnx.Conv2d(1, 6, 5, seed=0, **f), nnx.ReLU(), nnx.MaxPool2d(2),
            nnx.Conv2d(6, 16, 5, seed=1, **f), nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(),
            nnx.Linear(256, 120, seed=2, **f), nnx.ReLU(), nnx.Linear(120, 84, seed=3, **f), nnx.ReLU(),
            nnx.Linear(84, 10, seed=4, **f))
    return nnx.Sequential(
        nnx.Conv2d(3, 64, 3, padding=1, seed=0, **f), nnx.ReLU(), nnx.Conv2d(64, 64, 3, padding=1, seed=1, **f),
        nnx.ReLU(), nnx.Conv2d(64, 64, 3, padding=1, seed=2, **f), nnx.ReLU(), nnx.GlobalAvgPool2d(),
        nnx.Linear(64, 10, seed=3, **f))


def torch_model(name: str, device: str) -> Any:
    """The same network in PyTorch, its weights copied from nnx's (Linear weights transposed)."""
    import nnx
    import torch

    nn = torch.nn
    if name == "LENET":
        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                              nn.ReLU(), nn.Linear(84, 10))
    else:
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(64, 10))
    ours = [m for m in nnx_model(name, "numpy") if m.parameters()]
    theirs = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.weight.copy_(torch.as_tensor(nnx.to_host(a.weight.data)))  # one layout: PyTorch's
            b.bias.copy_(torch.as_tensor(nnx.to_host(a.bias.data)))
    return model.to(device)


def data(name: str) -> tuple[Any, Any]:
    import numpy as np

    channels, size = WORKLOADS[name]
    rng = np.random.default_rng(0)
    return rng.random((SAMPLES, channels, size, size), dtype=np.float32), rng.integers(0, 10, SAMPLES)


def use_strided_slices(model: Any) -> None:
    """Make every convolution of ``model`` gather its windows as strided slices, the layout of
    strides above 1 (and of every convolution before stride-1 runs): for ``--layouts``."""
    from nnx.layers.conv import _Conv
    from nnx.layers.windows import Slices

    for _, layer in model.named_modules():
        if isinstance(layer, _Conv):
            def windows(spatial: Any, out: Any, conv: Any = layer) -> Any:
                return conv.__dict__.setdefault("_slices", {}).setdefault(spatial, Slices(conv.window, spatial, out))

            layer._windows = windows


class Runner:
    """``step(i)`` trains on batch ``i`` (cycling); ``sync()`` waits for the device. ``impl`` is
    ``nnx``, ``nnx-slices`` (nnx with strided-slice windows) or ``torch``."""

    def __init__(self, impl: str, name: str, backend: str) -> None:
        self.impl = impl
        x, y = data(name)
        if impl.startswith("nnx"):
            import nnx

            nnx.set_finite_checks(False)
            self.model = nnx_model(name, backend)
            if impl == "nnx-slices":
                use_strided_slices(self.model)
            loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
            X, Y = nnx.to_device(x, backend), nnx.to_device(y, backend, dtype="int64")
            self._step = lambda s: nnx.train_step(self.model, loss, opt, X[s], Y[s])
            self.sync = (lambda: __import__("cupy").cuda.Device().synchronize()) if backend == "cupy" else (lambda: None)
        else:
            import torch

            device = "cuda" if backend == "cupy" else "cpu"
            self.model = torch_model(name, device)
            opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
            ce = torch.nn.CrossEntropyLoss()
            X, Y = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)

            def step(s: slice) -> None:
                opt.zero_grad(set_to_none=True)
                ce(self.model(X[s]), Y[s]).backward()
                opt.step()

            self._step = step
            self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.batches = SAMPLES // BATCH

    def step(self, i: int) -> None:
        b = i % self.batches
        self._step(slice(b * BATCH, (b + 1) * BATCH))

    def params(self) -> list[Any]:
        """The parameters as host arrays in nnx's layout (for the parity check)."""
        import nnx

        if self.impl.startswith("nnx"):
            return [nnx.to_host(p.data) for p in self.model.parameters()]
        out = []
        for m in self.model:
            if hasattr(m, "weight"):
                out += [m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy()]
        return out


# "process": the CPU time of this process, which leaves out the time slices that other processes of a
# loaded machine take (at one thread; with more, threads that wait spinning count as working)
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def time_steps(runner: Runner, steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
    runner.sync()
    started = clock()
    for i in range(steps):
        runner.step(i)
    runner.sync()
    return (clock() - started) / steps * 1e3


def parity(name: str, backend: str, steps: int = 3) -> float:
    """Largest relative parameter difference between nnx and PyTorch after identical steps."""
    import numpy as np

    a, b = Runner("nnx", name, backend), Runner("torch", name, backend)
    for i in range(steps):
        a.step(i)
        b.step(i)
    return max(float(np.abs(p - q).max() / np.abs(q).max()) for p, q in zip(a.params(), b.params()))


def peak_memory(impl: str, name: str, backend: str, steps: int = 5) -> float:
    """Peak bytes a training step adds, in a fresh process (this script with ``--memory``)."""
    cmd = [sys.executable, __file__, "--memory", impl, name, "--backend", backend]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
    return float(out.stdout.strip().splitlines()[-1])


def _memory_child(impl: str, name: str, backend: str, steps: int = 5) -> None:
    """Print the peak bytes ``steps`` training steps add to a process that holds the model and data."""
    runner = Runner(impl, name, backend)
    runner.sync()
    if backend == "cupy" and impl == "torch":
        import torch

        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for i in range(steps):
            runner.step(i)
        runner.sync()
        print(torch.cuda.max_memory_allocated() - base)
        return
    if backend == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        base = peak = pool.total_bytes()
        for i in range(steps):
            runner.step(i)
            runner.sync()
            peak = max(peak, pool.total_bytes())
        print(peak - base)
        return
    base = _peak_rss()
    for i in range(steps):
        runner.step(i)
    print(_peak_rss() - base)


def _peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM where Linux has it (ru_maxrss of a
    child started by a large process begins at the parent's size, so it hides small peaks)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine(backend: str, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    import nnx

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="minutes"), "cpu": cpu,
            "cores": os.cpu_count(), "threads": threads, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "nnx": nnx.__version__, "backend": backend, "command": " ".join(["python", *sys.argv])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", help="numpy (PyTorch on the CPU) or cupy (PyTorch on CUDA)")
    p.add_argument("--threads", type=int, default=2, help="BLAS and PyTorch threads (2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=16, help="training steps per timed repeat (16)")
    p.add_argument("--quick", action="store_true", help="2 steps, 1 repeat, no memory: a smoke run")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time (default) or this process's CPU time (for one thread on a loaded machine)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--layouts", action="store_true",
                   help="also time nnx with strided-slice windows (the layout of stride > 1) in the same repeats")
    p.add_argument("--memory", nargs=2, metavar=("IMPL", "WORKLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                      MKL_NUM_THREADS=str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    if args.memory:
        _memory_child(*args.memory, args.backend)
        return 0
    if args.backend == "cupy" and not torch.cuda.is_available():
        print("conv_bench: skipped: PyTorch has no CUDA here", file=sys.stderr)
        return 0
    if args.backend == "cupy":
        import nnx

        reason = nnx.available()["cupy"]
        if reason is not None:
            print(f"conv_bench: skipped: {reason}", file=sys.stderr)
            return 0
        nnx.backend.set_matmul_precision("highest", "cupy")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    steps, repeats = (2, 1) if args.quick else (args.steps, args.repeats)
    rows = []
    for name in WORKLOADS:
        impls = ("nnx", "torch", "nnx-slices") if args.layouts else ("nnx", "torch")
        runners = {impl: Runner(impl, name, args.backend) for impl in impls}
        for r in runners.values():
            time_steps(r, 3)  # warm-up
        times: dict[str, list[float]] = {impl: [] for impl in runners}
        for _ in range(repeats):
            for impl, r in runners.items():
                times[impl].append(time_steps(r, steps, CLOCKS[args.clock]))
        row = {"workload": name, "steps": steps, "repeats": repeats, "parity": parity(name, args.backend),
               **{f"{impl}_ms_median": statistics.median(t) for impl, t in times.items()},
               **{f"{impl}_ms_min": min(t) for impl, t in times.items()}}
        if not args.quick:
            row.update({f"{impl}_peak_bytes": peak_memory(impl, name, args.backend) for impl in ("nnx", "torch")})
        rows.append(row)
    info = machine(args.backend, args.threads)
    lines = [f"# Convolutional training steps: nnx[{args.backend}] vs PyTorch", "",
             f"{info['date']}; {info['cpu']}; {info['cores']} cores; {args.threads} threads (numpy BLAS and "
             f"PyTorch); python {info['python']}, numpy {info['numpy']}, torch {info['torch']}", "",
             f"Command: `{info['command']}`", "",
             f"Batch 64; ms per training step ({args.clock} clock); ratios nnx/PyTorch (targets: on the CPU "
             "at 2 threads LeNet <= 1.1x and the conv block <= 1.2x; <= 1.3x on CUDA; peak memory <= 1.5x).", "",
             "| workload | nnx median | torch median | ratio | nnx min | torch min | ratio | peak memory ratio "
             "| parity (max rel. param. diff.) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = (f"{r['nnx_peak_bytes'] / 2**20:.1f} / {r['torch_peak_bytes'] / 2**20:.1f} MiB = "
               f"{r['nnx_peak_bytes'] / max(r['torch_peak_bytes'], 1):.2f}x") if "nnx_peak_bytes" in r else "-"
        lines.append(f"| {r['workload']} | {r['nnx_ms_median']:.2f} | {r['torch_ms_median']:.2f} | "
                     f"{r['nnx_ms_median'] / r['torch_ms_median']:.2f}x | {r['nnx_ms_min']:.2f} | "
                     f"{r['torch_ms_min']:.2f} | {r['nnx_ms_min'] / r['torch_ms_min']:.2f}x | {mem} | "
                     f"{r['parity']:.1e} |")
    if args.layouts:
        lines += ["", "nnx with every convolution's windows gathered as strided slices instead of stride-1 runs, "
                  "timed in the same repeats:", "", "| workload | runs median | slices median | runs / slices "
                  "| runs min | slices min | runs / slices |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            a, b, c, d = r["nnx_ms_median"], r["nnx-slices_ms_median"], r["nnx_ms_min"], r["nnx-slices_ms_min"]
            lines.append(f"| {r['workload']} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {c:.2f} | {d:.2f} | {c / d:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"{info['date'][:10]}-conv-bench-{args.backend}"
        stem.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
        stem.with_suffix(".md").write_text(text)
        print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
