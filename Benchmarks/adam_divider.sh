#!/usr/bin/env bash
# Whether Adam's update could leave the divide unit and stay exact: checks a square root made of
# fused multiply-adds against the divider's on every float in its range, then times the update
# with and without each of its two divider operations (Benchmarks/adam_divider.c).
#
#   Benchmarks/adam_divider.sh
#
# Needs clang (the Swift toolchain's) and a processor with AVX2 and FMA; compiled with -O2 and no
# -march, as in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "adam_divider.sh: clang is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -I Sources/CKernels/include Benchmarks/adam_divider.c Sources/CKernels/Optimizers.c \
    Sources/CKernels/Gemm.c Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/adam_divider"
"$work/adam_divider"
