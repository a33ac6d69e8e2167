"""Instructions per training step (nnx's Python overhead, counted instead of timed).

Timings of a few-microsecond overhead move by 10-30% on a shared machine;
instruction counts do not. Each contender runs under valgrind's callgrind
twice, for ``warm`` and for ``warm + steps`` steps of batch 1, and the
difference over ``steps`` is its count per step. Contenders: the hand-written
NumPy step of ``reference_numpy.py``, ``nnx.train_step`` and ``nnx.fit`` (one
epoch, batch 1, default settings), on a sigmoid network with the per-sample
half sum-of-squares loss (W1's kind; ``--sizes 784,200,10`` is W1 itself).

    python benchmarks/step_instructions.py                 # 4-3-2: the overhead alone
    python benchmarks/step_instructions.py --sizes 784,200,10

Needs valgrind on the PATH; one thread (``OPENBLAS_NUM_THREADS=1``) so the
counts do not depend on a thread pool. Prints a markdown table; not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTENDERS = ("hand", "train_step", "fit")


def worker(contender: str, sizes: tuple[int, ...], steps: int) -> None:
    """Build the network and run ``steps`` steps (after the imports and the set-up, which both runs share)."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    import bench
    import nnx

    net = bench.Net(sizes, "sigmoid", "half_sse", 0.1, 0.0, bias=False)
    model, loss, opt = net.nnx_model("numpy")
    rng = np.random.default_rng(0)
    x = rng.random((64, sizes[0]), dtype=np.float32)  # the same data for any number of steps
    t = rng.random((64, sizes[-1]), dtype=np.float32)
    if contender == "hand":
        hand = net.hand(*net.host_weights(model))
        for i in range(steps):
            hand.step(x[i % 64:i % 64 + 1], t[i % 64:i % 64 + 1])
    elif contender == "train_step":
        for i in range(steps):
            nnx.train_step(model, loss, opt, x[i % 64:i % 64 + 1], t[i % 64:i % 64 + 1])
    else:
        data = (np.resize(x, (steps, sizes[0])), np.resize(t, (steps, sizes[-1])))
        nnx.fit(model, loss, opt, data, epochs=1, batch_size=1, progress=False, seed=0)


def count(contender: str, sizes: str, steps: int) -> int:
    """Instructions of one worker run, as callgrind counts them."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
           "--worker", contender, "--sizes", sizes, "--steps", str(steps)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode or found is None:
        raise RuntimeError(f"{contender} ({steps} steps) failed:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4,3,2", help="layer sizes (default 4,3,2)")
    p.add_argument("--steps", type=int, default=300, help="counted steps (default 300)")
    p.add_argument("--warm", type=int, default=20, help="steps in the baseline run (default 20)")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if args.worker:
        worker(args.worker, sizes, args.steps)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not on the PATH", file=sys.stderr)
        return 1
    jobs = [(c, n) for c in CONTENDERS for n in (args.warm, args.warm + args.steps)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(job[0], args.sizes, job[1]), jobs)))
    per_step = {c: (counts[(c, args.warm + args.steps)] - counts[(c, args.warm)]) / args.steps for c in CONTENDERS}
    print(f"network {args.sizes}, batch 1, {args.steps} steps counted\n")
    print("| contender | instructions per step | / hand |")
    print("|---|---|---|")
    for c in CONTENDERS:
        print(f"| {c} | {per_step[c]:,.0f} | {per_step[c] / per_step['hand']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
