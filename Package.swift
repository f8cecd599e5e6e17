// swift-tools-version:6.0
import PackageDescription

// Release builds get AVX2/FMA code generation everywhere (see ../shared/docs/platform-notes.md §5).
// Only the numeric kernels (SluiceTensor) also drop overflow and bounds traps: every other module
// parses untrusted bytes (image and video containers, EXIF, checkpoints, NPY, YAML) or calls the
// kernels, and keeps its checks. Debug builds stay portable and checked.
let avx2: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v3"], .when(configuration: .release))]
let kernels: [SwiftSetting] = avx2 + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        // For the fuzz harnesses (fuzz/Package.swift).
        .library(name: "SluiceMedia", targets: ["SluiceMedia"]),
        .library(name: "SluiceModels", targets: ["SluiceModels"]),
        .library(name: "SluicePipeline", targets: ["SluicePipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        .target(name: "SluiceTensor", dependencies: ["COpenBLAS"], swiftSettings: kernels),
        .target(name: "SluiceMedia", dependencies: ["SluiceTensor", "CPNG", "CTurboJPEG", "CFFmpeg"],
                swiftSettings: avx2),
        .target(name: "SluiceModels", dependencies: ["SluiceTensor", "SluiceMedia", "ZIPFoundation"], swiftSettings: avx2),
        .target(name: "SluicePipeline", dependencies: ["SluiceTensor", "SluiceMedia", "SluiceModels",
                                                       .product(name: "Yams", package: "Yams"),
                                                       .product(name: "CoreMetrics", package: "swift-metrics")],
                swiftSettings: avx2),
        .target(name: "SluiceJobs", dependencies: ["SluicePipeline", .product(name: "GRDB", package: "GRDB.swift")]),
        // The job queue in PostgreSQL, for workers on many machines (postgres-nio).
        .target(name: "SluicePostgres", dependencies: ["SluiceJobs", .product(name: "PostgresNIO", package: "postgres-nio")]),
        .target(name: "SluiceDownloads", dependencies: [
            "SluiceModels", "ZIPFoundation",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "SluiceServer", dependencies: [
            "SluiceMedia", "SluiceModels", "SluicePipeline", "SluiceJobs",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .executableTarget(name: "sluice", dependencies: [
            "SluiceTensor", "SluiceMedia", "SluiceModels", "SluicePipeline", "SluiceJobs", "SluicePostgres", "SluiceServer", "SluiceDownloads",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: avx2),

        // The repository, the real weights and the built binary, for every test target.
        .target(name: "SluiceTestSupport", dependencies: ["SluiceModels", "SluiceTensor"], path: "Tests/SluiceTestSupport"),
        .testTarget(name: "SluiceTensorTests", dependencies: ["SluiceTensor", "SluiceModels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceMediaTests", dependencies: ["SluiceMedia", "SluiceModels", "SluiceTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceModelsTests", dependencies: ["SluiceModels", "SluiceTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SluicePipelineTests", dependencies: ["SluicePipeline", "SluiceTestSupport",
                                                                .product(name: "MetricsTestKit", package: "swift-metrics")]),
        .testTarget(name: "SluiceJobsTests", dependencies: ["SluiceJobs", "SluicePostgres", "SluiceTensor", "SluiceTestSupport",
                                                         .product(name: "GRDB", package: "GRDB.swift"),
                                                         .product(name: "PostgresNIO", package: "postgres-nio")],
                    exclude: ["Fixtures"]),
        .testTarget(name: "SluiceServerTests", dependencies: ["SluiceServer", "SluiceJobs", "SluiceModels", "SluiceMedia", "SluiceTestSupport",
                                                           "SluiceDownloads", .product(name: "Hummingbird", package: "hummingbird"),
                                                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                                                           .product(name: "Yams", package: "Yams")]),
    ],
    swiftLanguageModes: [.v6]
)
