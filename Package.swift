// swift-tools-version:6.2
import PackageDescription

/// Every target of ours: Swift 6 language mode, and nonisolated async functions run on the
/// caller's executor, so that a connection owned by one task never crosses isolation domains.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "powa-collector",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "powa-collector", targets: ["powa-collector"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // The spool's files: async I/O off the cooperative pool, files that appear once whole.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        // Tests only: the Kubernetes example's YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C: libpq itself, and epoll (not part of Swift's Glibc module).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .systemLibrary(name: "CEpoll"),

        // The async PostgreSQL layer over libpq's non-blocking API.
        .target(
            name: "PostgresClient",
            dependencies: [
                "CLibPQ",
                "CEpoll",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The PoWA domain: configuration, repository, remote servers, workers, control channel.
        .target(
            name: "PoWACollector",
            dependencies: [
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // The daemon's command line.
        .executableTarget(
            name: "powa-collector",
            dependencies: [
                "PoWACollector",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmarks: a command, never a timed test.
        .executableTarget(
            name: "powa-bench",
            dependencies: [
                "PostgresClient",
                "TestBed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/powa-bench",
            swiftSettings: swiftSettings
        ),

        // Tests. Unit tests first: no PostgreSQL, no network, no test bed; they run alone
        // with `swift test --filter UnitTests`.
        .testTarget(
            name: "PostgresClientUnitTests",
            dependencies: ["PostgresClient", "TestWaiting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PoWACollectorUnitTests",
            dependencies: [
                "PoWACollector", "PostgresClient", "TestWaiting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // How a test waits for a condition (every suite's, with a bed or without).
        .target(
            name: "TestWaiting",
            path: "Tests/TestWaiting",
            swiftSettings: swiftSettings
        ),
        // Integration tests: the real PostgreSQL test bed (scripts/testbed) and the suites that
        // use it.
        .target(
            name: "TestBed",
            dependencies: ["PostgresClient", "TestWaiting", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestBed",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresClientTests",
            dependencies: ["PostgresClient", "TestBed", "TestWaiting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PoWACollectorTests",
            dependencies: [
                "PoWACollector", "PostgresClient", "TestBed", "TestWaiting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
