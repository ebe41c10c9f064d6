#!/usr/bin/env bash
# Adam's update on half of the MLP's first weight matrix, timed hot, from L3, after the other core
# touched it, and on both cores by row halves and by column halves (Benchmarks/adam_sharing.c).
#
#   Benchmarks/adam_sharing.sh
#
# Needs clang (the Swift toolchain's) and two processors; compiled with -O2 and no -march, as in
# the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "adam_sharing.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/adam_sharing.c Sources/CKernels/Optimizers.c \
    Sources/CKernels/Gemm.c Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/adam_sharing"
"$work/adam_sharing"
