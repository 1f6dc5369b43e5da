#!/usr/bin/env bash
# Regenerates bpf/vmlinux/<arch>/vmlinux.h from a kernel's BTF (default: the running
# kernel's). The BPF programs build against the vendored copy, so the build does not
# depend on the build host's kernel; the programs use only UAPI-stable types (skb/xdp
# contexts, packet headers), so a newer dump changes nothing they rely on.
#   scripts/gen-vmlinux.sh [BTF file] [arch: x86|arm64]
set -euo pipefail
cd "$(dirname "$0")/.."
btf=${1:-/sys/kernel/btf/vmlinux}
case "${2:-$(uname -m)}" in
  x86_64|x86) arch=x86 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "gen-vmlinux.sh: unsupported architecture ${2:-$(uname -m)}" >&2; exit 2 ;;
esac
[ -r "$btf" ] || { echo "gen-vmlinux.sh: $btf: cannot read BTF (kernel built without CONFIG_DEBUG_INFO_BTF?)" >&2; exit 1; }
mkdir -p "bpf/vmlinux/$arch"
bpftool btf dump file "$btf" format c > "bpf/vmlinux/$arch/vmlinux.h.tmp"
mv "bpf/vmlinux/$arch/vmlinux.h.tmp" "bpf/vmlinux/$arch/vmlinux.h"
echo "bpf/vmlinux/$arch/vmlinux.h from $btf ($(uname -r))"
