"""One TransformerBlock's forward and backward: nnx (numpy) against PyTorch CPU, in the same run.

    python benchmarks/attention_bench.py                 # batch 32, seq 64, embed 128, 4 heads, float32
    python benchmarks/attention_bench.py --threads 2 --repeats 30
    python benchmarks/attention_bench.py --quick         # a smoke run

The same architecture on both sides, from the same weights: a pre-LayerNorm
block (multi-head self-attention, then a 512-wide MLP with tanh GELU, both
residual, no dropout); PyTorch's is ``nn.TransformerEncoderLayer(norm_first=True)``.
A step is forward plus backward of ``sum(out * g)`` for a fixed ``g`` (the
input gradient and every parameter gradient), without an optimizer step.
Each repeat times nnx and PyTorch back to back, alternating which goes first;
the script prints per-step medians, the median of the per-repeat ratios, and
the peak memory each adds over a few steps in a fresh process (growth of the
peak resident set size, VmHWM). Both use ``--threads`` BLAS/OpenMP threads
(default 1: on a shared machine more threads than free cores spin and wait).
Before timing, the outputs and gradients of both are compared (float32).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

SHAPE = {"batch": 32, "seq": 64, "embed": 128, "heads": 4, "hidden": 512}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--causal", action="store_true", help="causal self-attention on both sides")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory", default=None, help=argparse.SUPPRESS)  # child: nnx or torch
    return parser.parse_args(argv)


class Runner:
    """``step()`` runs one forward and backward; built from seed 0's nnx weights on both sides."""

    def __init__(self, impl: str, causal: bool) -> None:
        import numpy as np

        import nnx

        s = SHAPE
        rng = np.random.default_rng(1)
        x = rng.standard_normal((s["batch"], s["seq"], s["embed"])).astype(np.float32)
        g = rng.standard_normal(x.shape).astype(np.float32)
        block = nnx.TransformerBlock(s["embed"], s["heads"], hidden_dim=s["hidden"], causal=causal, seed=0,
                                     backend="numpy")
        self.impl = impl
        if impl == "nnx":
            nnx.set_finite_checks(False)
            self.block = block

            def step() -> Any:
                block.zero_grad()
                out = block.forward(x)
                return out, block.backward(g)
        else:
            import torch

            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            layer = torch.nn.TransformerEncoderLayer(
                s["embed"], s["heads"], dim_feedforward=s["hidden"], dropout=0.0, batch_first=True, norm_first=True,
                activation=torch.nn.GELU(approximate="tanh"))
            state = {n: torch.as_tensor(a) for n, a in nnx.interop.torch_state_dict(block).items()}
            layer.load_state_dict(state)
            mask = torch.nn.Transformer.generate_square_subsequent_mask(s["seq"]) if causal else None
            xt, gt = torch.tensor(x, requires_grad=True), torch.as_tensor(g)
            self.block = layer

            def step() -> Any:
                layer.zero_grad(set_to_none=True)
                xt.grad = None
                out = layer(xt, src_mask=mask, is_causal=causal)
                out.backward(gt)
                return out.detach().numpy(), xt.grad.numpy()

        self.step = step


def agreement(causal: bool) -> float:
    """The largest difference of outputs and input gradients, relative to the largest value."""
    import numpy as np

    a, b = Runner("nnx", causal).step(), Runner("torch", causal).step()
    return max(float(np.abs(p - q).max() / np.abs(q).max()) for p, q in zip(a, b))


def timed(runner: Runner, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return (time.perf_counter() - started) / steps * 1e3


def peak_memory(impl: str, causal: bool) -> float:
    """Peak resident bytes a few steps add, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--memory", impl] + (["--causal"] if causal else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
    return float(out.stdout.strip().splitlines()[-1])


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _memory_child(impl: str, causal: bool) -> None:
    runner = Runner(impl, causal)
    before = _status_kib("VmRSS:")
    for _ in range(3):
        runner.step()
    print((_status_kib("VmHWM:") - before) * 1024)


def main() -> None:
    args = _args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy and torch load their thread pools
    if args.memory:
        _memory_child(args.memory, args.causal)
        return
    import numpy as np
    import torch

    repeats, steps = (3, 2) if args.quick else (args.repeats, args.steps)
    s = SHAPE
    print(f"TransformerBlock forward+backward, batch {s['batch']}, seq {s['seq']}, embed {s['embed']}, "
          f"{s['heads']} heads, MLP {s['hidden']}, float32, causal={args.causal}; {args.threads} thread(s); "
          f"numpy {np.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"agreement (max |nnx - torch| / max |torch|, output and input gradient): {agreement(args.causal):.1e}")
    runners = {"nnx": Runner("nnx", args.causal), "torch": Runner("torch", args.causal)}
    for r in runners.values():
        timed(r, 1)  # warm up
    times: dict[str, list[float]] = {"nnx": [], "torch": []}
    for i in range(repeats):
        order = ("nnx", "torch") if i % 2 == 0 else ("torch", "nnx")
        for name in order:
            times[name].append(timed(runners[name], steps))
    ratios = [a / b for a, b in zip(times["nnx"], times["torch"])]
    for name, ts in times.items():
        print(f"{name:6s} median {statistics.median(ts):8.2f} ms/step   min {min(ts):8.2f} ms/step")
    print(f"ratio nnx / torch: median {statistics.median(ratios):.2f}x (per-repeat ratios from "
          f"{min(ratios):.2f} to {max(ratios):.2f}, {repeats} repeats of {steps} steps)")
    for name in runners:
        print(f"{name:6s} peak memory added by 3 steps: {peak_memory(name, args.causal) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
