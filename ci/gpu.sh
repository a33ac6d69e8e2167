#!/usr/bin/env bash
# The test suite on a CUDA machine: cupy must be available, and every test that
# runs on numpy and array_api_strict runs on cupy too. Output goes to stdout and,
# when RESULTS is set, to "$RESULTS/gpu-tests.log".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import cupy' 2>/dev/null || { echo "cupy is not importable: pip install '.[cuda13]' (or cuda12)"; exit 2; }
python3 - <<'PY'
import sys
import nnx
reason = nnx.available(refresh=True)["cupy"]
if reason is not None:
    sys.exit(f"cupy backend unavailable: {reason}")
PY
nnx_cmd=(python3 -m nnx info)
"${nnx_cmd[@]}"
log=${RESULTS:+$RESULTS/gpu-tests.log}
if [ -n "$log" ]; then
  python3 -m pytest -ra 2>&1 | tee "$log"
else
  python3 -m pytest -ra
fi
# The GPU benchmarks: nnx (generic and fast path) against PyTorch CUDA eager and cuBLAS alone.
python3 benchmarks/bench.py --backend cupy --fast-path --workloads W1,W2,W3,INF,large,scale,memory ${RESULTS:+--out "$RESULTS"}
