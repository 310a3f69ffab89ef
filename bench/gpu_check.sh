#!/usr/bin/env bash
# One prepared call for a lent GPU (the device tool): build in place, GPU tests, compute-sanitizer
# (memcheck + racecheck on the native CUDA kernels), the GPU overhead benchmark. Logs and a short table go
# under $OUT (default bench/results/gpu). Budget: well inside 10 minutes on an H100/H200.
#   device run:  bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PY=${PYTHON:-python3}
status=0
step() { echo "== $1 ($(date +%T))" | tee -a "$OUT/summary.txt"; }

step "versions"
{ nvidia-smi -L; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
  torch.cuda.get_device_name())"; } 2>&1 | tee -a "$OUT/summary.txt"

step "build"
if ! (time $PY -m pip install --no-build-isolation --no-deps -e .) > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED" | tee -a "$OUT/summary.txt"; exit 1
fi
$PY -c "import swapkern; print('backends', swapkern.backends())" 2>&1 | tee -a "$OUT/summary.txt"

step "tests (whole suite on the GPU machine, slow GPU tests included)"
timeout 300 $PY -m pytest -q -x -n 8 -m "not cmake and not slow" -p no:cacheprovider tests > "$OUT/tests.log" 2>&1 \
  || status=1
timeout 60 $PY -m pytest -q -m "slow and gpu" -p no:cacheprovider tests/test_gpu.py >> "$OUT/tests.log" 2>&1 || status=1
tail -5 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

for tool in memcheck racecheck; do
  step "compute-sanitizer $tool"
  timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 $PY -m bench.gpu.sanitize \
    > "$OUT/sanitize-$tool.log" 2>&1 || status=1
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks passed|Error" "$OUT/sanitize-$tool.log" | tail -3 \
    | tee -a "$OUT/summary.txt"
done

step "GPU speed-run trainer smoke run (built-in data; ../shared does not travel to the device machine)"
timeout 120 $PY -m bench.train --device cuda --data builtin --protocols ESA EPA --seeds 1 --epochs 2 \
  --batch-size 512 --out "$OUT/train" --no-progress > "$OUT/train.log" 2>&1 || status=1
tail -8 "$OUT/train.log" | tee -a "$OUT/summary.txt"

step "overhead benchmark (GPU)"
timeout 240 $PY -m bench.overhead --device cuda --out "$OUT/overhead.json" > "$OUT/overhead.txt" 2>&1 || status=1
cat "$OUT/overhead.txt" | tee -a "$OUT/summary.txt" | tail -60
step "done, status $status"
exit $status
