#!/usr/bin/env bash
# Is this a good minute to benchmark? Runs the FMA loop of `backprop bench` and `train`'s first
# matrix product in alternate 10 ms windows on every processor at once, and prints each rate's
# spread (Benchmarks/steadiness.c):
#
#   Benchmarks/steadiness.sh [SECONDS [PROCESSORS]]      # default 5 s, every processor
#
# Needs clang (the Swift toolchain's).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "steadiness.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O3 -I Sources/CKernels/include Benchmarks/steadiness.c Sources/CKernels/Gemm.c Sources/CKernels/Memory.c \
    Sources/CKernels/Pool.c Sources/CKernels/Peak.c -lpthread -lm -o "$work/steadiness"
"$work/steadiness" "$@"
