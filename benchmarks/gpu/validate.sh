#!/usr/bin/env bash
# Every GPU check of rmt on a one-GPU machine, in one call: the gpu-marked tests (the new paths first, so a call cut
# short still brings back what matters most), each test's output kept.
# Run from the repository root on the device machine, with .carry/ (benchmarks/gpu/prepare_carry.sh) carried:
#   bash benchmarks/gpu/validate.sh "$OUT" [pytest -k expression]
# Output: $OUT/pytest.log (every test, -rA), $OUT/nvidia-smi.txt.
set -uo pipefail
OUT=${1:?usage: validate.sh OUT [-k EXPR]}
K=${2:-}
mkdir -p /tmp/th && tar -C /tmp/th -xJf .carry/tritonserver.tar.xz || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .carry/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD RMT_TRITON_HOME=/tmp/th PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c 'import sys, numpy, torch; print(sys.version, numpy.__version__, torch.__version__)' >> "$OUT/nvidia-smi.txt" 2>&1
args=(-p rmt.pytest_plugin -p no:cacheprovider -q -rA --timeout 300)
[ -n "$K" ] && args+=(-k "$K")
python3 -m pytest "${args[@]}" tests/test_gpu_shm.py tests/test_gpu_memory_growth.py tests/test_gpu_streaming.py \
    tests/test_gpu_zoo.py tests/test_gpu_warmup.py 2>&1 | tee "$OUT/pytest.log"
rc=${PIPESTATUS[0]}
echo "pytest rc=$rc" >> "$OUT/pytest.log"
exit "$rc"
