#!/usr/bin/env bash
# Installs what cppnet needs to build, test and demo on Debian bookworm. Idempotent.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang clang-format llvm libclang-rt-14-dev libbpf-dev bpftool libelf-dev zlib1g-dev
  libnl-3-dev libnl-route-3-dev libnftables-dev libabsl-dev libgtest-dev libgmock-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev libcli11-dev libsystemd-dev prometheus-cpp-dev
  etcd-server etcd-client iproute2 iputils-ping iperf3 sockperf tcpdump tshark python3-scapy
  nftables openssl containernetworking-plugins libcpp-httplib-dev socat coreutils util-linux procps curl strace
  podman crun conmon busybox-static docker.io
  systemd man-db init-system-helpers dpkg-dev gzip debootstrap
  qemu-system-x86 cpio kmod xz-utils linux-perf
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
apt-get update -qq
# tshark asks whether non-root users may capture; answer no without prompting.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
# Nothing may start as a service in the root namespace (docker.io would start dockerd there):
# a policy-rc.d that refuses, for the install only, unless one is in place already.
cleanup_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  cleanup_policy=1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ -n "$cleanup_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
