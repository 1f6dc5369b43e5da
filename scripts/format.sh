#!/usr/bin/env bash
# Formats the C++ and BPF C sources with .clang-format (100 columns), or with --check
# lists the files that differ and fails (the lint.format test). vmlinux.h is generated.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find agent cli include bpf tests -type f \( -name '*.cc' -o -name '*.h' -o -name '*.c' \) \
  -not -path 'bpf/vmlinux/*' | sort)
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "not formatted (run scripts/format.sh): ${bad[*]}" >&2
    exit 1
  fi
  echo "${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
