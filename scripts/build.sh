#!/usr/bin/env bash
# Configures and builds cppnet into build/ (used by test.sh and demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
