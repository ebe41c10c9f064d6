#!/usr/bin/env bash
# Times the working tree's matrix-product kernel (Sources/CKernels/Gemm.c) against revision REV's,
# interleaved in one process on one core, and checks that both give the same bits:
#
#   Benchmarks/gemm_versions.sh REV [ROUNDS]      # e.g. Benchmarks/gemm_versions.sh HEAD~1 6
#
# Needs clang (the Swift toolchain's), objcopy and nm (binutils) and git. Both versions are
# compiled with -O3 and no -march (the kernels pick their instructions at run time, as in the
# package), REV's with its exported symbols renamed old_*.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    echo "usage: Benchmarks/gemm_versions.sh REV [ROUNDS]" >&2
    exit 2
fi
revision=$1
rounds=${2:-5}
for tool in clang objcopy git nm; do
    command -v "$tool" >/dev/null || { echo "gemm_versions.sh: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
include=Sources/CKernels/include

git show "$revision:Sources/CKernels/Gemm.c" >"$work/old.c"
clang -O3 -c -I "$include" "$work/old.c" -o "$work/old.o"
# Every symbol the old object defines gets the prefix old_, so that both versions link together.
renames=()
while read -r symbol; do renames+=("--redefine-sym" "$symbol=old_$symbol"); done < <(nm --defined-only -g "$work/old.o" | awk '{print $3}')
objcopy "${renames[@]}" "$work/old.o" "$work/old_renamed.o"

clang -O3 -I "$include" Benchmarks/gemm_versions.c "$work/old_renamed.o" Sources/CKernels/Gemm.c \
    Sources/CKernels/Memory.c Sources/CKernels/Pool.c -lpthread -lm -o "$work/gemm_versions"
echo "old: $revision ($(git rev-parse --short "$revision")), new: the working tree"
"$work/gemm_versions" "$rounds"
