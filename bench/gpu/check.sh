#!/usr/bin/env bash
# GPU first light: one device call, build included. Its deadline is GPU_CHECK_SECONDS, by default the call's
# limit (GPU_CHECK_LIMIT, the run's timeout_s: 600) minus a minute, so a shorter call gets a shorter deadline
# instead of being killed halfway through a stage. This file is bench/gpu/check.sh; bench/gpu_check.sh, the path
# the commands below (and notes) name, execs it.
#
#   device run (timeout_s 600, carry ["swapkern/_C.abi3.so"]):  bash bench/gpu_check.sh
#   shorter call (timeout_s 300):                                GPU_CHECK_LIMIT=300 bash bench/gpu_check.sh
#   on the CPU, to prove the script: SWAPKERN_GPU_CHECK_DRY=1 OUT=/tmp/out bash bench/gpu_check.sh   (< 3 min)
#
# A stage past its budget gets SIGINT first (pytest then writes its junit XML, Python its traceback), SIGKILL 10 s
# later. The first summary line says whether the carried swapkern/_C.abi3.so loads with CUDA kernels.
# GPU_CHECK_STAGES="smoke gpu_tests" runs only those stages; GPU_CHECK_STALL=<stage> makes that stage wait
# (tests/test_gpu_check.py: a deterministic cut); PYTHON is the interpreter (default: python3).
#
# Stages, in order of value, each given min(its budget, what is left of the deadline); a stage that finds too
# little time left is skipped with a line saying so:
#   a. the carried stable-ABI binary if it loads and has CUDA kernels (carry swapkern/_C.abi3.so), else a build
#      in place (sm_90 only, 16 jobs); then assert swapkern._backend.native_available("cuda")
#   b. smoke: one op per backend on the GPU, versions (10 s)
#   c. the overhead benchmark, limited to the cases that decide the performance goals, each case in a process of
#      its own (a faulting kernel loses its case only; one JSON line per row, written as measured)
#   d. the GPU tests (-m gpu), without -x, a per-test timeout (thread method: a hung kernel is named), a junit XML
#   e. compute-sanitizer memcheck over bench.gpu.sanitize (every native kernel: ops, FeatureSwap draw/plan/fused, a
#      DeviceLoader epoch, WeightSwap steps on Linear-only models: no cuDNN), swapkern's kernels only
#   f. the rest: racecheck (if memcheck finished), the weight-step rows of the benchmark (each model's rows
#      written as it finishes), the gpu-short study in what time is left
# What comes back ($OUT, at most 8 files, none in a folder): summary.txt (every stage's line and key results),
# overhead.jsonl + overhead.txt, junit.xml, sanitize.txt, study.md, logs.tgz (every log, packed after each stage).
set -uo pipefail
cd "$(dirname "$0")/../.." # the repository root (this file is bench/gpu/check.sh)
ROOT=$PWD
DRY=${SWAPKERN_GPU_CHECK_DRY:-0}
OUT=${OUT:-$ROOT/bench/results/gpu}
LIMIT=${GPU_CHECK_LIMIT:-600}
TOTAL=${GPU_CHECK_SECONDS:-$([ "$DRY" = 1 ] && echo 170 || echo $((LIMIT - 60)))}
RESERVE=10 # seconds kept for the last packing
START=$(date +%s)
DEADLINE=$((START + TOTAL))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
PY=${PYTHON:-python3}
STALL=${GPU_CHECK_STALL:-}
STAGES=${GPU_CHECK_STAGES:-build smoke overhead gpu_tests memcheck rest}
export PYTHONUNBUFFERED=1 PY DRY OUT WORK ROOT STALL
if [ -z "${CUDA_HOME:-}" ] && NVCC=$(command -v nvcc); then
  CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
fi
# nvcc may be a wrapper script (its directory then holds no toolkit): fall back to the usual place
if [ -n "${CUDA_HOME:-}" ] && [ ! -f "$CUDA_HOME/include/cuda_runtime.h" ] && [ -d /usr/local/cuda ]; then
  CUDA_HOME=/usr/local/cuda
