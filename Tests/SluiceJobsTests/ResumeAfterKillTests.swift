import Foundation
import XCTest
import SluiceJobs
import SluicePipeline

/// `sluice run` killed with SIGKILL at random points and run again ends with exactly one record per
/// image, each equal to an uninterrupted run's.
final class ResumeAfterKillTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    var sluice: URL {
        let bundle = Bundle(for: Self.self).bundleURL
        return (bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle).appendingPathComponent("sluice")
    }

    func weights() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["SLUICE_LITE0_WEIGHTS"],
              FileManager.default.fileExists(atPath: path) else {
            if ProcessInfo.processInfo.environment["SLUICE_REQUIRE_FIXTURES"] == "1" {
                XCTFail("SLUICE_LITE0_WEIGHTS must name the EfficientNet-Lite0 checkpoint")
            }
            throw XCTSkip("set SLUICE_LITE0_WEIGHTS (scripts/test does)")
        }
        return path
    }

    func start(_ arguments: [String], home: URL) throws -> Process {
        let process = Process()
        process.executableURL = sluice
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_HOME"] = home.path
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func records(_ path: URL) throws -> [ResultRecord] {
        try String(contentsOf: path, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8))
        }
    }

    func testKilledRunsResumeToExactlyOneRecordPerImage() throws {
        let weights = try weights()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-resume-\(UUID().uuidString)")
        let images = root.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = try FileManager.default.contentsOfDirectory(atPath: Self.repository.appendingPathComponent("assets/images").path).sorted()
        for i in 0..<500 {
            let photo = photos[i % photos.count]
            try FileManager.default.createSymbolicLink(
                atPath: images.appendingPathComponent(String(format: "%03d_%@", i, photo)).path,
                withDestinationPath: Self.repository.appendingPathComponent("assets/images/\(photo)").path)
        }
        func pipeline(_ name: String) throws -> URL {
            let url = root.appendingPathComponent("\(name).yaml")
            try """
                name: \(name)
                source: { images: images }
                stages:
                  - model: efficientnet_lite0
                    weights: \(weights)
                    batch: 8
                  - topk: 3
                sink: { jsonl: out/\(name).jsonl }
                """.write(to: url, atomically: true, encoding: .utf8)
            return url
        }
        let home = root.appendingPathComponent("home")

        let reference = try start(["run", try pipeline("uninterrupted").path], home: home)
        reference.waitUntilExit()
        XCTAssertEqual(reference.terminationStatus, 0)
        let expected = try records(root.appendingPathComponent("out/uninterrupted.jsonl"))
        XCTAssertEqual(expected.count, 500)

        let killed = try pipeline("killed")
        var generator = SeededGenerator(seed: 20261123)
        for attempt in 0..<3 {
            let run = try start(["run", killed.path], home: home)
            Thread.sleep(forTimeInterval: Double.random(in: 0.8...3.0, using: &generator))
            kill(run.processIdentifier, SIGKILL)
            run.waitUntilExit()
            XCTAssertEqual(run.terminationReason, .uncaughtSignal, "attempt \(attempt) was killed, not finished")
        }
        let store = try JobStore(path: home.appendingPathComponent("jobs.sqlite").path)
        let job = try XCTUnwrap(try store.jobs().first { $0.name == "killed" })
        let before = try store.progress(job: job.id)
        XCTAssertLessThan(before.done, 500, "the kills interrupted the job")

        let final = try start(["run", killed.path], home: home)
        final.waitUntilExit()
        XCTAssertEqual(final.terminationStatus, 0)
        let resumed = try records(root.appendingPathComponent("out/killed.jsonl"))
        XCTAssertEqual(resumed.map(\.source), expected.map(\.source), "one record per image, in input order")
        XCTAssertEqual(Set(resumed.map(\.source)).count, 500)
        for (got, want) in zip(resumed, expected) {
            XCTAssertNil(got.error)
            XCTAssertEqual(got.topK?.map(\.index), want.topK?.map(\.index), got.source)
            for (g, w) in zip(got.topK ?? [], want.topK ?? []) {
                // Batches start at different images after a resume; float sums may differ in the last bits.
                XCTAssertEqual(g.score, w.score, accuracy: 1e-5, got.source)
            }
        }
        XCTAssertEqual(try store.progress(job: job.id), JobStore.Progress(total: 500, done: 500, failed: 0))
    }
}

/// SplitMix64, so the kill points are random but the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
