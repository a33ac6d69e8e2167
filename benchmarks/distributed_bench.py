"""Data-parallel training over MPI: weak scaling from 1 to 2 ranks, and the gradient all-reduce.

    python benchmarks/distributed_bench.py                 # the table, into benchmarks/results/
    python benchmarks/distributed_bench.py --steps 2 --repeats 1 --no-write   # a smoke run

Workload W3 of benchmarks/bench.py (784-2048-2048-10 ReLU MLP, softmax
cross-entropy, SGD with momentum, float32, batch 512 per rank), on the numpy
backend, every rank with one BLAS thread. Weak scaling: the seconds of a step
(forward, backward, gradient sum over the ranks, update) with 1 rank and with
2 ranks, each rank on its own batch of 512; efficiency = t(1 rank) / t(2 ranks).
All-reduce: nnx's bucketed sum of the W3 gradients (GradientBuckets.reduce)
against a raw mpi4py ``Allreduce`` of a float32 buffer of the same bytes, as
algorithm bandwidth (bytes / seconds). Times are medians over repeats.

The script launches itself with ``mpiexec -n 1`` and ``-n 2`` (the mpiexec next
to this Python, else on PATH); ``--worker`` is the part each rank runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import nnx  # noqa: E402
from bench import W3_SIZES, make_data, nets  # noqa: E402

BATCH = 512
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def worker(steps: int, repeats: int) -> dict[str, Any]:
    """One rank's part: timed W3 steps and all-reduces; rank 0 returns the medians (others: {})."""
    world = nnx.distributed.init()
    x, y = make_data(0)
    model, loss, opt = nets()["W3"].nnx_model("numpy")
    nnx.distributed.broadcast_model(world, model)
    buckets = nnx.distributed.GradientBuckets(opt.params, world)
    share = 1.0 / world.size
    first = world.rank * BATCH  # each rank its own batch of the data, cycling
    xs, ys = nnx.to_device(x, "numpy", "float32"), nnx.to_device(y, "numpy")

    def step(k: int) -> None:
        lo = (first + k * world.size * BATCH) % (x.shape[0] - BATCH)
        nnx.train_step(model, loss, opt, xs[lo:lo + BATCH], ys[lo:lo + BATCH],
                       before_update=lambda *_: buckets.reduce(share))

    def plain(k: int) -> None:
        lo = (k * BATCH) % (x.shape[0] - BATCH)
        nnx.train_step(model, loss, opt, xs[lo:lo + BATCH], ys[lo:lo + BATCH])

    raw = np.ones(sum(p.size for p in opt.params), dtype=np.float32)

    def raw_allreduce(k: int) -> None:
        world.comm.Allreduce(world.MPI.IN_PLACE, raw, op=world.MPI.SUM)

    def timed(fn: Any, n: int) -> float:
        world.comm.Barrier()
        t0 = time.perf_counter()
        for k in range(n):
            fn(k)
        world.comm.Barrier()
        return (time.perf_counter() - t0) / n

    step(0)
    runs: dict[str, list[float]] = {"step": [], "plain_step": [], "nnx_allreduce": [], "raw_allreduce": []}
    for _ in range(repeats):
        runs["step"].append(timed(step, steps))
        if world.size == 1:
            runs["plain_step"].append(timed(plain, steps))
        runs["nnx_allreduce"].append(timed(lambda k: buckets.reduce(share), 5))
        runs["raw_allreduce"].append(timed(raw_allreduce, 5))
    if world.rank != 0:
        return {}
    out = {k: statistics.median(v) for k, v in runs.items() if v}
    out.update(ranks=world.size, gradient_bytes=int(raw.nbytes), buckets=len(buckets),
               mpi=" ".join(world.MPI.Get_library_version().split()[:3]), repeats=repeats, steps=steps)
    return out


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("no mpiexec: pip install '.[distributed]' in nnx's clone")
    return found


def launch(ranks: int, steps: int, repeats: int) -> dict[str, Any]:
    command = [_mpiexec(), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "--worker",
               "--steps", str(steps), "--repeats", str(repeats)]
    done = subprocess.run(command, env={**os.environ, **THREADS}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                            "nnx": nnx.__version__, "cpu": platform.processor()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", info["cpu"]).strip()
        info["cores"] = int(fields.get("CPU(s)", info["cores"]))
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    try:
        with open("/proc/loadavg") as f:
            info["load_before"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def report(one: dict[str, Any], two: dict[str, Any], info: dict[str, Any], command: str) -> str:
    nbytes = two["gradient_bytes"]
    rows = [
        ("W3 step, 1 rank, plain nnx.train_step", one["plain_step"]),
        ("W3 step, 1 rank, through the gradient sum", one["step"]),
        ("W3 step, 2 ranks (512 samples each)", two["step"]),
    ]
    eff_plain, eff = one["plain_step"] / two["step"], one["step"] / two["step"]
    gb = 1e9
    lines = [
        f"# Data-parallel training on CPU (MPI), {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (load average before the run: "
        f"{' '.join(info.get('load_before', ['?']))}; the machine was shared with other jobs, so the times "
        f"are medians of {two['repeats']} repeats of {two['steps']} steps). Python {info['python']}, NumPy "
        f"{info['numpy']}, {two['mpi']}. Every rank: one BLAS thread (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1).",
        "",
        f"Command: `{command}`",
        "",
        f"Workload W3 (sizes {'-'.join(map(str, W3_SIZES))}, float32, SGD momentum), batch {BATCH} per rank.",
        "",
        "| what | seconds per step |",
        "|---|---|",
        *[f"| {name} | {t:.4f} |" for name, t in rows],
        "",
        f"Weak-scaling efficiency from 1 to 2 ranks: **{eff_plain:.2f}** against the plain 1-process step "
        f"({eff:.2f} against the 1-rank step through the same gradient-sum code).",
        "",
        f"All-reduce of the W3 gradients ({nbytes / 2**20:.1f} MiB float32, {two['buckets']} bucket(s)), 2 ranks:",
        "",
        "| what | seconds | algorithm bandwidth |",
        "|---|---|---|",
        f"| nnx GradientBuckets.reduce | {two['nnx_allreduce']:.4f} | {nbytes / two['nnx_allreduce'] / gb:.2f} GB/s |",
        f"| raw mpi4py Allreduce, same bytes | {two['raw_allreduce']:.4f} | "
        f"{nbytes / two['raw_allreduce'] / gb:.2f} GB/s |",
        "",
        f"nnx reaches {two['raw_allreduce'] / two['nnx_allreduce']:.2f} of the MPI library's own all-reduce "
        f"bandwidth (the rest: gathering the gradients into the flat bucket, scaling it by the rank's share "
        f"and reading the flags back).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="the part each rank runs (launched by the script)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    args = p.parse_args(argv)
    if args.worker:
        out = worker(args.steps, args.repeats)
        if out:
            print(json.dumps(out))
        return 0
    info = machine()
    info["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    one = launch(1, args.steps, args.repeats)
    two = launch(2, args.steps, args.repeats)
    command = f"python benchmarks/distributed_bench.py --steps {args.steps} --repeats {args.repeats}"
    text = report(one, two, info, command)
    print(text)
    if not args.no_write:
        out = HERE / "results" / f"{_dt.date.today().isoformat()}-distributed-cpu"
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"machine": info, "one_rank": one, "two_ranks": two},
                                                       indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