fi
if [ -n "${CUDA_HOME:-}" ]; then
  export CUDA_HOME
  PATH=$PATH:$CUDA_HOME/bin # compute-sanitizer
  export PATH
fi
if [ "$DRY" = 1 ]; then
  DEV=cpu
  export TRITON_INTERPRET=1
else
  DEV=cuda
fi
export DEV
STATUS=0

say() { echo "$*" | tee -a "$SUMMARY"; }
pack() { tar czf "$OUT/logs.tgz.tmp" -C "$WORK" . 2>/dev/null && mv "$OUT/logs.tgz.tmp" "$OUT/logs.tgz"; }

# stage NAME BUDGET FUNCTION: runs FUNCTION (exported) under min(BUDGET, time left), logs to $WORK/NAME.log
stage() {
  local name=$1 budget=$2 fn=$3 now left t s0 rc
  case " $STAGES " in *" $name "*) ;; *) say "== $name: not selected (GPU_CHECK_STAGES)" && return 0 ;; esac
  now=$(date +%s)
  left=$((DEADLINE - RESERVE - now))
  t=$((budget < left ? budget : left))
  if [ "$t" -lt 5 ]; then
    say "== $name: SKIPPED, ${left}s left before the deadline"
    return 0
  fi
  say "== $name: budget ${t}s ($((now - START))s elapsed)"
  s0=$(date +%s)
  # SIGINT first: pytest writes its junit XML and Python its traceback; SIGKILL 10 s later if still running
  STAGE=$name STAGE_SECONDS=$t timeout -s INT -k 10 "$t" bash -c "stall_here; $fn" >"$WORK/$name.log" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && say "$name: CUT at its ${t}s budget"
  say "$name: rc $rc in $(($(date +%s) - s0))s"
  tail -n "${TAIL:-6}" "$WORK/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  [ "$rc" -ne 0 ] && STATUS=1
  pack
  return 0
}

# GPU_CHECK_STALL=<stage>: that stage waits until it is cut (the tests' deterministic deadline); for gpu_tests
# the wait is a test inside pytest, so that the cut also shows pytest's junit XML written on SIGINT.
stall_here() {
  if [ "$STALL" = "$STAGE" ] && [ "$STAGE" != gpu_tests ]; then
    echo "stalling on purpose (GPU_CHECK_STALL=$STALL)"
    sleep 100000
  fi
}

build() {
  "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  [ "$DRY" = 1 ] || nvidia-smi -L
  # First the binary that came along (built elsewhere on the stable ABI: any torch >= 2.10, any CPython >= 3.10);
  # a build in place only when it is missing, does not load here or has no $DEV kernels.
  if [ "${SWAPKERN_GPU_CHECK_REBUILD:-0}" != 1 ] && ls swapkern/_C*.so >/dev/null 2>&1 &&
    "$PY" -c "
import sys, swapkern._backend as b
c = b.native_library()
print('carried binary:', c.__file__ if c is not None else None, 'built with torch', getattr(c, 'torch_version', '?'),
      'abi', getattr(c, 'abi', '?'), 'problem:', b.native_problem())
sys.exit(0 if b.native_available('$DEV') else 1)"; then
    echo "using the carried binary: no build"
  elif [ "$DRY" = 1 ]; then
    echo "dry run: the binary here does not serve $DEV" && exit 1
  else
    echo "building in place; CUDA_HOME=${CUDA_HOME:-unset}"
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
      "$PY" setup.py build_ext --inplace || exit 1
  fi
  "$PY" -c "
import swapkern, swapkern._backend as b
assert b.native_available('$DEV'), 'the native backend has no $DEV kernels: the build did not take'
print('backends', swapkern.backends(), 'native $DEV: yes', b.native_library().__file__)"
}

