#!/usr/bin/env bash
# Fuzzes the IDX and safetensors readers with libFuzzer for a set time each.
#
#   Scripts/fuzz.sh [seconds-per-target] [target...]     (default: 60 seconds; targets idx safetensors)
#
# Each target is compiled with `swiftc -sanitize=fuzzer,address` together with every source file of
# the Backprop module (not through SwiftPM, so `swift build` stays free of sanitizer flags), then run
# on its committed corpus, Fuzz/corpus/<target>/. New inputs that reach new code are written to a
# scratch copy of the corpus (.build-fuzz/corpus/<target>), not to the committed one; crashing
# inputs go to .build-fuzz/crashes/. The script prints the executions and ends non-zero on a crash.
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
mapfile -t library < <(find Sources/Backprop -name '*.swift' | sort)

status=0
for target in "${targets[@]}"; do
    case "$target" in
        idx) entry=Fuzz/FuzzIDX.swift ;;
        safetensors) entry=Fuzz/FuzzSafetensors.swift ;;
        *) echo "fuzz: unknown target '$target' (expected idx or safetensors)" >&2; exit 2 ;;
    esac
    binary="$work/fuzz-$target"
    echo "fuzz: building $binary" >&2
    # The linker's warnings about ASan's local symbols are noise: shown only if the build fails.
    if ! swiftc -sanitize=fuzzer,address -parse-as-library -O -g \
        -module-name Backprop -I Sources/CZlib -lz \
        "${library[@]}" Fuzz/FuzzInput.swift "$entry" -o "$binary" >"$work/build-$target.log" 2>&1; then
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
