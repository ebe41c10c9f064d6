#!/usr/bin/env bash
# AVX2's masked loads and stores against plain ones, on one core (Benchmarks/masked_loads.c).
#
#   Benchmarks/masked_loads.sh
#
# Needs clang (the Swift toolchain's) and an x86-64 processor with AVX2.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "masked_loads.sh: clang is not installed" >&2; exit 1; }
grep -qw avx2 /proc/cpuinfo 2>/dev/null || { echo "masked_loads.sh: this processor has no AVX2" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 Benchmarks/masked_loads.c -o "$work/masked_loads"
if command -v taskset >/dev/null; then taskset -c 0 "$work/masked_loads"; else "$work/masked_loads"; fi
