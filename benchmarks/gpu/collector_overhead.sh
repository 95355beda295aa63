#!/usr/bin/env bash
# Collector overhead on a GPU host, this checkout against a baseline checkout, side by side on one tritonserver
# (the whole CPU zoo, started once): what each /proc read costs there, then bench_collector.py for SECONDS with this
# checkout's collector, then with the baseline's. Run on the device after the set-up of docs/gpu-validation.md:
#
#   benchmarks/gpu/collector_overhead.sh BASELINE.tar OUTDIR [SECONDS [BASELINE_SECONDS]]
#
# BASELINE.tar: `git archive <commit> collectors rmt` of the baseline. Each step's output goes to OUTDIR as it ends,
# so a run cut short still leaves the steps done.
set -u
base_tar=$1 out=$2 secs=${3:-60} base_secs=${4:-${3:-60}}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out" /tmp/rmt-baseline && tar -C /tmp/rmt-baseline -xf "$base_tar" || exit 2
python3 -m rmt server start > "$out/server.txt" 2> "$out/server.err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 360); do
    grep -q '^ready' "$out/server.txt" 2>/dev/null && break
    kill -0 $server 2>/dev/null || { echo "server failed: $(tail -3 "$out/server.err")"; exit 2; }
    sleep 0.5
done
line=$(grep '^ready' "$out/server.txt") || { echo "server not ready"; exit 2; }
http=$(sed 's/.*http=\([^ ]*\).*/\1/' <<< "$line")
metrics=$(sed 's/.*metrics=\([^ ]*\).*/\1/' <<< "$line")
echo "$line"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
bench=(python3 "$here/benchmarks/bench_collector.py" --server-url "$http" --metrics-url "http://$metrics/metrics")
"${bench[@]}" --duration "$secs" --primitives > "$out/now.txt" 2>&1; cat "$out/now.txt"
PYTHONPATH="/tmp/rmt-baseline:${PYTHONPATH:-}" "${bench[@]}" --duration "$base_secs" > "$out/baseline.txt" 2>&1
cat "$out/baseline.txt"
