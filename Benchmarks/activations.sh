#!/usr/bin/env bash
# The activation kernels (Sources/CKernels/Activations.c: sigmoid, SiLU and its backward, tanh,
# GELU and its backward) against the C library: ulps, the bits of each instruction set's path, and
# the time per element, on one core.
#
#   Benchmarks/activations.sh
#
# Needs clang (the Swift toolchain's); compiled with -O2 and no -march, as in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "activations.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/activations.c Sources/CKernels/Activations.c Sources/CKernels/Gemm.c \
    Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/activations"
if command -v taskset >/dev/null; then taskset -c 0 "$work/activations"; else "$work/activations"; fi
