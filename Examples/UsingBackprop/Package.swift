// swift-tools-version: 6.2
import PackageDescription

// A package of one's own that uses Backprop, as a user's would: `swift run -c release`.
//
// Backprop is a dependency by path, *named*. SwiftPM names a path dependency after the last
// component of its path (the folder of the clone: `main`, `backprop`, `Backprop-1.2`…), and
// `.product(name:package:)` must give that name. `.package(name:path:)` names it "Backprop" instead,
// so the product below resolves whatever the clone's folder is called. (With a URL dependency the
// name is the repository's last URL component.)
let package = Package(
    name: "UsingBackprop",
    dependencies: [
        .package(name: "Backprop", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "UsingBackprop",
            dependencies: [.product(name: "Backprop", package: "Backprop")]
        )
    ]
)
