"""Training steps of whole models: nnx (numpy) against PyTorch eager on the CPU, same weights, same run.

    python benchmarks/models_bench.py                          # 1 and 2 threads, every model
    python benchmarks/models_bench.py --before /tmp/nnx-old    # also an older nnx tree, in the same run
    python benchmarks/models_bench.py --quick                  # a smoke run
    python benchmarks/models_bench.py --profile gpt            # per-layer forward/backward, nnx and PyTorch

Models (float32; PyTorch's copy gets nnx's initial weights):

* GPT: a character GPT, vocabulary 65, token Embedding, learned positions,
  4 causal pre-LayerNorm TransformerBlocks (128 wide, 4 heads, tanh GELU),
  LayerNorm, Linear head; batch 32, context 64; AdamW (lr 3e-4, decay 0.01);
* LENET and CONVBLOCK: the networks of ``conv_bench.py`` (batch 64, SGD with momentum);
* LSTM: a character LSTM language model, Embedding 65 -> 128, one LSTM layer of
  128, Linear head; batch 32, 50 steps; Adam (lr 1e-3);
* W2: the dense 784-512-512-10 ReLU net of ``bench.py`` (batch 128, SGD with momentum).

Each implementation runs in a subprocess of its own with its BLAS/OpenMP threads
(and PyTorch's) set to ``--threads``, so the thread settings cannot leak. The
parent sends the workers the same number of steps in turn, rotating who goes
first, so all of them see the same machine load. A worker reports the wall time
and this process's user and system CPU time per step (``getrusage``: all its
threads), and the growth of its peak resident set size (VmHWM) over the
training steps, the model and data already built. Before timing, each worker
trains two steps from the same weights on the same batches; the largest
relative difference of those losses from PyTorch's is the agreement column.
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
import warnings
from pathlib import Path
from typing import Any, Callable

VOCAB, CONTEXT = 65, 64
MODELS: dict[str, dict[str, Any]] = {
    "GPT": {"batch": 32, "steps": 3},
    "LENET": {"batch": 64, "steps": 12},
    "CONVBLOCK": {"batch": 64, "steps": 2},
    "LSTM": {"batch": 32, "steps": 6},
    "W2": {"batch": 128, "steps": 16},
}
AGREE_STEPS, BATCHES = 2, 8
HERE = Path(__file__).resolve().parent


# the models -------------------------------------------------------------------------------------------------------

def nnx_model(name: str) -> Any:
    import nnx

    if name == "GPT":
        return nnx.Sequential(
            nnx.Embedding(VOCAB, 128, seed=0), nnx.PositionalEmbedding(CONTEXT, 128, seed=1),
            *[nnx.TransformerBlock(128, 4, causal=True, seed=2 + k) for k in range(4)],
            nnx.LayerNorm(128), nnx.Linear(128, VOCAB, seed=6))
    if name == "LSTM":
        return nnx.Sequential(nnx.Embedding(VOCAB, 128, seed=0), nnx.LSTM(128, 128, seed=1),
                              nnx.Linear(128, VOCAB, seed=2))
    if name == "W2":
        return nnx.Sequential(nnx.Linear(784, 512, seed=0), nnx.ReLU(), nnx.Linear(512, 512, seed=1), nnx.ReLU(),
                              nnx.Linear(512, 10, seed=2))
    sys.path.insert(0, str(HERE))
    import conv_bench

    return conv_bench.nnx_model(name, "numpy")


def torch_model(name: str, ours: Any) -> Any:
    """PyTorch's model, each module at the index of nnx's, holding nnx's weights."""
    import torch
    import torch.nn.functional as F

    import nnx

    nn = torch.nn

    class Positions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(CONTEXT, 128))

        def forward(self, x: Any) -> Any:
            return x + self.weight[:x.shape[1]]

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(128), nn.LayerNorm(128)
            self.attn = nn.MultiheadAttention(128, 4, batch_first=True)
            self.fc1, self.fc2 = nn.Linear(128, 512), nn.Linear(512, 128)
            self.register_buffer("mask", torch.triu(torch.full((CONTEXT, CONTEXT), float("-inf")), 1))

        def forward(self, x: Any) -> Any:
            h = self.norm1(x)
            x = x + self.attn(h, h, h, attn_mask=self.mask, is_causal=True, need_weights=False)[0]
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))

    class LastOutput(nn.LSTM):
        def forward(self, x: Any) -> Any:  # type: ignore[override]
            return super().forward(x)[0]

    class GlobalAvgPool(nn.Module):
        def forward(self, x: Any) -> Any:
            return x.mean((2, 3))

    if name == "GPT":
        layers = [nn.Embedding(VOCAB, 128), Positions(), *[Block() for _ in range(4)], nn.LayerNorm(128),
                  nn.Linear(128, VOCAB)]
    elif name == "LSTM":
        layers = [nn.Embedding(VOCAB, 128), LastOutput(128, 128, batch_first=True), nn.Linear(128, VOCAB)]
    elif name == "W2":
        layers = [nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)]
    elif name == "LENET":
        layers = [nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)]
    else:
        layers = [nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                  nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), GlobalAvgPool(), nn.Linear(64, 10)]
    model = nn.Sequential(*layers)
    linear = {path for path, layer in ours.named_modules() if isinstance(layer, nnx.Linear)}
    in_out = tuple(nnx.Linear(3, 5).weight.data.shape) == (3, 5)  # nnx's Linear weight layout
    state = {}
    for key, value in ours.state_dict().items():
        w = torch.as_tensor(nnx.to_host(value))
        if in_out and key.rsplit(".", 1)[0] in linear and key.endswith("weight"):
            w = w.T
        state[key.replace("out_proj_", "out_proj.")] = w.contiguous()
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state) - {k for k in model.state_dict() if k.endswith("mask")}
    if missing:
        raise RuntimeError(f"PyTorch's {name} got no nnx weights for {sorted(missing)}")
    return model


