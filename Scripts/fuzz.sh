#!/usr/bin/env bash
# Fuzzes the IDX and safetensors readers with libFuzzer for a set time each.
#
#   Scripts/fuzz.sh [seconds-per-target] [target...]     (default: 60 seconds; targets idx safetensors)
#
# The targets are compiled with `swiftc -sanitize=fuzzer,address` (not through SwiftPM, so
# `swift build` stays free of sanitizer flags), in .build-fuzz/: first, once per run, the C kernels
# (Sources/CKernels, with clang -fsanitize=address) and the module BackpropCore (Sources/BackpropCore,
# importing CKernels through a module map written to .build-fuzz/core/include); then, for each
# target, one executable whose module is BackpropData: every source file of Sources/BackpropData
# with Fuzz/FuzzInput.swift and the target's entry point, linked with BackpropCore, the kernels and
# zlib. Each binary is run on its committed corpus, Fuzz/corpus/<target>/. New inputs that reach
# new code are written to a scratch copy of the corpus (.build-fuzz/corpus/<target>), not to the
# committed one; crashing inputs go to .build-fuzz/crashes/. The script prints the executions and
# ends non-zero on a crash.
#
# -malloc_limit_mb=64 reports any single allocation above 64 MiB as a crash: inputs are at most
# 4 KiB, so a reader that allocates what a lying header claims (up to the 2 GiB limit) is caught.
#
# To add the inputs a run discovered to the committed corpus (only those that reach new code):
#   .build-fuzz/fuzz-idx -merge=1 Fuzz/corpus/idx .build-fuzz/corpus/idx
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(idx safetensors); fi

work=.build-fuzz
mkdir -p "$work/crashes"
mapfile -t coreSources < <(find Sources/BackpropCore -name '*.swift' | sort)
mapfile -t dataSources < <(find Sources/BackpropData -name '*.swift' | sort)
swiftFlags=(-sanitize=fuzzer,address -parse-as-library -O -g -package-name backprop)

# The clang of the Swift toolchain (its AddressSanitizer is swiftc's), else the one on the PATH.
clang="$(dirname "$(readlink -f "$(command -v swiftc)")")/clang"
if [ ! -x "$clang" ]; then clang=clang; fi

# Builds the C kernels and the module BackpropCore into $work/core (once per run, before the first
# target). Gemm.c chooses its AVX2 and FMA code at run time, per function (a `target` attribute and
# cpuid), so it needs no -mavx2. Without `-D OpenBLAS` (a package trait) Core multiplies with its
# own kernels, as in `swift build --disable-default-traits`; no reader multiplies matrices anyway.
core="$work/core"
buildCore() {
    rm -rf "$core"
    mkdir -p "$core/include/CKernels"
    # The module map SwiftPM generates for the C target: its umbrella header.
    printf 'module CKernels {\n    header "%s"\n    export *\n}\n' \
        "$PWD/Sources/CKernels/include/CKernels.h" >"$core/include/CKernels/module.modulemap"
    local source
    for source in Sources/CKernels/*.c; do
        "$clang" -c -O2 -g -fsanitize=address -I Sources/CKernels/include \
            "$source" -o "$core/$(basename "$source" .c).o" || return 1
    done
    swiftc "${swiftFlags[@]}" -module-name BackpropCore -I "$core/include/CKernels" \
        -wmo -emit-module -emit-module-path "$core/BackpropCore.swiftmodule" \
        -c "${coreSources[@]}" -o "$core/BackpropCore.o"
}
coreBuilt=0

status=0
for target in "${targets[@]}"; do
    case "$target" in
        idx) entry=Fuzz/FuzzIDX.swift ;;
        safetensors) entry=Fuzz/FuzzSafetensors.swift ;;
        *) echo "fuzz: unknown target '$target' (expected idx or safetensors)" >&2; exit 2 ;;
    esac
    binary="$work/fuzz-$target"
    echo "fuzz: building $binary" >&2
    if [ $coreBuilt -eq 0 ]; then
        if ! buildCore >"$work/build-core.log" 2>&1; then
            cat "$work/build-core.log" >&2
            exit 1
        fi
        coreBuilt=1
    fi
    # The linker's warnings about ASan's local symbols are noise: shown only if the build fails.
    # The module is BackpropData, so that an entry point may call the readers' internal functions.
    if ! swiftc "${swiftFlags[@]}" -module-name BackpropData \
        -I "$core" -I "$core/include/CKernels" -I Sources/CZlib -lz \
        "${dataSources[@]}" Fuzz/FuzzInput.swift "$entry" "$core"/*.o -o "$binary" \
        >"$work/build-$target.log" 2>&1; then
        grep -v 'Cannot export local symbol' "$work/build-$target.log" >&2
        exit 1
    fi

    corpus="$work/corpus/$target"
    mkdir -p "$corpus"
    cp -n Fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
    log="$work/fuzz-$target.log"
    echo "fuzz: running $target for $seconds s (log: $log)" >&2
    set +e
    ASAN_OPTIONS=detect_leaks=1 "$binary" "$corpus" \
        -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10 \
        -artifact_prefix="$work/crashes/$target-" -print_final_stats=1 >"$log" 2>&1
    result=$?
    set -e
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    coverage=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    if [ $result -ne 0 ]; then
        echo "fuzz: $target FAILED after ${runs:-?} executions; see $log and $work/crashes/" >&2
        grep -E 'ERROR|Fatal error|SUMMARY|Test unit written' "$log" | head -20 >&2 || true
        status=1
    else
        echo "fuzz: $target: ${runs:-?} executions in $seconds s without a crash (coverage ${coverage:-?} edges)"
    fi
done
exit $status
