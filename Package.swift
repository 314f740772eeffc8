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
        .executable(name: "cml-serve", targets: ["cml-serve"]),
        .library(name: "CMLKit", targets: ["CMLKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // Already in Hummingbird's graph; named for the two types CMLServer uses (Channel, Logger).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Also in Hummingbird's graph: a long poll ends when the server begins to shut down.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // HummingbirdTLS's own; named for the TLS context cml-serve checks its certificate and key with.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // gzip for cml-serve's answers (over the system's zlib).
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        // YAML for pipeline files (cml-queue pipeline); it carries libyaml's C sources, no system library.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // zlib: libgit2 loads it anyway; cml-diff reads the sizes in git's binary deltas with it.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CSupport"),
        // libcurl's header only: the library is loaded with dlopen when a remote store is used, so that
        // no executable links it (it and its dependencies cost every start milliseconds). dlopen is in
        // glibc's libc since 2.34, so nothing else is linked either.
        .target(name: "CCurl", dependencies: ["CSupport"]),
        // libevent's header only, loaded with dlopen the same way: its HTTP client serves plain http://
        // and loads in a fraction of libcurl's time (cml-run's overhead against a server).
        .target(name: "CEvent", dependencies: ["CSupport"]),
        .target(
            name: "CMLKit",
            dependencies: [
                "CCurl", "CEvent", "CGit2", "CLibCrypto", "CSupport", "CZlib", "CZstd",
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
        // Pipeline files apart from CMLKit: only cml-queue reads YAML.
        .target(name: "CMLPipelineFile", dependencies: ["CMLKit", .product(name: "Yams", package: "Yams")]),
        .executableTarget(
            name: "cml-queue",
            dependencies: [
                "CMLKit", "CMLCommandLine", "CMLPipelineFile",
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
        // The HTTP server apart from CMLKit: only cml-serve links Hummingbird, SwiftNIO and BoringSSL
        // (swift-nio-ssl's), so cml-run's start-up loads none of it.
        .target(
            name: "CMLServer",
            dependencies: [
                "CMLKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "cml-serve",
            dependencies: [
                "CMLKit", "CMLCommandLine", "CMLServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The fixtures are read from the source tree (#filePath), not bundled.
        .testTarget(name: "CMLKitTests", dependencies: ["CMLKit", "CMLPipelineFile"], exclude: ["Fixtures"]),
        .testTarget(name: "CLITests", dependencies: ["CMLKit", "CMLServer", "cml-run", "cml-log", "cml-diff", "cml-data", "cml-queue", "cml-agent", "cml-serve"]),
    ],
    swiftLanguageModes: [.v6]
)
