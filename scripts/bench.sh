#!/usr/bin/env bash
# Benchmarks, side by side in one run: cppnet against the kernel's vxlan, kernel routing
# and the bare underlay (iperf3 TCP, sockperf request/response, UDP 64-byte rate), the
# BPF_PROG_TEST_RUN micro-benchmark, and the control plane against a real etcd.
#   scripts/bench.sh [--repeats 3] [--seconds 10] [--parts datapath,micro,control]
# Results and raw samples: build/bench/results.json. Needs root; runs in namespaces only.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench.sh: needs root (network namespaces, BPF)" >&2
  exit 1
fi
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
exec python3 -m scripts.bench "$@"
