#!/usr/bin/env bash
# Builds the Debian package: build/cppnet_<version>_amd64.deb (install it with
# `apt install ./build/cppnet_<version>_amd64.deb`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
cpack | sed -n 's/^CPack: - package: \(.*\) generated\./\1/p'
