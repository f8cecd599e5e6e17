// swift-tools-version:6.0
import PackageDescription

// Release builds get AVX2/FMA code generation and no overflow/bounds traps in the numeric code
// (see ../shared/docs/platform-notes.md §5); debug builds stay portable and checked.
let fastMath: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-Xcc", "-march=x86-64-v3"], .when(configuration: .release)),
]

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        .target(name: "SluiceTensor", dependencies: ["COpenBLAS"], swiftSettings: fastMath),
        .target(name: "SluiceMedia", dependencies: ["SluiceTensor", "CPNG", "CTurboJPEG", "CFFmpeg"],
                swiftSettings: fastMath),
        .target(name: "SluiceModels", dependencies: ["SluiceTensor", "SluiceMedia", "ZIPFoundation"],
                resources: [.copy("Resources")], swiftSettings: fastMath),
        .target(name: "SluicePipeline", dependencies: ["SluiceTensor", "SluiceMedia", "SluiceModels",
                                                       .product(name: "Yams", package: "Yams"),
                                                       .product(name: "CoreMetrics", package: "swift-metrics")],
                swiftSettings: fastMath),
        .target(name: "SluiceJobs", dependencies: ["SluicePipeline", .product(name: "GRDB", package: "GRDB.swift")]),
        .executableTarget(name: "sluice", dependencies: [
            "SluiceTensor", "SluiceMedia", "SluiceModels", "SluicePipeline", "SluiceJobs",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fastMath),

        // The repository, the real weights and the built binary, for every test target.
        .target(name: "SluiceTestSupport", path: "Tests/SluiceTestSupport"),
        .testTarget(name: "SluiceTensorTests", dependencies: ["SluiceTensor"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceMediaTests", dependencies: ["SluiceMedia", "SluiceTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceModelsTests", dependencies: ["SluiceModels", "SluiceTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SluicePipelineTests", dependencies: ["SluicePipeline", "SluiceTestSupport",
                                                                .product(name: "MetricsTestKit", package: "swift-metrics")]),
        .testTarget(name: "SluiceJobsTests", dependencies: ["SluiceJobs", "SluiceTensor", "SluiceTestSupport",
                                                         .product(name: "GRDB", package: "GRDB.swift")],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
