// swift-tools-version:6.1
// Microbenchmarks (ordo-one/benchmark), kept out of the main build and CI.
// Run: cd Benchmarks && swift package benchmark
import Foundation
import PackageDescription

// A path dependency is known by its directory's name, which differs between
// checkouts (and CI's clone): read it instead of hard-coding it.
let ft = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "ft-benchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "FTMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FTWire", package: ft),
                .product(name: "FTEngine", package: ft),
                .product(name: "FTTransfer", package: ft),
            ],
            path: "FTMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ]
)
