// swift-tools-version:6.1
import PackageDescription

// Four rooms (see docs/ARCHITECTURE.md):
//   FTWire      pure Swift codecs and path rules; no syscalls
//   FTEngine    the ring, file descriptors, sockets, pipes, the destination tree
//   FTTransfer  sender/receiver state machines and their drivers, progress
//   FTChat      chat room, client and UDP peer on the same engine
//   FTBench     ftbench's measurements, peers, reports and charts
//   FTFrontEnd  what both executables render: JSON, sizes, progress, logs
//   ft, ftbench thin front ends
// A release ft carries the Swift runtime in itself, as `tools/package`
// builds it: no shared Swift libraries to load at each start, nor their
// pages in its RSS. Measured against the shared runtime (`perf stat -r
// 50 ft --version`; `tools/bench-ab`, unpinned, tmpfs): start 4.8 ms
// against 7.9; 10,000 × 4 KiB 0.93× wall (15 runs), 100,000 small files
// 1.02× (7, noise); peak RSS sender / receiver on /usr/share 30.0 / 29.2
// MiB against 31.8 / 31.8, on 100,000 files 25.1 / 27.7 against 27.1 /
// 29.3. (FoundationEssentials' static archive needs its two helper
// libraries named; `swift build --static-swift-stdlib` finds them
// itself.) Debug builds, the tests', keep the shared runtime.
let staticRuntimeInRelease: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib", "-Xlinker", "-l_FoundationCShims", "-Xlinker", "-l_FoundationCollections"],
                 .when(configuration: .release)),
]

let package = Package(
    name: "ft",
    products: [
        .executable(name: "ft", targets: ["ft"]),
        .executable(name: "ftbench", targets: ["ftbench"]),
        // The one library for embedding (its DocC catalog has the article
        // "Embedding ft"); the other modules are its internals and the tools'.
        .library(name: "FTTransfer", targets: ["FTTransfer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // `swift package generate-documentation --target FTTransfer`.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
    ],
    targets: [
        // liburing from its static archive (liburing-dev ships it): the
        // binary then runs on a host without liburing installed.
        .target(name: "CURing", linkerSettings: [.linkedLibrary(":liburing.a")]),
        // The hash is inlined from xxhash.h (nothing of libxxhash.so is
        // linked): optimised in debug builds too, or every test that moves
        // a big file spends seconds hashing it.
        .target(name: "CXXHash", cSettings: [.unsafeFlags(["-O2"])]),
        // The AEADs of --encrypt, in place, from libcrypto's static archive
        // (libssl-dev ships it).
        // Links swift-crypto for its BoringSSL (AES-256-GCM; see CAEAD.h).
        .target(name: "CAEAD", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                linkerSettings: [.linkedLibrary(":libcrypto.a")]),
        .target(name: "FTWire"),
        .target(
            name: "FTEngine",
            dependencies: [
                "CURing", "FTWire",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "FTTransfer",
            dependencies: [
                "FTWire", "FTEngine", "CXXHash", "CAEAD",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "FTChat",
            dependencies: [
                "FTWire", "FTEngine",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "FTFrontEnd",
            dependencies: [
                "FTTransfer", "FTEngine", "FTWire", "CURing",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "ft",
            dependencies: [
                "FTTransfer", "FTChat", "FTEngine", "FTWire", "FTFrontEnd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: staticRuntimeInRelease),
        .target(
            name: "FTBench",
            dependencies: [
                "FTEngine", "FTWire", "FTFrontEnd",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "ftbench",
            dependencies: [
                "FTBench", "FTTransfer", "FTEngine", "FTWire", "FTFrontEnd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Test helper: runs a command with io_uring_setup refused by seccomp.
        .executableTarget(name: "no-io-uring"),
        // What every test target shares: spawning processes, ports, fake
        // peers built from the wire encoder, files and byte comparisons.
        .target(
            name: "FTTestSupport",
            dependencies: [
                "FTWire", "FTEngine", "FTTransfer", "FTBench", "CXXHash",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/FTTestSupport",
            // The tests hash files with libxxhash itself, not with ft's code.
            linkerSettings: [.linkedLibrary("xxhash")]),
        .testTarget(name: "FTWireTests", dependencies: ["FTWire"]),
        .testTarget(
            name: "FTEngineTests",
            dependencies: ["FTEngine", "FTWire", "CURing", "FTTestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "FTTransferTests",
            dependencies: ["FTTransfer", "FTEngine", "FTWire", "CXXHash", "FTTestSupport",
                           .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "FTCLITests",
            dependencies: ["FTWire", "CXXHash", "FTFrontEnd", "FTBench", "FTTransfer", "FTTestSupport"]),
        .testTarget(name: "FTChatTests", dependencies: ["FTChat", "FTWire"]),
        .testTarget(name: "FTFrontEndTests", dependencies: ["FTFrontEnd", "FTTransfer", "FTEngine", "FTWire"]),
    ]
)