smoke() {
  "$PY" - <<'EOF'
import os, time, torch, swapkern
from swapkern import reference as ref
dev = os.environ["DEV"]
t0 = time.time()
try:
    import triton
    tv = triton.__version__
except Exception as e:
    tv = f"none ({type(e).__name__})"
print("torch", torch.__version__, "triton", tv, "device", torch.cuda.get_device_name() if dev == "cuda" else "cpu")
for backend in swapkern.backends():
    x = torch.randn(64, 3, 32, 32, device=dev)
    want = x.clone()
    with swapkern.use_backend(backend):
        swapkern.swap_channels_(x, [0], [2])
        swapkern.FeatureSwap("EPA", seed=0).swap_(x)
    ref.swap_channels_(want, [0], [2])
    with swapkern.use_backend("torch"):
        swapkern.FeatureSwap("EPA", seed=0).swap_(want)
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"smoke {backend}: {'ok' if torch.equal(x, want) else 'MISMATCH'}")
    assert torch.equal(x, want), backend
print(f"smoke passed in {time.time() - t0:.1f} s")
EOF
}

overhead() {
  if [ "$DRY" = 1 ]; then
    set -- --device cpu --quick --images 64 --only "ASA channels 0<->2" "mixed: 4096" "EPA protocol" "1PA protocol"
  else
    # the goals: ASA over 4096 images and half the rows of 16384^2 (fp32, bf16) against the copy; 4096 small pairs
    # (EPA, mixed) against the reference; Triton against CUDA (every case runs on every backend)
    set -- --device cuda --images 4096 --only "ASA channels 0<->2" "ASA channels_last" "rows: half" "cols: half" \
      "mixed: 4096" "EPA a pixel pair" "1PA protocol" "EPA protocol" "fused loader"
  fi
  # each case in a process of its own: a faulting kernel (a CUDA error poisons its process) loses that case only
  local args=() cases=() seen=0 failed=0 i=0 a
  for a in "$@"; do
    if [ "$a" = --only ]; then
      seen=1
    elif [ "$seen" = 1 ]; then
      cases+=("$a")
    else
      args+=("$a")
    fi
  done
  : >"$OUT/overhead.txt"
  for a in "${cases[@]}"; do
    i=$((i + 1))
    echo "== case: $a" | tee -a "$OUT/overhead.txt"
    "$PY" -m bench.overhead "${args[@]}" --only "$a" --no-weights --jsonl "$OUT/overhead.jsonl" \
      --out "$WORK/overhead-$i.json" 2>&1 | tee -a "$OUT/overhead.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { failed=$((failed + 1)) && echo "case FAILED: $a" | tee -a "$OUT/overhead.txt"; }
  done
  echo "overhead: ${#cases[@]} cases, $failed failed"
  [ "$failed" -eq 0 ]
}

gpu_tests() {
  local timeout=60 files=(tests)
  if [ "$STALL" = gpu_tests ]; then
    files=(tests/test_gpu_check.py::test_stall_target)
    timeout=$((STAGE_SECONDS + 60)) # the stage's own budget must cut the waiting test, not pytest-timeout
    set -- -m "not slow"
    export GPU_CHECK_STALL_TARGET=1
  elif [ "$DRY" = 1 ]; then
    # on the CPU the GPU tests skip: the stage is proved on the backend matrix's tests instead
    files=(tests/test_gpu.py tests/test_backend.py)
    set -- -m "not slow"
  else
    set -- -m "gpu" -n 8
  fi
  # the thread method: a test hung in a kernel is reported with its stack, not killed silently
  "$PY" -m pytest -q -p no:cacheprovider --timeout "$timeout" --timeout-method thread --junitxml "$OUT/junit.xml" \
    "$@" "${files[@]}"
}

