#!/usr/bin/env bash
# On a machine with CuPy and an NVIDIA GPU: run the test suite on the CuPy backend, the
# NumPy-vs-CuPy parity tests, and the benchmark on both backends (beside PyTorch where installed).
# Usage: bash bench/device_check.sh [OUT_DIR]      (writes logs and bench JSON to OUT_DIR, default /tmp)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
echo "== test suite with NN_BACKEND=cupy"
NN_BACKEND=cupy timeout 400 python3 -m pytest -q -x --no-header -p no:cacheprovider tests/test_nn_layers.py tests/test_nn_model.py \
  tests/test_cupy_parity.py 2>&1 | tee "$out/pytest_cupy.log" | tail -15
for extra in tests/test_classify.py tests/test_gan.py tests/test_winograd.py; do
  [ -f "$extra" ] && { echo "== $extra with NN_BACKEND=cupy"; NN_BACKEND=cupy timeout 200 python3 -m pytest -q --no-header -p no:cacheprovider "$extra" 2>&1 | tail -4; }
done
echo "== benchmark (numpy and cupy; PyTorch beside each where installed)"
timeout 300 python3 -m bench --backend numpy,cupy --vs-torch --repeats 10 --rounds 3 --json "$out/bench_device.json" 2>&1 | tee "$out/bench_device.log"
