import Foundation
import XCTest
import SluiceJobs
import SluicePipeline
import SluicePostgres
import SluiceTestSupport

/// `sluice worker` processes sharing one PostgreSQL queue: a worker killed mid-batch, the database
/// restarted mid-job, an item that always fails. Each job must end with exactly one record per image,
/// equal to a single-process `sluice run` of the same pipeline.
final class WorkerTests: XCTestCase {
    var root: URL!
    var weights: String!

    override func setUpWithError() throws {
        weights = try TestResources.lite0Weights().path
        guard PostgresTestServer.url != nil else {
            throw TestResources.missing("no PostgreSQL server: set SLUICE_TEST_POSTGRES_URL (scripts/test starts one)")
        }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-workers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        addTeardownBlock { [root] in try? FileManager.default.removeItem(at: root!) }
    }

    /// `count` images (links to the bundled photos, in turn) in a folder of their own.
    func images(_ count: Int, folder name: String = "images") throws -> URL {
        let folder = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let assets = TestResources.repository.appendingPathComponent("assets/images")
        let photos = try FileManager.default.contentsOfDirectory(atPath: assets.path).sorted()
        for i in 0..<count {
            let photo = photos[i % photos.count]
            try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent(String(format: "%03d_%@", i, photo)).path,
                                                       withDestinationPath: assets.appendingPathComponent(photo).path)
        }
        return folder
    }

    func pipeline(_ name: String, images folder: String = "images") throws -> URL {
        let url = root.appendingPathComponent("\(name).yaml")
        try """
            name: \(name)
            source: { images: \(folder) }
            stages:
              - model: efficientnet_lite0
                weights: \(weights!)
                batch: 8
              - topk: 3
            sink: { jsonl: out/\(name).jsonl }
            """.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// The records of a single-process run of the same images (the SQLite store).
    func singleProcessRecords() throws -> [ResultRecord] {
        let run = try SluiceCLI.run(["run", try pipeline("single").path, "--threads", "1"], home: root.appendingPathComponent("home"))
        XCTAssertEqual(run.status, 0, run.stderr)
        return try JobsCLI.records(root.appendingPathComponent("out/single.jsonl"))
    }

    /// Submits `pipeline` to the queue without working on it; the job id.
    func submit(_ pipeline: URL, queue url: String) throws -> String {
        let submitted = try SluiceCLI.run(["run", pipeline.path, "--queue", url, "--detach"], home: root.appendingPathComponent("home"))
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        return submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func startWorker(_ name: String, queue url: String, _ extra: [String] = []) throws -> Process {
        try SluiceCLI.start(["worker", "--queue", url, "--name", name, "--until-idle", "--threads", "1"] + extra,
                            home: root.appendingPathComponent("home"), log: root.appendingPathComponent("\(name).log"))
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: root.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    /// Waits until `condition` holds (looked at every 20 ms), at most `seconds`.
    func wait(_ seconds: TimeInterval, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }

    func finish(_ workers: [Process], within seconds: TimeInterval) {
        XCTAssertTrue(wait(seconds) { workers.allSatisfy { !$0.isRunning } }, "the workers went idle and exited")
        for worker in workers where worker.isRunning { kill(worker.processIdentifier, SIGKILL) }
        for worker in workers { worker.waitUntilExit() }
    }

    func assertEqual(_ got: [ResultRecord], _ expected: [ResultRecord], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.map(\.source), expected.map(\.source), "one record per image, in input order", file: file, line: line)
        XCTAssertEqual(Set(got.map(\.source)).count, expected.count, file: file, line: line)
        for (g, w) in zip(got, expected) {
            XCTAssertNil(g.error, g.source, file: file, line: line)
            XCTAssertEqual(g.topK?.map(\.index), w.topK?.map(\.index), g.source, file: file, line: line)
            // Batches start at other images in another process; float sums may differ in the last bits.
            for (a, b) in zip(g.topK ?? [], w.topK ?? []) { XCTAssertEqual(a.score, b.score, accuracy: 1e-5, g.source, file: file, line: line) }
        }
    }

    /// Three workers on 500 images; one is SIGKILLed while it holds claims. Its items are claimed again
    /// once their 3 s leases run out (its name is no local process id, so nothing gives them back sooner).
    func testAKilledWorkersItemsAreClaimedAgainAndEachImageIsRecordedOnce() throws {
        _ = try images(500)
        let expected = try singleProcessRecords()
        XCTAssertEqual(expected.count, 500)
        let url = try PostgresTestServer.temporaryDatabase(for: self)
        let job = try submit(try pipeline("shared"), queue: url)
        let queue = try PostgresJobQueue(url: url)
        XCTAssertEqual(try queue.status(job: job), JobStatus(total: 500, pending: 500))

        let workers = try ["w1", "w2", "w3"].map { try startWorker($0, queue: url, ["--lease", "3"]) }
        // Killed once a fifth of the job is committed and while it holds claims: mid-batch.
        let holding = wait(120) {
            guard let status = try? queue.status(job: job) else { return false }
            return status.done >= 100 && status.workers.contains("w2")
        }
        XCTAssertTrue(holding, "w2 took part: \(log("w2"))")
        kill(workers[1].processIdentifier, SIGKILL)
        let atKill = try queue.status(job: job)
        XCTAssertLessThan(atKill.done, 500, "the kill landed before the end")
        finish([workers[0], workers[2]], within: 300)
        workers[1].waitUntilExit()
        XCTAssertEqual(workers[1].terminationReason, .uncaughtSignal)
        for name in ["w1", "w3"] { XCTAssertTrue(log(name).contains("worker \(name): stopped"), log(name)) }

        XCTAssertEqual(try queue.status(job: job), JobStatus(total: 500, done: 500))
        let reclaimed = try PostgresTestServer.administer(url, "SELECT count(*)::text FROM sluice_item WHERE attempts > 1")
        XCTAssertGreaterThan(Int(reclaimed.first ?? "") ?? 0, 0, "the killed worker's claims were taken over after their leases ran out")
        var records: [ResultRecord] = []
        try queue.records(job: job) { records.append($0) }
        assertEqual(records, expected)
        // The worker that finished the job wrote its sink from the queue.
        assertEqual(try JobsCLI.records(root.appendingPathComponent("out/shared.jsonl")), expected)
        let listed = try SluiceCLI.run(["jobs", "list", "--queue", url])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.hasPrefix("\(job)\tshared\t500 done, 0 failed, 0 pending of 500"), listed.stdout)
    }

    /// The database restarts (down for 2 s) while two workers are mid-job: they reconnect with backoff
    /// and finish it, nothing lost and nothing recorded twice.
    func testWorkersReconnectWhenTheDatabaseRestartsMidJob() throws {
        guard let folder = PostgresTestServer.folder else {
            throw TestResources.missing("SLUICE_TEST_POSTGRES_DIR not set: scripts/test names the cluster it starts")
        }
        _ = try images(300)
        let expected = try singleProcessRecords()
        let url = try PostgresTestServer.temporaryDatabase(for: self)
        let job = try submit(try pipeline("shared"), queue: url)
        let queue = try PostgresJobQueue(url: url)
        let workers = try ["r1", "r2"].map { try startWorker($0, queue: url) }
        XCTAssertTrue(wait(120) { ((try? queue.status(job: job).done) ?? 0) >= 60 }, log("r1"))
        let restart = try PostgresTestServer.script(["restart", folder, "2"])
        restart.waitUntilExit()
        XCTAssertEqual(restart.terminationStatus, 0)
        XCTAssertLessThan(try queue.status(job: job).done, 300, "the restart landed before the end")
        finish(workers, within: 300)
        for worker in workers { XCTAssertEqual(worker.terminationStatus, 0) }
        XCTAssertTrue((log("r1") + log("r2")).contains("PostgreSQL"), "a worker said it lost the server: \(log("r1"))")
        XCTAssertEqual(try queue.status(job: job), JobStatus(total: 300, done: 300))
        var records: [ResultRecord] = []
        try queue.records(job: job) { records.append($0) }
        assertEqual(records, expected)
    }

    /// A file that decodes on no attempt fails after --max-attempts claims, with its decoder's error,
    /// while the other images are done; the job does not wait on it past its last attempt.
    func testAPoisonedItemFailsAfterItsLastAttemptWithoutHoldingUpTheOthers() throws {
        let folder = try images(24)
        try Data("not a picture at all".utf8).write(to: folder.appendingPathComponent("010_poisoned.jpg"))
        let url = try PostgresTestServer.temporaryDatabase(for: self)
        let job = try submit(try pipeline("poisoned"), queue: url)
        let workers = try ["p1", "p2"].map { try startWorker($0, queue: url, ["--max-attempts", "3"]) }
        finish(workers, within: 120)
        let queue = try PostgresJobQueue(url: url)
        XCTAssertEqual(try queue.status(job: job), JobStatus(total: 25, done: 24, failed: 1))
        let attempts = try PostgresTestServer.administer(url, "SELECT attempts::text FROM sluice_item WHERE source LIKE '%poisoned.jpg'")
        XCTAssertEqual(attempts, ["3"])
        var records: [ResultRecord] = []
        try queue.records(job: job) { records.append($0) }
        XCTAssertEqual(records.count, 25)
        let failed = try XCTUnwrap(records.first { $0.source.hasSuffix("010_poisoned.jpg") })
        XCTAssertNotNil(failed.error)
        XCTAssertEqual(records.filter { $0.error != nil }.count, 1)
        let shown = try SluiceCLI.run(["jobs", "show", job, "--queue", url])
        XCTAssertTrue(shown.stdout.contains("24 done, 1 failed, 0 pending of 25"), shown.stdout)
        XCTAssertTrue(shown.stdout.contains("failed: "), shown.stdout)
    }

    /// A queue URL that is wrong, or a server that is not there, is one line.
    func testABadQueueURLIsOneLine() throws {
        let bad = try SluiceCLI.run(["jobs", "list", "--queue", "postgres://nobody@127.0.0.1/"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr, "sluice: error: queue URL 'postgres://nobody@127.0.0.1/': no database name\n")
    }
}
