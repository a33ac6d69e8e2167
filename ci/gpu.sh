#!/usr/bin/env bash
# The GPU checks on a CUDA machine (cupy must be available):
#   1. the whole test suite (every test that runs on numpy and array_api_strict runs on cupy too);
#   2. `nnx parity` numpy vs cupy on the example models, in float64 and in float32 (TF32 off);
#   3. parity traces of the example models recorded on cupy into tests/data/traces-cupy/ (commit them:
#      CPU CI then replays the GPU's numbers, tests/test_trace.py) and replayed here on numpy;
#   4. benchmarks/tf32.py: what TF32 matmuls change (error against float64, speed);
#   5. benchmarks/bench.py, when the tree has it (SKIP_BENCH=1 leaves it out).
# Every output goes to stdout and into RESULTS (default benchmarks/results/), named
# <date>-gpu-<device>{-tests.log,-parity-float64.json,-parity-float32.json,-tf32.json,-tf32.md,-bench.log},
# and ci/gpu_summary.py writes the summary <date>-gpu-<device>.md and .json (date, device, versions).
# Exit status: 0 when the suite passes and parity agrees, 1 when not, 2 when cupy cannot run here.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
$py -c 'import cupy' 2>/dev/null || { echo "cupy is not importable: pip install '.[cuda13]' (or cuda12)"; exit 2; }
$py - <<'PY' || exit 2
import sys
import nnx
reason = nnx.available(refresh=True)["cupy"]
if reason is not None:
    sys.exit(f"cupy backend unavailable: {reason}")
PY
device=$($py -c 'import cupy; n = cupy.cuda.runtime.getDeviceProperties(0)["name"]; print(n.decode() if isinstance(n, bytes) else n)')
slug=$(printf '%s' "$device" | tr '[:upper:]' '[:lower:]' | sed -e 's/nvidia//' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
results=${RESULTS:-benchmarks/results}
mkdir -p "$results"
stem="$results/$(date -u +%F)-gpu-${slug:-unknown}"
echo "device: $device; results: $stem.*"

$py -m nnx info

# PYTEST_ARGS narrows the run, e.g. "--nnx-backends=numpy,cupy" where CPU CI covers array_api_strict
$py -m pytest -ra ${PYTEST_ARGS:-} 2>&1 | tee "$stem-tests.log"
tests_rc=${PIPESTATUS[0]}

parity_rc=()
for dtype in float64 float32; do
  $py -m nnx parity --backends numpy,cupy --steps 20 --dtype "$dtype" --json "$stem-parity-$dtype.json"
  parity_rc+=("$?")
done

$py -m nnx parity --record tests/data/traces-cupy/ --backends cupy --dtype float32 --steps 3 --batch 4
$py -m nnx parity --against tests/data/traces-cupy/ --backends numpy,cupy 2>&1 | tee "$stem-traces.log"
trace_rc=${PIPESTATUS[0]}

$py benchmarks/tf32.py --backend cupy --json "$stem-tf32.json" --markdown "$stem-tf32.md"
tf32_rc=$?

bench_args=()
if [ -f benchmarks/bench.py ] && [ -z "${SKIP_BENCH:-}" ]; then
  # nnx (generic and fast path) against PyTorch CUDA eager and cuBLAS alone
  $py benchmarks/bench.py --backend cupy --fast-path --workloads W1,W2,W3,INF,large,scale,memory \
    --out "$results" 2>&1 | tee "$stem-bench.log"
  bench_args=(--bench-rc "${PIPESTATUS[0]}")
fi

$py ci/gpu_summary.py "$stem" --tests-rc "$tests_rc" --parity-float64-rc "${parity_rc[0]}" \
  --parity-float32-rc "${parity_rc[1]}" --tf32-rc "$tf32_rc" "${bench_args[@]}"
cat "$stem.md"

[ "$tests_rc" -eq 0 ] && [ "${parity_rc[0]}" -eq 0 ] && [ "${parity_rc[1]}" -eq 0 ] && [ "$trace_rc" -eq 0 ]
