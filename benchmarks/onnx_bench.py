"""ONNX export of every example model: export time, file size, error against nnx, and onnxruntime's
inference speed against nnx's, measured interleaved in the same run.

    python benchmarks/onnx_bench.py                 # the table, written to benchmarks/results/
    python benchmarks/onnx_bench.py --quick         # a smoke run, nothing written

Per example model (``nnx parity --model`` list, float32, after one training-mode forward so batch norms
hold running statistics): ``nnx.export_onnx`` with a dynamic batch axis, timed once after an untimed
warm-up export (CPU seconds of this process: tracing, onnx's checker, the write); the file's size; the largest absolute and relative error of
onnxruntime's output against nnx's forward on held-out inputs of batch 64; then the two forwards, nnx
(``model.inference()``, NumPy) and onnxruntime (CPU provider, one intra-op thread, as NumPy runs with
OPENBLAS_NUM_THREADS=1), called in turn within each repeat, CPU time per call (user+sys of this process,
``time.process_time``), median over repeats. The ratio is nnx's time over onnxruntime's: above 1,
onnxruntime is faster.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent

import nnx  # noqa: E402
from nnx import random as _random  # noqa: E402
from nnx.testing.compare import compare  # noqa: E402
from nnx.testing.examples import EXAMPLES, example, held_out_like  # noqa: E402


def _cpu_per_call(run: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        run()
    return (time.process_time() - start) / calls


def _row(name: str, repeats: int, calls: int, batch: int, folder: Path) -> dict[str, Any]:
    import onnxruntime as ort

    case = example(name, "float32")
    case.model.forward(case.x)
    case.model.drop_saved()
    model = case.model.eval()
    path = folder / f"{name}.onnx"
    start = time.process_time()
    nnx.export_onnx(model, path, (None, *case.x.shape[1:]))
    export_s = time.process_time() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = held_out_like(case.x, batch, _random.make_rng(100))
    host = np.asarray(x)

    def run_nnx() -> Any:
        with model.inference():
            return model.forward(x)

    def run_ort() -> Any:
        return session.run(["output"], {"input": host})[0]

    verdict = compare(run_ort(), nnx.to_host(run_nnx()))
    times: dict[str, list[float]] = {"nnx": [], "ort": []}
    for _ in range(repeats):  # interleaved: a load change on the machine hits both
        times["nnx"].append(_cpu_per_call(run_nnx, calls))
        times["ort"].append(_cpu_per_call(run_ort, calls))
    nnx_t, ort_t = (statistics.median(times[k]) for k in ("nnx", "ort"))
    return {"model": name, "export_s": export_s, "bytes": path.stat().st_size, "max_abs": verdict.max_abs,
            "max_rel": verdict.max_rel, "ok": verdict.ok, "nnx_us": nnx_t * 1e6, "ort_us": ort_t * 1e6,
            "ratio": nnx_t / ort_t}


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{nnx.backend.device_name('numpy')}, {os.cpu_count()} logical CPUs, load average {load} at the start; "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | export (CPU s) | file size | max abs error | max rel error | within 1e-5 | "
             "nnx (µs/call) | onnxruntime (µs/call) | nnx / onnxruntime |",
             "|---|---:|---:|---:|---:|:-:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['export_s']:.2f} | {r['bytes'] / 1024:.1f} KiB | {r['max_abs']:.2g} | "
                     f"{r['max_rel']:.2g} | {'yes' if r['ok'] else 'NO'} | {r['nnx_us']:.0f} | {r['ort_us']:.0f} | "
                     f"{r['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, nothing written")
    parser.add_argument("--batch", type=int, default=64, help="rows per inference call (64)")
    parser.add_argument("--out", type=Path, default=None, help="the Markdown file to write "
                        "(default: benchmarks/results/<date>-onnx.md)")
    args = parser.parse_args(argv)
    import onnxruntime
    import tempfile

    repeats, calls = (3, 5) if args.quick else (15, 20)
    machine = _machine()
    with tempfile.TemporaryDirectory() as folder:
        warm = example("seed000", "float32").model.eval()
        nnx.export_onnx(warm, Path(folder) / "warm.onnx")  # imports and first-call caches, not timed
        rows = [_row(name, repeats, calls, args.batch, Path(folder)) for name in EXAMPLES]
    command = "OPENBLAS_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/onnx_bench.py" + (" --quick" if args.quick else "")
    text = (f"# ONNX export of the example models ({_dt.date.today().isoformat()})\n\n"
            f"Command: `{command}`\n\nMachine: {machine}; onnxruntime {onnxruntime.__version__}. "
            f"Batch {args.batch}, float32, {repeats} repeats of {calls} calls, medians of CPU time per call "
            f"(user+sys of the process), nnx and onnxruntime interleaved. The errors are onnxruntime's output "
            f"against nnx's on held-out inputs; the relative one is the largest over single elements, near-zero "
            f"ones included, and 'within 1e-5' is nnx's verdict (nnx.testing.compare: |a - b| <= 1e-5 "
            f"(|b| + max |b|)).\n\n{_table(rows)}\n")
    print(text)
    if not args.quick:
        out = args.out or HERE / "results" / f"{_dt.date.today().isoformat()}-onnx.md"
        nnx.paths.atomic_write(out, [text.encode()])
        print(f"wrote {out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
