#!/usr/bin/env bash
# Regenerates Sources/BackpropONNX/Schema/onnx.pb.swift, the Swift types of ONNX's protobuf
# schema, from Sources/BackpropONNX/Schema/onnx.proto (ONNX 1.23.2's onnx.proto, proto2).
#
#   Scripts/generate-onnx-protobuf.sh
#
# The generated file is committed, so that building Backprop needs neither protoc nor
# swift-protobuf's build plugin (whose first build takes about ten minutes); run this script only
# after changing onnx.proto or the swift-protobuf version in Package.swift. It uses:
#
#   - protoc: `protoc` on the PATH (Debian's protobuf-compiler), else `python3 -m grpc_tools.protoc`
#     (PyPI's grpcio-tools; its 1.85.1, which ships libprotoc 35.1, wrote the committed file);
#   - protoc-gen-swift of swift-protobuf $SWIFT_PROTOBUF_VERSION (the version Package.swift depends
#     on, so that the generated code fits the library): $PROTOC_GEN_SWIFT if set, else built here
#     with `swift build -c release --product protoc-gen-swift` from a clone of that tag in a scratch
#     folder outside the repository (about two minutes on two cores).
#
# The types are generated `internal` (Visibility=Internal): they are BackpropONNX's encoding, not
# its API. The generated file starts with `// swift-format-ignore-file`, so `swift format lint`
# passes over it.
#
# To move to a newer ONNX: replace everything below onnx.proto's header comment with the new
# onnx/onnx.proto (PyPI's `onnx` package ships it as onnx/onnx.proto), update the version named in
# the header, and run this script.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT_PROTOBUF_VERSION=1.39.0
schema=Sources/BackpropONNX/Schema

if command -v protoc >/dev/null; then
    protoc=(protoc)
elif python3 -c "import grpc_tools.protoc" 2>/dev/null; then
    protoc=(python3 -m grpc_tools.protoc)
else
    echo "error: no protoc: apt-get install protobuf-compiler, or pip install grpcio-tools" >&2
    exit 1
fi

plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
    scratch=${TMPDIR:-/tmp}/backprop-protoc-gen-swift-$SWIFT_PROTOBUF_VERSION
    if [ ! -d "$scratch/swift-protobuf" ]; then
        mkdir -p "$scratch"
        git clone --quiet --depth 1 --branch "$SWIFT_PROTOBUF_VERSION" \
            https://github.com/apple/swift-protobuf "$scratch/swift-protobuf"
    fi
    swift build -c release --product protoc-gen-swift --package-path "$scratch/swift-protobuf" >&2
    plugin=$scratch/swift-protobuf/.build/release/protoc-gen-swift
fi

echo "protoc: $("${protoc[@]}" --version); protoc-gen-swift: $("$plugin" --version)" >&2
"${protoc[@]}" \
    --plugin=protoc-gen-swift="$plugin" \
    --proto_path="$schema" \
    --swift_opt=Visibility=Internal \
    --swift_out="$schema" \
    "$schema/onnx.proto"
echo "wrote $schema/onnx.pb.swift" >&2
