#!/usr/bin/env bash
# Max pooling's forward and backward kernels on the cnn preset's shapes, one core
# (Benchmarks/max_pool.c).
#
#   Benchmarks/max_pool.sh
#
# Needs clang (the Swift toolchain's); compiled with -O2 and no -march, as in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "max_pool.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/max_pool.c Sources/CKernels/Im2col.c Sources/CKernels/Gemm.c \
    Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/max_pool"
if command -v taskset >/dev/null; then taskset -c 0 "$work/max_pool"; else "$work/max_pool"; fi
