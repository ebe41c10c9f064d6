// swift-tools-version: 6.2
import PackageDescription

// One target per layer of the design (README.md, "Architecture"); each depends only on those
// below it, so a wrong-way import does not compile:
//
//   backprop                                   the command-line tool (and its benchmarks)
//   Backprop                                   umbrella: re-exports everything below
//   BackpropExplain      BackpropTraining      walkthrough, HTML, DOT, plots | fit loop, checkpoints
//   BackpropONNX         BackpropDistributed   ONNX export and import | MPI all-reduce (trait MPI)
//   BackpropNetwork      BackpropData          layers, losses, optimizers, checks | files
//   BackpropCore                               Tensor, matmul, thread pool, autograd
//   CBLAS, CZlib, CMPI, CKernels               system libraries, C kernels and the pool
//   CStartup                                   the tool's start-up, before any library loads
let package = Package(
    name: "Backprop",
    products: [
        .library(name: "Backprop", targets: ["Backprop"]),
        .executable(name: "backprop", targets: ["backprop"]),
    ],
    traits: [
        .trait(
            name: "OpenBLAS",
            description: "Matrix products through OpenBLAS on Linux (Accelerate is always used on macOS)."
        ),
        .trait(
            name: "MPI",
            description: """
                Data-parallel training under mpirun (BackpropDistributed), on Open MPI: `swift build --traits OpenBLAS,MPI` \
                (with libopenmpi-dev). Off by default, so the default build needs no MPI.
                """
        ),
        .default(enabledTraits: ["OpenBLAS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target Backprop` (README, "Documentation").
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
        // ONNX's protobuf encoding and decoding (BackpropONNX); the Swift types are generated once and committed
        // (Scripts/generate-onnx-protobuf.sh), not by the package's build plugin.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // System libraries and C.
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        // The C kernels are compiled optimised in debug builds too (`-O2`, as a release build compiles
        // them): at -O0 the AVX2 matrix product takes 38% of a debug training epoch. SwiftPM 6.2+
        // accepts these flags in a dependency whose manifest says tools version 6.2 or later, by path
        // or by version (Backprop.docc, "Using Backprop in your package").
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        // The tool's start-up: OpenBLAS told to start no threads before it loads (Startup.c).
        .target(name: "CStartup", dependencies: ["CKernels"]),
        // Core: Tensor, matrix products, the thread pool, autograd.
        .target(
            name: "BackpropCore",
            dependencies: [
                .target(name: "CBLAS", condition: .when(platforms: [.linux], traits: ["OpenBLAS"])),
                "CKernels",
            ],
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: [.macOS]))]
        ),
        // Data: IDX, gzip, safetensors, JSON, atomic writes, Fashion-MNIST.
        .target(name: "BackpropData", dependencies: ["BackpropCore", "CZlib"]),
        // Network: the seed's layers and losses, optimizers and schedules, gradient checks.
        .target(name: "BackpropNetwork", dependencies: ["BackpropCore"]),
        // Training: minibatches, the fit loop, metrics, checkpoints (where the network meets files).
        .target(name: "BackpropTraining", dependencies: ["BackpropNetwork", "BackpropData"]),
        // Explain: the walkthrough (text, HTML, DOT) and the training plot; observes, never computes.
        .target(name: "BackpropExplain", dependencies: ["BackpropNetwork", "BackpropTraining"]),
        // ONNX: a model written as an ONNX graph (interop; the network does not know it exists).
        .target(
            name: "BackpropONNX",
            dependencies: [
                "BackpropCore", "BackpropData", "BackpropNetwork",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Schema/onnx.proto"]
        ),
        // Distributed: data-parallel training over MPI (the trait MPI; without it, only the check that
        // a run was not started by mpirun).
        .target(
            name: "BackpropDistributed",
            dependencies: [
                "BackpropNetwork",
                .target(name: "CMPI", condition: .when(traits: ["MPI"])),
            ]
        ),
        // The umbrella that `import Backprop` gives a user: every module above, re-exported.
        .target(
            name: "Backprop",
            dependencies: [
                "BackpropCore", "BackpropData", "BackpropNetwork", "BackpropTraining", "BackpropExplain",
                "BackpropONNX", "BackpropDistributed",
            ]
        ),
        // The command-line tool: parses, calls the library, formats; owns the benchmarks (Bench/).
        .executableTarget(
            name: "backprop",
            dependencies: [
                "BackpropCore", "BackpropData", "BackpropNetwork", "BackpropTraining", "BackpropExplain",
                "BackpropONNX", "BackpropDistributed", "CStartup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "BackpropTests",
            // The CLI is a dependency so that tests can run the built `backprop` end to end.
            dependencies: [
                "BackpropCore", "BackpropData", "BackpropNetwork", "BackpropTraining", "BackpropExplain",
                "BackpropONNX", "BackpropDistributed", "Backprop", "backprop",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ]
)
