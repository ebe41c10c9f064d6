#!/usr/bin/env bash
# The direct convolution's forward tiles, rows against channels, and the kernel's own choice, on
# one core (Sources/CKernels/DirectConv.c); exits 1 if the three ever differ in a bit.
#
#   Benchmarks/conv_tiles.sh
#
# Needs clang (the Swift toolchain's); compiled with -O2 and no -march, as in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "conv_tiles.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/conv_tiles.c Sources/CKernels/DirectConv.c Sources/CKernels/Gemm.c \
    Sources/CKernels/Im2col.c Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/conv_tiles"
if command -v taskset >/dev/null; then taskset -c 0 "$work/conv_tiles"; else "$work/conv_tiles"; fi