memcheck() {
  if [ "$DRY" = 1 ]; then
    echo "compute-sanitizer: SKIPPED (dry run, no GPU); the workload runs alone on the CPU" | tee "$OUT/sanitize.txt"
    "$PY" -m bench.gpu.sanitize | tee -a "$OUT/sanitize.txt"
  else
    # swapkern's kernels only (their names hold its namespace), no report of the API errors PyTorch probes with;
    # the workload itself uses no cuDNN (Linear-only models)
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 50 \
      --kernel-name kns=swapkern --report-api-errors no "$PY" -m bench.gpu.sanitize 2>&1 | tee "$OUT/sanitize.txt"
    local rc=${PIPESTATUS[0]}
    echo "$rc" >"$WORK/memcheck.done"
    return "$rc"
  fi
}

rest() {
  if [ "$DRY" = 1 ]; then
    echo "racecheck: SKIPPED (dry run, no GPU)"
  else
    if [ -f "$WORK/memcheck.done" ]; then
      echo "== racecheck (shared memory of the tiled kernels)"
      timeout -s INT -k 10 90 compute-sanitizer --tool racecheck --error-exitcode 9 --kernel-name kns=swapkern \
        --report-api-errors no "$PY" -m bench.gpu.sanitize 2>&1 | tail -5
    else
      echo "racecheck: SKIPPED, memcheck did not finish"
    fi
    echo "== weight-step rows (each model's rows written to overhead.jsonl as it finishes)"
    timeout -s INT -k 10 60 "$PY" -m bench.overhead --device cuda --only weight --jsonl "$OUT/overhead.jsonl" \
      --out "$WORK/overhead-weights.json" | tee -a "$OUT/overhead.txt" | tail -20
  fi
  local left=$((STAGE_SECONDS - ($(date +%s) - ${REST_T0})))
  echo "== gpu-short study: ${left}s left"
  if [ "$DRY" = 1 ]; then
    "$PY" -m bench.study --dry-run --out "$WORK/study"
  elif [ "$left" -gt 90 ]; then
    "$PY" -m bench.study --scale gpu-short --minutes "$(((left - 30) / 60)).$((((left - 30) % 60) * 10 / 60))" \
      --out "$WORK/study" --note "run by bench/gpu_check.sh in what was left of its deadline"
  else
    echo "gpu-short study: SKIPPED, too little time left"
  fi
  [ -f "$WORK/study/REPORT.md" ] && cp "$WORK/study/REPORT.md" "$OUT/study.md"
  return 0
}

export -f stall_here build smoke overhead gpu_tests memcheck rest
# Before anything else: did the carried binary load, with CUDA kernels? (the build's only fast path)
CARRIED=$(timeout -k 5 60 "$PY" -c "
import os, torch
f = 'swapkern/_C.abi3.so'
if not os.path.exists(f):
    print('carried binary: none (no swapkern/_C.abi3.so)')
else:
    import swapkern._backend as b
    loaded = b.native_library() is not None
    cuda = torch._C._dispatch_has_kernel_for_dispatch_key('swapkern::swap_', 'CUDA') if loaded else False
    print('carried binary: swapkern/_C.abi3.so', 'loaded' if loaded else 'did NOT load',
          'with CUDA kernels' if cuda else 'WITHOUT CUDA kernels', b.native_problem() or '')
" 2>&1 | tail -1)
say "gpu_check: $( [ "$DRY" = 1 ] && echo "DRY RUN on the CPU" || echo "on $(nvidia-smi -L 2>/dev/null | head -1)"), deadline ${TOTAL}s, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $CARRIED"
TAIL=5 stage build 240 build
if [ "$STATUS" -ne 0 ]; then
  say "the build failed: the native stages cannot run; the Triton and torch backends are still tested"
fi
stage smoke 30 smoke
TAIL=12 stage overhead 150 overhead
stage gpu_tests 120 gpu_tests
stage memcheck 90 memcheck
REST_T0=$(date +%s)
export REST_T0
stage rest 600 rest
say "== done: status $STATUS in $(($(date +%s) - START))s; files: $(ls "$OUT" | tr '\n' ' ')"
pack
rm -rf "$WORK"
exit "$STATUS"
