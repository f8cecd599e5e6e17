import Foundation
import XCTest
import SluiceTestSupport
import SluiceJobs
import SluicePipeline
import SluiceTensor

/// `sluice run` killed with SIGKILL at random points and run again ends with exactly one record per
/// image, each equal to an uninterrupted run's.
final class ResumeAfterKillTests: XCTestCase {
    func testKilledRunsResumeToExactlyOneRecordPerImage() throws {
        let weights = try TestResources.lite0Weights().path
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-resume-\(UUID().uuidString)")
        let images = root.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let photos = try FileManager.default.contentsOfDirectory(atPath: TestResources.repository.appendingPathComponent("assets/images").path).sorted()
        for i in 0..<500 {
            let photo = photos[i % photos.count]
            try FileManager.default.createSymbolicLink(
                atPath: images.appendingPathComponent(String(format: "%03d_%@", i, photo)).path,
                withDestinationPath: TestResources.repository.appendingPathComponent("assets/images/\(photo)").path)
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

        let reference = try SluiceCLI.start(["run", try pipeline("uninterrupted").path], home: home)
        reference.waitUntilExit()
        XCTAssertEqual(reference.terminationStatus, 0)
        let expected = try JobsCLI.records(root.appendingPathComponent("out/uninterrupted.jsonl"))
        XCTAssertEqual(expected.count, 500)

        let killed = try pipeline("killed")
        // Kill points are drawn as progress targets (a number of committed images), not as sleeps, so
        // the kills land part-way through however fast this machine runs the job.
        var generator = SplitMix64(seed: 20261123)
        let storePath = home.appendingPathComponent("jobs.sqlite").path
        var done = 0
        // The reference run above created and migrated the store; this connection only reads.
        let store = try SQLiteJobQueue(path: storePath)
        for attempt in 0..<3 {
            let target = done + Int.random(in: 8...120, using: &generator)
            let run = try SluiceCLI.start(["run", killed.path], home: home)
            let deadline = Date().addingTimeInterval(120)
            while run.isRunning && Date() < deadline {
                if let job = try? store.jobs().first(where: { $0.name == "killed" }), let progress = try? store.status(job: job.id), progress.done >= target {
                    break
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            kill(run.processIdentifier, SIGKILL)
            run.waitUntilExit()
            XCTAssertEqual(run.terminationReason, .uncaughtSignal, "attempt \(attempt) was killed, not finished")
            let job = try XCTUnwrap(try store.jobs().first { $0.name == "killed" })
            done = try store.status(job: job.id).done
            XCTAssertGreaterThanOrEqual(done, target, "attempt \(attempt): committed work survives the kill")
        }
        let job = try XCTUnwrap(try store.jobs().first { $0.name == "killed" })
        let before = try store.status(job: job.id)
        XCTAssertLessThan(before.done, 500, "the kills interrupted the job")

        let final = try SluiceCLI.start(["run", killed.path], home: home)
        final.waitUntilExit()
        XCTAssertEqual(final.terminationStatus, 0)
        let resumed = try JobsCLI.records(root.appendingPathComponent("out/killed.jsonl"))
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
        XCTAssertEqual(try store.status(job: job.id), JobStatus(total: 500, done: 500))
    }
}
