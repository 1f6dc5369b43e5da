#!/usr/bin/env bash
# The README's demo: etcd and three hosts (network namespaces) running cppnet-agent,
# two containers per host, cross-host ping and TCP over the BPF VXLAN overlay.
#   scripts/demo.sh            run the demo and remove everything it created
#   scripts/demo.sh --keep     leave the lab running to explore (prints how)
#   scripts/demo.sh --cleanup  remove a lab left by --keep
#   scripts/demo.sh --vlan     VLAN networks instead: two VLANs on an 802.1Q trunk between
#                              two hosts, containers attached by the CNI plugin, isolation
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: needs root (it creates network namespaces and loads BPF programs)" >&2
  exit 1
fi
if [ "${1:-}" != "--cleanup" ]; then
  bash scripts/install-deps.sh
  bash scripts/build.sh >/dev/null
fi
exec python3 -m scripts.demo "$@"
