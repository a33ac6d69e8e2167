"""``nnx parity``: do these backends agree on these models? A CI step.

Exit status: 0 when every model agrees on every backend, 1 when one does not
(the report says where they first part ways), 2 for bad arguments or a backend
that cannot run here (with the reason).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from typing import Any

import nnx
from nnx import backend as _backend
from nnx.errors import NnxError
from nnx.parity import check_parity
from nnx.parity_examples import EXAMPLES, ParityCase, case_for_model, example


def add_parser(sub: Any) -> None:
    """Add the ``parity`` subcommand to the ``nnx`` command's subparsers."""
    p = sub.add_parser(
        "parity",
        help="train one model on several backends and report where they first disagree",
        description="Train copies of a model on two or more backends for K steps and compare every "
        "layer's outputs, gradients and parameters. Exits 0 when all agree, 1 when not, "
        "2 for bad arguments or an unavailable backend.",
    )
    p.add_argument("--backends", default=None,
                   help="comma-separated backends, the first is the reference "
                   "(default: every backend available here)")
    p.add_argument("--model", action="append", default=None, metavar="EXAMPLE|SAVED_FILE",
                   help=f"an example model ({', '.join(EXAMPLES)}, or 'all', the default) "
                   "or a file saved with nnx.save; repeatable")
    p.add_argument("--steps", type=int, default=5, help="training steps to compare (default 5)")
    p.add_argument("--dtype", choices=_backend.FLOAT_DTYPES, default="float64",
                   help="dtype of the example models (default float64)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance per step: step k allows k times it "
                   "(default: 1e-12 for float64, 1e-5 for float32)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write the full report as JSON to OUT")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"nnx parity: error: {message}", file=sys.stderr)
    return 2


def _cases(specs: list[str], dtype: str) -> list[ParityCase]:
    names: list[str] = []
    for spec in specs:
        names.extend(EXAMPLES if spec == "all" else [spec])
    cases = []
    for name in names:
        if name in EXAMPLES:
            cases.append(example(name, dtype))
        elif os.path.exists(name):
            cases.append(_saved_case(name))
        else:
            raise ValueError(f"--model {name!r} is neither an example ({', '.join(EXAMPLES)}, all) "
                             f"nor an existing file")
    return cases


def _saved_case(path: str) -> ParityCase:
    load = getattr(nnx, "load", None)
    if load is None:
        raise ValueError(f"cannot read {path!r}: this nnx has no nnx.load; compare an example model instead")
    return case_for_model(load(path, backend="numpy"), os.path.basename(path))


def run(args: argparse.Namespace) -> int:
    """Run the parity check the arguments describe; returns the exit status."""
    if args.steps < 1:
        return _fail(f"--steps must be >= 1, got {args.steps}")
    if args.backends is None:
        names = [n for n, reason in _backend.available(refresh=True).items() if reason is None]
    else:
        names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if len(names) < 2:
        return _fail(f"parity needs two or more backends, got {names}")
    try:
        for name in names:
            _backend.get(name)
        cases = _cases(args.model or ["all"], args.dtype)
    except (NnxError, ValueError, OSError) as exc:  # unknown/unavailable backends, unreadable files
        return _fail(str(exc))

    print(f"nnx parity: reference {names[0]}, compared {', '.join(names[1:])}; {args.steps} step(s); "
          f"example models in {args.dtype}; float32 matmuls in full precision ('highest') everywhere")
    results: dict[str, Any] = {}
    ok = True
    for case in cases:
        report = check_parity(case.model, case.loss, case.x, case.y, backends=names, steps=args.steps,
                              optimizer=case.optimizer, rtol=args.rtol)
        ok = ok and report.ok
        print(f"{case.name:<10} {report}")
        results[case.name] = {"description": case.description, **report.to_dict()}
    if args.json_out:
        document = {
            "ok": ok,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nnx": nnx.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "backends": names,
            "dtype": args.dtype,
            "steps": args.steps,
            "models": results,
        }
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
    print("all agree" if ok else "backends DIFFER (see above)")
    return 0 if ok else 1
