// swift-tools-version:6.0
// libFuzzer harnesses for Sluice's parsers of untrusted bytes. A package of its own, because a harness
// has no `main` (libFuzzer brings it) and links only when built with the fuzzer sanitizer:
//   scripts/fuzz TARGET SECONDS      (builds with `swift build --sanitize=fuzzer --sanitize=address`)
import PackageDescription

let harness: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "SluiceFuzz",
    dependencies: [.package(name: "Sluice", path: "..")],
    targets: [
        .executableTarget(name: "fuzz-image", dependencies: [.product(name: "SluiceMedia", package: "Sluice")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-checkpoint", dependencies: [.product(name: "SluiceModels", package: "Sluice")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-video", dependencies: [.product(name: "SluiceMedia", package: "Sluice")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-pipeline", dependencies: [.product(name: "SluicePipeline", package: "Sluice")],
                          swiftSettings: harness),
    ]
)
