#!/usr/bin/env bash
# Reruns every figure of docs/PERFORMANCE.md in one go: the criterion micro-benchmarks, the
# foundation scenarios, replication and the key-value workloads, with the JavaScript hyperlog
# beside them when node and npm are present. Output goes to the terminal and to
# target/bench-report.txt. Full sizes take about 20 minutes on a 2-core VM; set
# BRAID_BENCH_MAX=100000 for a quicker pass.
set -euo pipefail
cd "$(dirname "$0")/.."

export BRAID_BENCH_MAX="${BRAID_BENCH_MAX:-1000000}"
if command -v npm >/dev/null && command -v node >/dev/null; then
    (cd benches/hyperlog && npm install --no-audit --no-fund --silent)
    export BRAID_BENCH_HYPERLOG=1
else
    echo "node/npm not found: running without the hyperlog reference" >&2
fi

mkdir -p target
{
    echo "# braidlog benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
    grep -m1 'model name' /proc/cpuinfo || true
    cargo bench --bench scenarios
    cargo bench --bench sync_bench
    cargo bench --bench kv_bench
    cargo bench --bench auth_bench
    cargo bench --bench micro
} 2>&1 | tee target/bench-report.txt
