#!/usr/bin/env bash
# Reruns every figure of docs/PERFORMANCE.md in one go: the criterion micro-benchmarks, the
# foundation scenarios, replication and the key-value workloads, with the JavaScript hyperlog
# beside them when node and npm are present. Output goes to the terminal and to
# target/bench-report.txt. Full sizes take about 20 minutes on a 2-core VM; set
# BRAID_BENCH_MAX=100000 for a quicker pass. Then the side-by-side table with automerge,
# iroh-docs and negentropy (benches/peers, a crate of its own: its first build compiles iroh,
# about 15 minutes here; BRAID_BENCH_PEERS=0 skips it).
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
    if [ "${BRAID_BENCH_PEERS:-1}" != 0 ]; then
        (
            cd benches/peers
            cargo build --release --quiet
            ./target/release/braidlog-peers 10000 100000
            # How braidlog alone grows with the log, and with the number of replicas.
            if [ "$BRAID_BENCH_MAX" -ge 1000000 ]; then
                BRAID_PEERS=braidlog ./target/release/braidlog-peers 1000000
            fi
            ./target/release/braidlog-peers replicas
        )
    fi
} 2>&1 | tee target/bench-report.txt
