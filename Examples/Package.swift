// swift-tools-version:6.1
import PackageDescription

// Two programs that embed ft through its one library, FTTransfer, as a
// package of your own would (CI builds them and pushes between them).
let package = Package(
    name: "ft-examples",
    dependencies: [
        // A package of yours names ft by its URL and a version instead.
        .package(name: "ft", path: ".."),
    ],
    targets: [
        .executableTarget(name: "push-dir", dependencies: [.product(name: "FTTransfer", package: "ft")]),
        .executableTarget(name: "serve-dir", dependencies: [.product(name: "FTTransfer", package: "ft")]),
    ]
)
