// swift-tools-version: 6.2
import PackageDescription

// Layers of the package (see README.md, "Architecture"):
//   CBLAS, CZlib   system libraries (OpenBLAS through pkg-config, zlib for .gz files)
//   CKernels       matrix-product kernels in C for AVX2/FMA, chosen at run time; the thread pool
//   Backprop       the library: Tensor, Layers, Autograd, Check, Data, Training, Explain
//   backprop       the command-line tool
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
        .default(enabledTraits: ["OpenBLAS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target Backprop` (README, "Documentation").
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        .target(name: "CKernels"),
        .target(
            name: "Backprop",
            dependencies: [
                .target(name: "CBLAS", condition: .when(platforms: [.linux], traits: ["OpenBLAS"])),
                "CZlib",
                "CKernels",
            ],
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: [.macOS]))]
        ),
        .executableTarget(
            name: "backprop",
            dependencies: [
                "Backprop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "BackpropTests",
            // The CLI is a dependency so that tests can run the built `backprop` end to end.
            dependencies: ["Backprop", "backprop"],
            resources: [.copy("Fixtures")]
        ),
    ]
)
