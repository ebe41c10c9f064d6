#!/usr/bin/env bash
# The cross-entropy's exponentials (Sources/CKernels/Softmax.c) against glibc's exp: accuracy, the
# bits of each instruction set's path, and the time of a minibatch's 64 rows of 10, on one core.
#
#   Benchmarks/softmax_exp.sh
#
# Needs clang (the Swift toolchain's); compiled with -O2 and no -march, as in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "softmax_exp.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/softmax_exp.c Sources/CKernels/Softmax.c Sources/CKernels/Gemm.c \
    Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/softmax_exp"
if command -v taskset >/dev/null; then taskset -c 0 "$work/softmax_exp"; else "$work/softmax_exp"; fi
