// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "cml",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cml-run", targets: ["cml-run"]),
        .executable(name: "cml-log", targets: ["cml-log"]),
        .executable(name: "cml-diff", targets: ["cml-diff"]),
        .executable(name: "cml-data", targets: ["cml-data"]),
        .executable(name: "cml-queue", targets: ["cml-queue"]),
        .executable(name: "cml-agent", targets: ["cml-agent"]),
        .library(name: "CMLKit", targets: ["CMLKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // zlib: libgit2 loads it anyway; cml-diff reads the sizes in git's binary deltas with it.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CSupport"),
        .target(
            name: "CMLKit",
            dependencies: [
                "CGit2", "CLibCrypto", "CSupport", "CZlib", "CZstd",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // Archives apart from CMLKit: linking libarchive (and the ICU and compression libraries it
        // pulls in) into cml-run would cost every run about 2 ms of dynamic loading.
        .target(name: "CMLArchive", dependencies: ["CMLKit", "CArchive"]),
        // What the executables share about the command line: --store, --format, errors as one line.
        .target(
            name: "CMLCommandLine",
            dependencies: ["CMLKit", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "cml-run",
            dependencies: [
                "CMLKit", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "cml-log",
            dependencies: [
                "CMLKit", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "cml-diff",
            dependencies: [
                "CMLKit", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "cml-data",
            dependencies: [
                "CMLKit", "CMLArchive", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "cml-queue",
            dependencies: [
                "CMLKit", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "cml-agent",
            dependencies: [
                "CMLKit", "CMLCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The fixtures are read from the source tree (#filePath), not bundled.
        .testTarget(name: "CMLKitTests", dependencies: ["CMLKit"], exclude: ["Fixtures"]),
        .testTarget(name: "CLITests", dependencies: ["CMLKit", "cml-run", "cml-log", "cml-diff", "cml-data", "cml-queue", "cml-agent"]),
    ],
    swiftLanguageModes: [.v6]
)
