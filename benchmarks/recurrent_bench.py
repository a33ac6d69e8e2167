"""Forward and backward of an LSTM and a GRU: nnx against PyTorch eager, in the same run, same weights.

    python benchmarks/recurrent_bench.py            # numpy vs PyTorch CPU (2 threads each), float32
    python benchmarks/recurrent_bench.py --quick    # a smoke run

Workload: batch 32, 50 steps, 128 input features, 128 hidden units, one layer,
``batch_first``; one call is a forward over the whole sequence and a backward of
a fixed random output gradient (the input's gradient and every weight's).
Times are medians and minima over repeats in which nnx and PyTorch alternate.
Peak memory is measured for each implementation in a fresh subprocess: the
growth of the peak resident set size (VmHWM) over three calls (the first
included), the layer and data already built. Results are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

BATCH, STEPS, FEATURES, HIDDEN = 32, 50, 128, 128


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


class Runner:
    """One implementation's layer, input and output gradient, and one timed call."""

    def __init__(self, impl: str, kind: str) -> None:
        import numpy as np

        import nnx

        rng = np.random.default_rng(0)
        x, g = rng.standard_normal((BATCH, STEPS, FEATURES)), rng.standard_normal((BATCH, STEPS, HIDDEN))
        layer = getattr(nnx, kind)(FEATURES, HIDDEN, seed=0)
        self.impl = impl
        if impl == "nnx":
            self.layer = layer
            self.x, self.g = nnx.to_device(x, "numpy", "float32"), nnx.to_device(g, "numpy", "float32")
            return
        import torch

        self.torch = torch
        self.layer = getattr(torch.nn, kind)(FEATURES, HIDDEN, batch_first=True)
        with torch.no_grad():
            for name, p in layer.named_parameters():
                getattr(self.layer, name).copy_(torch.from_numpy(nnx.to_host(p.data)))
        self.x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        self.g = torch.tensor(g, dtype=torch.float32)

    def call(self) -> Any:
        if self.impl == "nnx":
            self.layer.zero_grad()
            out = self.layer.forward(self.x)
            return out, self.layer.backward(self.g)
        self.layer.zero_grad()
        self.x.grad = None
        out, _ = self.layer(self.x)
        out.backward(self.g)
        return out.detach(), self.x.grad

    def time(self, calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            self.call()
        return (time.perf_counter() - start) / calls * 1e3


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_memory(impl: str, kind: str, threads: int) -> int:
    """The bytes three calls add to the peak resident set of a fresh process holding the layer and data."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", impl, kind, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def agreement(kind: str) -> float:
    """The largest relative difference of the output and the input's gradient, nnx vs PyTorch (float32)."""
    import numpy as np

    a, b = Runner("nnx", kind).call(), Runner("torch", kind).call()
    worst = 0.0
    for ours, theirs in zip(a, b):
        ours, theirs = np.asarray(ours), theirs.numpy()
        worst = max(worst, float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("IMPL", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.memory_child:
        runner = Runner(*args.memory_child)
        base = _peak_rss()
        for _ in range(3):
            runner.call()
        print(_peak_rss() - base)
        return 0
    repeats, calls = (2, 1) if args.quick else (args.repeats, args.calls)
    import numpy

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M+00:00")
    print(f"{now}; {platform.processor() or platform.machine()}; {os.cpu_count()} cores; {args.threads} threads; "
          f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}\n")
    print(f"batch {BATCH}, {STEPS} steps, {FEATURES} inputs, {HIDDEN} hidden, float32; ms per forward+backward; "
          f"{repeats} alternating repeats of {calls} calls; ratios nnx/PyTorch (target <= 1.5x)\n")
    print("| layer | nnx median | torch median | ratio | nnx min | torch min | ratio | peak memory nnx / torch "
          "| max rel. diff. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in ("LSTM", "GRU"):
        runners = {impl: Runner(impl, kind) for impl in ("nnx", "torch")}
        for r in runners.values():
            r.call()  # warm up
        times: dict[str, list[float]] = {"nnx": [], "torch": []}
        for _ in range(repeats):
            for impl, r in runners.items():
                times[impl].append(r.time(calls))
        med = {k: statistics.median(v) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        mem = {impl: peak_memory(impl, kind, args.threads) for impl in runners}
        mib = {k: v / 2**20 for k, v in mem.items()}
        ratio = mem["nnx"] / mem["torch"] if mem["torch"] > 0 else float("nan")
        print(f"| {kind} | {med['nnx']:.2f} | {med['torch']:.2f} | {med['nnx'] / med['torch']:.2f}x "
              f"| {low['nnx']:.2f} | {low['torch']:.2f} | {low['nnx'] / low['torch']:.2f}x "
              f"| {mib['nnx']:.1f} / {mib['torch']:.1f} MiB = {ratio:.2f}x | {agreement(kind):.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
