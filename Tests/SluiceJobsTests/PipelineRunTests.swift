import Foundation
import GRDB
import XCTest
import SluiceTestSupport
import SluiceJobs
import SluiceMedia
import SluicePipeline

/// `sluice run` end to end: the shipped pipelines on bundled data, bad inputs, cancellation.
final class PipelineRunTests: XCTestCase {
    /// A world-writable scratch folder (the unreadable-file test runs the command as `nobody`).
    /// `count` symbolic links to the bundled photos in turn, named `NNN_photo` so they sort in order.
    func linkPhotos(_ count: Int, into images: URL) throws {
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let photos = TestResources.repository.appendingPathComponent("assets/images")
        let names = try FileManager.default.contentsOfDirectory(atPath: photos.path).sorted()
        for i in 0..<count {
            try FileManager.default.createSymbolicLink(
                atPath: images.appendingPathComponent(String(format: "%03d_%@", i, names[i % names.count])).path,
                withDestinationPath: photos.appendingPathComponent(names[i % names.count]).path)
        }
    }

    func scratch() throws -> URL {
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("home"), withIntermediateDirectories: true)
        for folder in [root, root.appendingPathComponent("home")] {
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path)
        }
        addTeardownBlock {
            let locked = root.appendingPathComponent("images/locked")
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: locked.path)
            try? FileManager.default.removeItem(at: root)
        }
        return root
    }

    func testShippedPipelinesRunOnBundledData() throws {
        let weights = try TestResources.lite0Weights().path
        let root = try scratch()
        let home = root.appendingPathComponent("home")
        let imported = try SluiceCLI.run(["models", "import", weights, "--model", "efficientnet_lite0"], home: home)
        XCTAssertEqual(imported.status, 0, imported.output)

        let folder = TestResources.repository.appendingPathComponent("pipelines")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 2)
        for file in files {
            let url = folder.appendingPathComponent(file)
            let definition = try PipelineDefinition.load(contentsOf: url)
            let items = try definition.source.items()
            XCTAssertFalse(items.isEmpty, file)
            let run = try SluiceCLI.run(["run", url.path, "--fresh", "--strict"], home: home)
            XCTAssertEqual(run.status, 0, "\(file): \(run.output)")
            let jsonl = try XCTUnwrap(definition.jsonl, file)
            let records = try JobsCLI.records(URL(fileURLWithPath: jsonl))
            XCTAssertTrue(records.allSatisfy { $0.error == nil && !($0.topK ?? []).isEmpty }, file)
            XCTAssertEqual(Set(records.map(\.source)), Set(items.map(\.path)), file)
            if case .video = definition.source.media {
                XCTAssertGreaterThan(records.count, items.count, "\(file): one record per sampled frame")
                XCTAssertTrue(records.allSatisfy { $0.frameIndex != nil && $0.pts != nil }, file)
                if let folder = definition.overlay {
                    // Each video's overlay: H.264 yuv420p, one frame per sampled frame, at the frames' timestamps.
                    for item in items {
                        let overlay = try VideoReader(path: OverlaySink.path(for: item.path, in: folder))
                        XCTAssertEqual(overlay.info.codec, "h264")
                        XCTAssertEqual(overlay.info.pixelFormat, "yuv420p")
                        let shown = overlay.frames(.all).map(\.pts)
                        let wanted = records.filter { $0.source == item.path }.compactMap(\.pts)
                        XCTAssertEqual(shown.count, wanted.count, file)
                        for (got, want) in zip(shown, wanted) { XCTAssertEqual(got, want, accuracy: 2e-3, file) }
                    }
                }
            } else {
                XCTAssertEqual(records.count, items.count, file)
            }
            if let csv = definition.csv {
                let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
                XCTAssertEqual(lines.count, records.count + 1, "\(file): CSV is the same records")
            }
            // Running it again resumes a finished job: nothing is redone, the sinks hold the same records.
            let again = try SluiceCLI.run(["run", url.path], home: home)
            XCTAssertEqual(again.status, 0, again.output)
            XCTAssertTrue(again.output.contains("already done"), again.output)
            XCTAssertEqual(try JobsCLI.records(URL(fileURLWithPath: jsonl)), records, file)
        }
    }

    func testCorruptEmptyAndUnreadableFilesAreRecordedAndTheRunFinishes() throws {
        let root = try scratch()
        let weights = try TestResources.lite0Weights(readableByAnyoneIn: root).path
        let images = root.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for name in ["chelsea.png", "coffee.png"] {
            try FileManager.default.copyItem(at: TestResources.repository.appendingPathComponent("assets/images/\(name)"),
                                             to: images.appendingPathComponent(name))
        }
        let bad = TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures/bad")
        for name in ["truncated.jpg", "bad_crc_idat.png", "text.jpg", "empty.jpg"] {
            try FileManager.default.copyItem(at: bad.appendingPathComponent(name), to: images.appendingPathComponent(name))
        }
        let unreadable = images.appendingPathComponent("unreadable.jpg")
        try FileManager.default.copyItem(at: TestResources.repository.appendingPathComponent("assets/images/orange.jpg"), to: unreadable)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: unreadable.path)
        let locked = images.appendingPathComponent("locked")
        try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: locked.path)
        for folder in [root, images] { try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path) }
        let pipeline = root.appendingPathComponent("bad.yaml")
        try """
            name: bad-inputs
            source: { images: images }
            stages:
              - model: efficientnet_lite0
                weights: \(weights)
                batch: 3
              - topk: 1
            sink: { jsonl: out/bad.jsonl, csv: out/bad.csv }
            """.write(to: pipeline, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("out"), withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: root.appendingPathComponent("out").path)
        // Root reads anything, so as root the command runs as the unprivileged user `nobody`.
        let user: String? = getuid() == 0 ? "65534" : nil
        let home = root.appendingPathComponent("home")
        let run = try SluiceCLI.run(["run", pipeline.path], home: home, as: user)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("8 items, 2 done, 6 failed"), run.output)

        let records = try JobsCLI.records(root.appendingPathComponent("out/bad.jsonl"))
        let byName = Dictionary(uniqueKeysWithValues: records.map { (($0.source as NSString).lastPathComponent, $0) })
        XCTAssertEqual(byName.keys.sorted(), ["bad_crc_idat.png", "chelsea.png", "coffee.png", "empty.jpg", "locked",
                                              "text.jpg", "truncated.jpg", "unreadable.jpg"],
                       "one record per input")
        XCTAssertEqual(records.count, 8)
        XCTAssertNil(byName["coffee.png"]?.error)
        XCTAssertEqual(byName["coffee.png"]?.topK?.first?.label, "espresso")
        XCTAssertTrue(byName["empty.jpg"]?.error?.contains("empty") ?? false, "\(String(describing: byName["empty.jpg"]))")
        XCTAssertTrue(byName["unreadable.jpg"]?.error?.lowercased().contains("permission") ?? false,
                      "\(String(describing: byName["unreadable.jpg"]?.error))")
        XCTAssertTrue(byName["locked"]?.error?.contains("cannot list directory") ?? false,
                      "\(String(describing: byName["locked"]?.error))")
        for name in ["bad_crc_idat.png", "text.jpg", "truncated.jpg"] {
            XCTAssertTrue(byName[name]?.error?.contains(name) ?? false, "\(name): \(String(describing: byName[name]?.error))")
        }
        let strict = try SluiceCLI.run(["run", pipeline.path, "--strict"], home: home, as: user)
        XCTAssertEqual(strict.status, 2, strict.output)
    }

    /// A started run (log in `root/run.log`) of a job NAME over 300 photos, batches of 4, writing
    /// `root/out/NAME.jsonl`, once it has committed its first records; its pipeline file, store and job id.
    func startRunAndWaitForItsFirstCommit(_ name: String, in root: URL) throws
        -> (run: Process, pipeline: URL, home: URL, store: SQLiteJobQueue, id: String) {
        let weights = try TestResources.lite0Weights().path
        try linkPhotos(300, into: root.appendingPathComponent("images"))
        let pipeline = root.appendingPathComponent("\(name).yaml")
        try """
            name: \(name)-me
            source: { images: images }
            stages: [{ model: efficientnet_lite0, weights: \(weights), batch: 4 }]
            sink: { jsonl: out/\(name).jsonl }
            """.write(to: pipeline, atomically: true, encoding: .utf8)
        let home = root.appendingPathComponent("home")
        let run = try SluiceCLI.start(["run", pipeline.path], home: home, log: root.appendingPathComponent("run.log"))
        let store = try SQLiteJobQueue(path: home.appendingPathComponent("jobs.sqlite").path)
        var job: Job?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let found = try? store.jobs().first, (try? store.status(job: found.id).done) ?? 0 > 0 { job = found; break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let id = try XCTUnwrap(job?.id, "the run committed nothing within 60 s")
        return (run, pipeline, home, store, id)
    }

    func testCancelStopsARunningJobAndRunningItAgainFinishesIt() throws {
        let root = try scratch()
        // Wait for the first commits, then cancel from another process.
        let (run, pipeline, home, store, id) = try startRunAndWaitForItsFirstCommit("cancel", in: root)
        let cancel = try SluiceCLI.run(["jobs", "cancel", id], home: home)
        XCTAssertEqual(cancel.status, 0, cancel.output)
        run.waitUntilExit()
        let log = try String(contentsOf: root.appendingPathComponent("run.log"), encoding: .utf8)
        XCTAssertEqual(run.terminationStatus, 3, log)
        XCTAssertTrue(log.contains("cancelled: job \(id) stopped after"), log)
        let partial = try store.status(job: id)
        XCTAssertLessThan(partial.done, 300, "cancelled before the end")
        let written = try JobsCLI.records(root.appendingPathComponent("out/cancel.jsonl"))
        XCTAssertEqual(written.count, partial.done, "the sink holds exactly the committed records")

        let again = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(again.status, 0, again.output)
        let final = try JobsCLI.records(root.appendingPathComponent("out/cancel.jsonl"))
        XCTAssertEqual(final.count, 300)
        XCTAssertEqual(Set(final.map(\.source)).count, 300)
        XCTAssertEqual(Array(final.prefix(written.count)), written, "committed results are kept as they were")
        XCTAssertEqual(try store.status(job: id), JobStatus(total: 300, done: 300))
    }

    /// Two runs of one job started together share its items through their claims: every item is
    /// claimed and processed once, by one of them, and both leave the whole job in the sink.
    func testTwoConcurrentRunsShareTheJobAndRecordEachItemOnce() throws {
        let weights = try TestResources.lite0Weights().path
        let root = try scratch()
        // More items than one claim takes (256), so both runs get some.
        let count = 600
        try linkPhotos(count, into: root.appendingPathComponent("images"))
        let pipeline = root.appendingPathComponent("shared.yaml")
        try """
            name: shared
            source: { images: images }
            stages: [{ model: efficientnet_lite0, weights: \(weights), batch: 8 }]
            sink: { jsonl: out/shared.jsonl }
            """.write(to: pipeline, atomically: true, encoding: .utf8)
        let home = root.appendingPathComponent("home")
        let logs = ["a", "b"].map { root.appendingPathComponent("\($0).log") }
        let runs = try logs.map { try SluiceCLI.start(["run", pipeline.path], home: home, log: $0) }
        for run in runs { run.waitUntilExit() }
        let outputs = try logs.map { try String(contentsOf: $0, encoding: .utf8) }
        var processed = 0
        for (run, output) in zip(runs, outputs) {
            XCTAssertEqual(run.terminationStatus, 0, output)
            XCTAssertTrue(output.contains("\(count) items, \(count) done, 0 failed"), output)
            let match = try XCTUnwrap(output.firstMatch(of: /this run (\d+) items/), output)
            processed += Int(match.1) ?? 0
        }
        XCTAssertEqual(processed, count, "each item processed by one run: \(outputs)")

        let records = try JobsCLI.records(root.appendingPathComponent("out/shared.jsonl"))
        let sources = try definitionSources(pipeline)
        XCTAssertEqual(records.map(\.source), sources, "one record per item, in input order")
        let store = try DatabaseQueue(path: home.appendingPathComponent("jobs.sqlite").path)
        let attempts = try store.read { db in try Int.fetchAll(db, sql: "SELECT attempts FROM item") }
        XCTAssertEqual(attempts, [Int](repeating: 1, count: count), "no item was claimed twice")
    }

    func definitionSources(_ pipeline: URL) throws -> [String] {
        try PipelineDefinition.load(contentsOf: pipeline).source.items().map(\.path)
    }
}
