#!/usr/bin/env bash
# On a machine with CuPy and an NVIDIA GPU: the NumPy-vs-CuPy parity tests, the benchmark on both
# backends (beside PyTorch where installed), then the test suite on the CuPy backend.
# Usage: bash bench/device_check.sh [OUT_DIR] [SUITE_SECONDS]   (logs + bench JSON go to OUT_DIR, default /tmp)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp}"
suite_s="${2:-300}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
echo "== NumPy-vs-CuPy parity"
timeout 120 python3 -m pytest -q --no-header -p no:cacheprovider tests/test_cupy_parity.py 2>&1 | tail -5
echo "== benchmark (numpy and cupy; PyTorch beside each where installed)"
timeout 240 python3 -m bench --backend numpy,cupy --vs-torch --repeats 5 --rounds 2 --json "$out/bench_device.json" 2>&1 \
  | tee "$out/bench_device.log"
echo "== test suite with NN_BACKEND=cupy (at most ${suite_s}s)"
tests="tests/test_nn_layers.py tests/test_nn_model.py"
for extra in tests/test_winograd.py tests/test_classify.py tests/test_gan.py; do [ -f "$extra" ] && tests="$tests $extra"; done
NN_BACKEND=cupy timeout "$suite_s" python3 -m pytest -q --no-header -p no:cacheprovider $tests 2>&1 \
  | tee "$out/pytest_cupy.log" | tail -15
