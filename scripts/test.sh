#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every tier with ctest
# (unit, BPF packet tests, namespace-lab integration tests with a real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure "$@"
