"""Summarise the files ci/gpu.sh wrote into one markdown page and one JSON document.

Usage: ``python ci/gpu_summary.py STEM --tests-rc N --parity-rc-float64 N
--parity-rc-float32 N [--tf32-rc N] [--bench-rc N]``, where ``STEM`` is the
path prefix of the run's files (``benchmarks/results/<date>-gpu-<device>``).
Writes ``STEM.md`` and ``STEM.json``; a file that is missing is reported as
missing, never invented.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from typing import Any


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for module in ("nnx", "numpy", "array_api_compat", "array_api_strict", "cupy"):
        try:
            mod = __import__(module)
            out[module] = str(getattr(mod, "__version__", "?"))
        except Exception as exc:  # a summary reports what it cannot read
            out[module] = f"unavailable ({type(exc).__name__})"
    return out


def _device() -> dict[str, Any]:
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": cupy.cuda.Device(0).compute_capability,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        }
    except Exception as exc:
        return {"name": f"unknown ({type(exc).__name__}: {exc})"}


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pytest_line(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [ln.strip() for ln in fh if ln.strip()]
    for line in reversed(lines):
        m = re.match(r"^=*\s*(.*?\b(passed|failed|error|errors|skipped)\b.*?)\s*=*$", line)
        if m:
            return m.group(1)
    return None


def _parity_rows(doc: Any) -> list[str]:
    if doc is None:
        return ["| (missing) | | |"]
    rows = []
    for name, rep in doc["models"].items():
        if rep["ok"]:
            worst = max(rep["worst"].values(), key=lambda w: w["score"] if isinstance(w["score"], float) else 1e300)
            ulps = "" if worst["ulps"] is None else f", {worst['ulps']:.0f} ulp"
            detail = f"worst max rel error {worst['max_rel']:.2g}{ulps} (step {worst['step']}, {worst['tensor']})"
            rows.append(f"| {name} | agree | {detail} |")
        else:
            f = rep["first_failure"]
            errors = "; ".join(f"{k}: {v}" for k, v in rep["errors"].items())
            detail = errors or (
                f"first at step {f['step']}, layer {f['layer']} {f['layer_name']}, {f['phase']} {f['tensor']}: "
                f"max rel error {f['max_rel']}, {f['ulps']} ulp")
            rows.append(f"| {name} | DIFFER | {detail} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stem")
    for name in ("tests", "parity-float64", "parity-float32", "tf32", "bench"):
        parser.add_argument(f"--{name}-rc", type=int, default=None)
    args = parser.parse_args(argv)
    stem = args.stem
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    device = _device()
    versions = _versions()
    parity = {d: _read_json(f"{stem}-parity-{d}.json") for d in ("float64", "float32")}
    tf32 = _read_json(f"{stem}-tf32.json")
    bench_log = f"{stem}-bench.log"
    doc = {
        "date": date,
        "device": device,
        "versions": versions,
        "tests": {"rc": args.tests_rc, "summary": _pytest_line(f"{stem}-tests.log"), "log": f"{stem}-tests.log"},
        "parity": {d: {"rc": getattr(args, f"parity_{d}_rc"), "report": parity[d]} for d in parity},
        "tf32": {"rc": args.tf32_rc, "report": tf32},
        "bench": {"rc": args.bench_rc, "log": bench_log if os.path.exists(bench_log) else None},
    }
    doc["ok"] = args.tests_rc == 0 and all(doc["parity"][d]["rc"] == 0 for d in parity)
    with open(f"{stem}.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)

    base = os.path.basename(stem)
    lines = [
        f"# GPU checks, {date[:10]}, {device['name']}",
        "",
        f"Date: {date}. Device: {device['name']}"
        + (f" (compute capability {device['compute_capability']}, CUDA runtime {device['cuda_runtime']}, "
           f"driver {device['cuda_driver']})" if "cuda_runtime" in device else "") + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "Written by `ci/gpu.sh`; the files named below lie beside this one.",
        "",
        "## Test suite (every backend)",
        "",
        f"`python -m pytest -ra` exit {args.tests_rc}: {doc['tests']['summary'] or '(no summary line found)'} "
        f"(`{base}-tests.log`)",
        "",
    ]
    for d in ("float64", "float32"):
        rep = parity[d]
        steps = rep["steps"] if rep else "?"
        backends = ",".join(rep["backends"]) if rep else "?"
        lines += [
            f"## `nnx parity --backends {backends} --dtype {d}` ({steps} steps, TF32 off)",
            "",
            f"Exit {getattr(args, f'parity_{d}_rc')} (`{base}-parity-{d}.json`).",
            "",
            "| model | verdict | detail |",
            "| --- | --- | --- |",
            *_parity_rows(rep),
            "",
        ]
    lines += ["## TF32 (benchmarks/tf32.py)", ""]
    if tf32 is None:
        lines.append(f"No result (exit {args.tf32_rc}).")
    else:
        with open(f"{stem}-tf32.md", encoding="utf-8") as fh:
            table = fh.read().split("\n\n", 1)[-1]
        lines.append(table.strip())
    lines += ["", "## Benchmarks (benchmarks/bench.py)", ""]
    if doc["bench"]["log"] is None:
        lines.append("Not run (SKIP_BENCH, or no benchmarks/bench.py in the tree).")
    else:
        lines.append(f"Exit {args.bench_rc}; output in `{base}-bench.log`.")
    lines.append("")
    with open(f"{stem}.md", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    print(f"summary: {stem}.md, {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