def data(name: str) -> tuple[Any, Any]:
    """Host batches: inputs and integer targets, ``BATCHES`` of them."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = BATCHES * MODELS[name]["batch"]
    if name in ("GPT", "LSTM"):
        length = CONTEXT if name == "GPT" else 50
        tokens = rng.integers(0, VOCAB, (n, length + 1))
        return tokens[:, :-1], tokens[:, 1:]
    shape = {"LENET": (1, 28, 28), "CONVBLOCK": (3, 32, 32), "W2": (784,)}[name]
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def nnx_step(name: str, model: Any) -> Callable[[Any, Any], float]:
    import nnx

    nnx.set_finite_checks(False)  # as inside nnx.fit, which checks the data once
    params = model.parameters()
    if name == "GPT":
        opt: Any = nnx.AdamW(params, lr=3e-4, weight_decay=0.01)
    elif name == "LSTM":
        opt = nnx.Adam(params, lr=1e-3)
    else:
        opt = nnx.SGD(params, lr=0.05, momentum=0.9)
    loss = nnx.SoftmaxCrossEntropy()

    def step(x: Any, y: Any) -> float:
        opt.zero_grad()
        out = model.forward(x)
        value = loss.forward(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        model.backward(loss.backward().reshape(out.shape), input_grad=False)
        opt.step()
        return float(value)

    return step


def torch_step(name: str, model: Any) -> Callable[[Any, Any], float]:
    import torch

    if name == "GPT":
        opt: Any = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    elif name == "LSTM":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ce = torch.nn.CrossEntropyLoss()

    def step(x: Any, y: Any) -> float:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        value = ce(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        value.backward()
        opt.step()
        return float(value.detach())

    return step


class Worker:
    """One implementation of one model in this process: ``run(k)`` trains ``k`` steps (cycling batches)."""

    def __init__(self, impl: str, name: str) -> None:
        import nnx

        x, y = data(name)
        batch = MODELS[name]["batch"]
        ours = nnx_model(name)
        if impl == "torch":
            import torch

            self.model = torch_model(name, ours)
            self._step = torch_step(name, self.model)
            X, Y = torch.as_tensor(x), torch.as_tensor(y)
        else:
            self.model = ours
            self._step = nnx_step(name, ours)
            X, Y = nnx.to_device(x), nnx.to_device(y, dtype="int64")
        self.batches = [(X[k * batch:(k + 1) * batch], Y[k * batch:(k + 1) * batch]) for k in range(BATCHES)]
        self.done = 0

    def run(self, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            losses.append(self._step(*self.batches[self.done % BATCHES]))
            self.done += 1
        return losses


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker_main(impl: str, name: str, threads: int) -> None:
    """Serve the parent: one JSON line per request read from stdin (``run K`` or ``quit``)."""
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
    worker = Worker(impl, name)
    base = _peak_rss()
    print(json.dumps({"losses": worker.run(AGREE_STEPS)}), flush=True)
    for line in sys.stdin:
        if not line.startswith("run"):
            break
        steps = int(line.split()[1])
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        worker.run(steps)
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"wall": (t1 - t0) / steps * 1e3, "user": (r1.ru_utime - r0.ru_utime) / steps * 1e3,
                          "sys": (r1.ru_stime - r0.ru_stime) / steps * 1e3, "peak": _peak_rss() - base}),
              flush=True)


class Child:
    """A worker subprocess: ``impl`` is ``torch``, ``nnx`` (this tree) or ``before`` (``--before``'s tree)."""

    def __init__(self, impl: str, name: str, threads: int, tree: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if impl == "torch":  # PyTorch with the C library's allocator as it comes (nnx is imported for the weights)
            env["NNX_HOST_ALLOCATOR"] = "system"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "torch" if impl == "torch" else "nnx", name, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.losses = self._read()["losses"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"a worker stopped (exit status {self.proc.wait()})")
        return json.loads(line)

    def run(self, steps: int) -> dict[str, Any]:
        self.proc.stdin.write(f"run {steps}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()


def measure(name: str, threads: int, trees: dict[str, Path], repeats: int, steps: int) -> dict[str, Any]:
    children = {impl: Child(impl, name, threads, tree) for impl, tree in trees.items()}
    try:
        samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in children}
        order = list(children)
        for r in range(repeats):
            for impl in order[r % len(order):] + order[:r % len(order)]:
                samples[impl].append(children[impl].run(steps))
    finally:
        for child in children.values():
            child.close()
    ref = children["torch"].losses
    out: dict[str, Any] = {"model": name, "threads": threads, "repeats": repeats, "steps": steps, "impls": {}}
    for impl, rows in samples.items():
        losses = children[impl].losses
        out["impls"][impl] = {
            **{k: statistics.median(row[k] for row in rows) for k in ("wall", "user", "sys")},
            "wall_min": min(row["wall"] for row in rows), "peak": max(row["peak"] for row in rows),
            "losses": losses, "loss_diff": max(abs(a - b) / abs(b) for a, b in zip(losses, ref))}
    return out


# per-layer profile -------------------------------------------------------------------------------------------------

def profile(name: str, threads: int, steps: int) -> str:
    """Per child layer of the top Sequential: forward and backward CPU ms per step (this process's CPU time,
    so other processes of a loaded machine do not count), nnx and PyTorch."""
    import torch

    import nnx

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message="Full backward hook")  # the first layer's input needs no gradient
    rows: dict[str, dict[str, float]] = {}

    def add(key: str, what: str, seconds: float) -> None:
        rows.setdefault(key, {}).setdefault(what, 0.0)
        rows[key][what] += seconds * 1e3 / steps

    ours = Worker("nnx", name)
    ours.run(2)
    for key, layer in ours.model.named_children():
        for method in ("forward", "backward"):
            original = getattr(layer, method)

            def timed(*a: Any, _f: Any = original, _k: str = key, _m: str = method, **kw: Any) -> Any:
                t = time.process_time()
                result = _f(*a, **kw)
                add(_k, "nnx " + _m, time.process_time() - t)
                return result

            layer.__dict__[method] = timed
    t = time.process_time()
    ours.run(steps)
    total_nnx = (time.process_time() - t) * 1e3 / steps
    theirs = Worker("torch", name)
    theirs.run(2)
    starts: dict[tuple[str, str], float] = {}
    for key, module in theirs.model.named_children():
        def pre(what: str, k: str = key) -> Callable[..., None]:
            return lambda *a: starts.__setitem__((k, what), time.process_time())

        def post(what: str, k: str = key) -> Callable[..., None]:
            return lambda *a: add(k, "torch " + what, time.process_time() - starts[(k, what)])

        module.register_forward_pre_hook(pre("forward"))
        module.register_forward_hook(post("forward"))
        module.register_full_backward_pre_hook(pre("backward"))
        module.register_full_backward_hook(post("backward"))
    t = time.process_time()
    theirs.run(steps)
    total_torch = (time.process_time() - t) * 1e3 / steps
    lines = [f"{name}, {threads} thread(s), CPU ms per step over {steps} steps: nnx {total_nnx:.1f}, "
             f"PyTorch {total_torch:.1f}", "",
             "| layer | nnx forward | torch forward | nnx backward | torch backward |", "|---|---|---|---|---|"]
    for key, layer in ours.model.named_children():
        r = rows.get(key, {})
        cells = [f"{r.get(w, float('nan')):.2f}" for w in ("nnx forward", "torch forward", "nnx backward",
                                                           "torch backward")]
        lines.append(f"| {key} {type(layer).__name__} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# report -------------------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    import numpy as np
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="minutes"), "cpu": cpu,
            "cores": os.cpu_count(), "load": os.getloadavg(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "command": " ".join(["python", *sys.argv])}


def table(results: list[dict[str, Any]]) -> list[str]:
    impls = list(results[0]["impls"])
    head = ["| model | threads | implementation | wall ms/step | CPU ms/step (user + sys) | sys share "
            "| wall / torch | CPU / torch | peak RSS growth | loss rel. diff. vs torch |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ref = r["impls"]["torch"]
        for impl in impls:
            m = r["impls"][impl]
            cpu, ref_cpu = m["user"] + m["sys"], ref["user"] + ref["sys"]
            head.append(f"| {r['model']} | {r['threads']} | {impl} | {m['wall']:.1f} | {cpu:.1f} "
                        f"({m['user']:.1f} + {m['sys']:.1f}) | {m['sys'] / max(cpu, 1e-9):.0%} | "
                        f"{m['wall'] / ref['wall']:.2f}x | {cpu / ref_cpu:.2f}x | {m['peak'] / 2**20:.1f} MiB | "
                        f"{m['loss_diff']:.1e} |")
    return head


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (1,2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--before", type=Path, help="a directory holding another nnx package, timed as 'before'")
    p.add_argument("--quick", action="store_true", help="1 step, 1 repeat, no results file: a smoke run")
    p.add_argument("--profile", metavar="MODEL", help="per-layer forward/backward times of one model")
    p.add_argument("--out", type=Path, help="write the markdown and JSON here (stem; default: print only)")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker_main(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    if args.profile:
        print(profile(args.profile.upper(), threads[0], 3 if args.quick else 10))
        return 0
    trees = {"nnx": HERE.parent, "torch": HERE.parent}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    info = machine()
    results = []
    for n in threads:
        for name in args.models.upper().split(","):
            steps = 1 if args.quick else MODELS[name]["steps"]
            results.append(measure(name, n, trees, 1 if args.quick else args.repeats, steps))
            print("\n".join(table(results[-1:])[2:]), flush=True)
    info["load_after"] = os.getloadavg()
    text = "\n".join([
        "# Training steps of whole models: nnx (numpy) vs PyTorch eager, CPU", "",
        f"{info['date']}; {info['cpu']}; {info['cores']} cores; load average {info['load'][0]:.1f} before, "
        f"{info['load_after'][0]:.1f} after; python {info['python']}, numpy {info['numpy']}, torch {info['torch']}",
        "", f"Command: `{info['command']}`", "",
        f"Medians over {1 if args.quick else args.repeats} repeats, the implementations alternating (each in its own process with "
        "its threads set); CPU time is user + system time of the worker process, all threads.", "",
        *table(results)]) + "\n"
    print(text)
    if args.out and not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
