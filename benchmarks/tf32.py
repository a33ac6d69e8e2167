"""What TF32 matmuls change on a GPU: accuracy against float64, and speed.

nnx runs float32 matmuls in full precision unless asked
(``nnx.backend.set_matmul_precision("tf32", "cupy")``). This script measures,
with the setting off ("highest") and on ("tf32"):

* one float32 matmul of two N x N matrices: the largest error relative to the
  float64 product (element error over the largest |element|), and its speed;
* a float32 training run (an MLP, SGD, MSE): the largest relative error of
  the final parameters and of each step's loss against the same run in
  float64, and the time per step.

Run on a CUDA machine: ``python benchmarks/tf32.py [--backend cupy]
[--json OUT] [--markdown OUT]``. Where the backend cannot run, it says why and
exits 0 without measuring (so CI on a CPU machine skips it cleanly).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

import nnx
from nnx import backend as nb


def _sync(name: str) -> Callable[[], None]:
    if name == "cupy":
        import cupy

        return cupy.cuda.Device().synchronize
    return lambda: None


def _device(name: str) -> str:
    if name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        cc = cupy.cuda.Device(0).compute_capability
        raw = props["name"]
        return f"{raw.decode() if isinstance(raw, bytes) else raw} (compute capability {cc})"
    return f"{platform.processor() or platform.machine()} CPU"


def _timed(fn: Callable[[], Any], sync: Callable[[], None], repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    """Largest element error relative to the reference's largest magnitude."""
    return float(np.abs(a.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-300))


def matmul(name: str, n: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    a64, b64 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    ref = a64 @ b64
    a, b = nb.to_device(a64, name, "float32"), nb.to_device(b64, name, "float32")
    sync = _sync(name)
    out: dict[str, Any] = {"n": n}
    for precision in ("highest", "tf32"):
        nb.set_matmul_precision(precision, name)
        product = nb.to_host(a @ b)
        seconds = _timed(lambda: a @ b, sync, repeat)
        out[precision] = {
            "max_rel_error_vs_float64": _rel(product, ref),
            "seconds": seconds,
            "tflops": 2 * n**3 / seconds / 1e12,
        }
    return out


def _mlp(dtype: str, name: str, width: int) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(256, width, seed=0, dtype=dtype, backend=name), nnx.Tanh(),
        nnx.Linear(width, width, seed=1, dtype=dtype, backend=name), nnx.ReLU(),
        nnx.Linear(width, 10, seed=2, dtype=dtype, backend=name),
    )


def training(name: str, steps: int, batch: int, width: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    x_host, y_host = rng.standard_normal((batch, 256)), rng.standard_normal((batch, 10))
    sync = _sync(name)

    def run(dtype: str) -> tuple[list[np.ndarray], list[float], float]:
        model = _mlp(dtype, name, width)
        loss, sgd = nnx.MSE(), nnx.SGD(model.parameters(), lr=0.05)
        x, y = nb.to_device(x_host, name, dtype), nb.to_device(y_host, name, dtype)
        losses = []
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            value, _ = nnx.train_step(model, loss, sgd, x, y)
            losses.append(value)
        sync()
        seconds = (time.perf_counter() - t0) / steps
        return [nb.to_host(p.data) for p in model.parameters()], [float(v) for v in losses], seconds

    nb.set_matmul_precision("highest", name)
    ref_params, ref_losses, _ = run("float64")
    out: dict[str, Any] = {"steps": steps, "batch": batch, "width": width}
    for precision in ("highest", "tf32"):
        nb.set_matmul_precision(precision, name)
        run("float32")  # warm-up: kernels compiled, memory pooled
        timings = [run("float32") for _ in range(3)]
        params, losses, _ = timings[-1]
        seconds = float(np.median([t[2] for t in timings]))
        out[precision] = {
            "max_rel_error_params_vs_float64": max(_rel(p, r) for p, r in zip(params, ref_params)),
            "max_rel_error_loss_vs_float64": max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses)),
            "final_loss": losses[-1],
            "seconds_per_step": seconds,
        }
    out["final_loss_float64"] = ref_losses[-1]
    return out


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# TF32 matmuls on {doc['backend']}: accuracy and speed",
        "",
        f"- date: {doc['date']}",
        f"- device: {doc['device']}",
        f"- nnx {doc['nnx']}, {doc['library']}",
        "- errors: largest |float32 result - float64 result| over the largest |float64 result|",
        "",
        "| measurement | highest (TF32 off) | tf32 (TF32 on) |",
        "| --- | --- | --- |",
    ]
    for m in doc["matmul"]:
        h, t = m["highest"], m["tf32"]
        lines.append(f"| matmul {m['n']}x{m['n']}: max rel error | {h['max_rel_error_vs_float64']:.2e} "
                     f"| {t['max_rel_error_vs_float64']:.2e} |")
        lines.append(f"| matmul {m['n']}x{m['n']}: TFLOP/s | {h['tflops']:.2f} | {t['tflops']:.2f} |")
    tr = doc["training"]
    h, t = tr["highest"], tr["tf32"]
    what = f"MLP 256-{tr['width']}-{tr['width']}-10, batch {tr['batch']}, {tr['steps']} SGD steps"
    lines += [
        f"| {what}: params max rel error | {h['max_rel_error_params_vs_float64']:.2e} "
        f"| {t['max_rel_error_params_vs_float64']:.2e} |",
        f"| {what}: loss max rel error | {h['max_rel_error_loss_vs_float64']:.2e} "
        f"| {t['max_rel_error_loss_vs_float64']:.2e} |",
        f"| {what}: ms per step (median of 3 runs) | {h['seconds_per_step'] * 1e3:.3f} "
        f"| {t['seconds_per_step'] * 1e3:.3f} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cupy", help="a backend with a matmul precision setting (cupy)")
    parser.add_argument("--sizes", default="1024,4096", help="matmul sizes N (comma-separated)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    name = args.backend
    reason = nb.available(refresh=True).get(name, f"unknown backend {name!r}")
    if reason is None and nb.BACKENDS[name].matmul_precision is None:
        reason = f"backend {name!r} has no reduced-precision matmul setting"
    if reason is not None:
        print(f"tf32: skipped: {reason}")
        return 0
    before = nb.matmul_precision(name)
    try:
        module = sys.modules[nb.BACKENDS[name].module]
        doc = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "backend": name,
            "device": _device(name),
            "nnx": nnx.__version__,
            "library": f"{nb.BACKENDS[name].module} {getattr(module, '__version__', '?')}",
            "matmul": [matmul(name, int(n), args.repeat) for n in args.sizes.split(",")],
            "training": training(name, args.steps, args.batch, args.width),
        }
    finally:
        nb.set_matmul_precision(before, name)
    text = _markdown(doc)
    print(text)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
