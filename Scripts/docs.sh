#!/usr/bin/env bash
# Builds the documentation of every module of the library into one combined DocC archive
# (each module's catalogue: Sources/<Module>/<Module>.docc), with the swift-docc-plugin.
#
#   Scripts/docs.sh [--warnings-as-errors] [other generate-documentation options]
#
# The archive lands in .build/plugins/Swift-DocC/outputs/Backprop.doccarchive; add
# --transform-for-static-hosting --output-path DIR for a folder that a web server can serve.
set -euo pipefail
cd "$(dirname "$0")/.."
# The documentation plugin builds BackpropDistributed with the CMPI module, whose header is Open
# MPI's mpi.h, even without the MPI trait: say so rather than fail deep inside the plugin.
if ! pkg-config --exists ompi-c 2>/dev/null; then
    echo "docs.sh: the documentation needs Open MPI's headers (for BackpropDistributed): apt-get install libopenmpi-dev" >&2
    exit 1
fi
targets=()
for module in BackpropCore BackpropData BackpropNetwork BackpropTraining BackpropExplain BackpropONNX BackpropDistributed Backprop; do
    targets+=(--target "$module")
done
swift package generate-documentation --enable-experimental-combined-documentation "${targets[@]}" "$@"
