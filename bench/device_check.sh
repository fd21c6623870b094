#!/usr/bin/env bash
# The one script a GPU session runs (about 10 minutes; every part has its own time limit, so it never
# hangs): NumPy-vs-CuPy parity tests (every fused kernel of nn/fused.py must be on), host reads per step
# and the fused kernels in use (and kernel launches where nsys is
# installed), the benchmark against PyTorch CUDA in FP32 and in TF32, the quick preset end to end on
# the sample, and the paper preset on the sample, time-boxed (its finished stages' times are printed;
# a preset that does not finish is extrapolated by the reader from them, and this script says so).
#
# Usage: bash bench/device_check.sh [OUT_DIR] [DATA_DIR]
#   OUT_DIR   logs, JSON and run folders (default /tmp/device_check)
#   DATA_DIR  SVHN .mat files (default $SVHN_DIR, else $SVHN_SAMPLE_DIR; without one the presets are skipped)
# Time limits (seconds) can be changed: T_PARITY T_COUNT T_NSYS T_BENCH T_TOGETHER T_QUICK T_PAPER.
# Everything but the presets also runs on a machine without a GPU (CuPy parts then say why they fail).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/device_check}"
data="${2:-${SVHN_DIR:-${SVHN_SAMPLE_DIR:-}}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
summary=()

part() {  # part NAME SECONDS CMD...: run with a time limit, log to OUT/NAME.log, note rc and wall time
  local name="$1" limit="$2"; shift 2
  echo "== $name (at most ${limit}s): $*"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL:-25}" "$out/$name.log"
  local note="rc=$rc"; [ $rc -eq 124 ] || [ $rc -eq 137 ] && note="TIMED OUT (rc=$rc)"
  summary+=("$(printf '%-14s %5ds  %s' "$name" $((SECONDS - t0)) "$note")")
}

echo "== machine"
timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
timeout 60 python3 -c "import numpy; print('numpy', numpy.__version__)
try:
    import cupy; print('cupy', cupy.__version__)
except Exception as e: print('cupy: not usable:', str(e).splitlines()[0] if str(e) else type(e).__name__)
try:
    import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')
except Exception: print('torch: not installed')" 2>&1

part parity "${T_PARITY:-60}" python3 -m pytest -q --no-header -p no:cacheprovider tests/test_cupy_parity.py tests/test_fused.py tests/test_host_reads.py tests/test_gan_grouped.py
part counts "${T_COUNT:-45}" python3 -m bench --count --backend numpy,cupy --json "$out/counts.json"
if command -v nsys > /dev/null; then   # kernel launches: the whole --count run on CuPy (set-up + 4 calls of each net)
  part nsys "${T_NSYS:-60}" bash -c "nsys profile -t cuda -o '$out/counts' --force-overwrite true \
      python3 -m bench --count --backend cupy > /dev/null && nsys stats -q -r cuda_gpu_kern_sum -f csv '$out/counts.nsys-rep' \
      | python3 -c 'import csv, sys; rows = list(csv.DictReader(l for l in sys.stdin if l.count(\",\") > 3)); \
print(\"kernel launches in the whole --count run (set-up + 4 calls per net):\", sum(int(r[\"Instances\"]) for r in rows))'"
else
  summary+=("$(printf '%-14s %5s   %s' nsys - 'n/a: nsys not installed, kernel launches not counted')")
fi
TAIL=6 part bench_fp32 "${T_BENCH:-90}" python3 -m bench --backend numpy,cupy --vs-torch --no-layers --repeats 5 --rounds 2 --json "$out/bench_fp32.json"
TAIL=4 part gan_together "${T_TOGETHER:-60}" python3 bench/bench_gan.py --backend cupy --upsample nearest --augment --batch-size 128 --iters 10 --together 10 --json "$out/gan_together.json"
TAIL=6 part bench_tf32 "${T_BENCH:-90}" python3 -m bench --backend numpy,cupy --vs-torch --no-layers --repeats 5 --rounds 2 --tf32 --json "$out/bench_tf32.json"

if [ -n "$data" ]; then
  rm -rf "$out/quick" "$out/paper"
  TAIL=40 part quick_preset "${T_QUICK:-120}" python3 run_all.py --backend cupy --data-dir "$data" --out "$out/quick" --quiet
  TAIL=40 part paper_preset "${T_PAPER:-90}" python3 run_all.py --backend cupy --preset paper --data-dir "$data" --out "$out/paper" --quiet
  echo "(paper preset: time-boxed to ${T_PAPER:-90}s; if it timed out, only the stages listed above finished:"
  echo " extrapolate the rest from their times per kind of stage, and say that the total is an extrapolation)"
else
  summary+=("$(printf '%-14s %5s   %s' presets - 'skipped: no DATA_DIR, SVHN_DIR or SVHN_SAMPLE_DIR')")
fi

echo "== summary (logs in $out)"
printf '%s\n' "${summary[@]}"
grep -h " images/s" "$out/bench_fp32.log" "$out/bench_tf32.log" 2>/dev/null
grep -h "host reads/step\|fused kernels" "$out/counts.log" 2>/dev/null
grep -h "together" "$out/gan_together.log" 2>/dev/null
exit 0
