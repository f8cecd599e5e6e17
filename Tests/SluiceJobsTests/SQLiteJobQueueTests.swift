import Foundation
import GRDB
import XCTest
import SluiceJobs
import SluicePipeline

/// The conformance checks against the SQLite queue in memory (`DatabaseQueue`) and in a file
/// (`DatabasePool`, two pools on one file standing for two processes), and the migration of a store
/// written before the queue.
final class SQLiteJobQueueTests: XCTestCase {
    func temporaryStore() -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-queue-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder.appendingPathComponent("jobs.sqlite").path
    }

    /// Two runs started together open a store file that does not exist yet: both must open it (switching a
    /// new file to WAL takes a lock SQLite's busy timeout does not wait for; two `sluice run` failed with
    /// "database is locked" about one time in seven before the retry).
    func testStoresOpenedTogetherOnANewFileAllOpen() throws {
        for _ in 0..<30 {
            let path = temporaryStore()
            let failures = UnsafeSendableBox()
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                do { _ = try SQLiteJobQueue(path: path).jobs() } catch { failures.add("\(error)") }
            }
            XCTAssertEqual(failures.values, [])
        }
    }

    /// Runs `check` against each way of opening the queue (a failure's store is the one named last
    /// before it in the log).
    func forEachStore(_ check: (JobQueueConformance) throws -> Void) throws {
        let inMemory = JobQueueConformance(
            make: { clock in try SQLiteJobQueue(database: try DatabaseQueue(), now: { clock.now }) },
            makeShared: {
                let queue = try SQLiteJobQueue(database: try DatabaseQueue())
                return (queue, queue)
            })
        let onDisk = JobQueueConformance(
            make: { clock in try SQLiteJobQueue(path: self.temporaryStore(), now: { clock.now }) },
            makeShared: {
                let path = self.temporaryStore()
                return (try SQLiteJobQueue(path: path), try SQLiteJobQueue(path: path))
            })
        for (name, store) in [("in memory", inMemory), ("on disk", onDisk)] {
            print("\(self.name): \(name)")
            try check(store)
        }
    }

    func testSubmitIsIdempotent() throws { try forEachStore { try $0.submitIsIdempotent() } }
    func testJobIDsAreUnchanged() throws { try forEachStore { $0.jobIDsAreUnchanged() } }
    func testAmbiguousPrefixIsAnError() throws { try forEachStore { try $0.ambiguousPrefixIsAnError() } }
    func testClaimsComeInOrderUpToTheLimit() throws { try forEachStore { try $0.claimsComeInOrderUpToTheLimit() } }
    func testConcurrentWorkersNeverShareAnItem() throws { try forEachStore { try $0.concurrentWorkersNeverShareAnItem() } }
    func testAnExpiredLeaseGoesToAnotherWorkerAndTheFirstIsRefused() throws {
        try forEachStore { try $0.anExpiredLeaseGoesToAnotherWorkerAndTheFirstIsRefused() }
    }
    func testHeartbeatsKeepALeaseAlive() throws { try forEachStore { try $0.heartbeatsKeepALeaseAlive() } }
    func testFailRecordsTheReason() throws { try forEachStore { try $0.failRecordsTheReason() } }
    func testCancelStopsClaims() throws { try forEachStore { try $0.cancelStopsClaims() } }
    func testStatusCountsEachState() throws { try forEachStore { try $0.statusCountsEachState() } }
    func testRecordsStreamInPositionOrder() throws { try forEachStore { try $0.recordsStreamInPositionOrder() } }
    func testFinishedItemsPageByEitherOrder() throws { try forEachStore { try $0.finishedItemsPageByEitherOrder() } }
    func testFreshResubmissionStartsOverAndVoidsLeases() throws {
        try forEachStore { try $0.freshResubmissionStartsOverAndVoidsLeases() }
    }

    /// A store written by the job store before the queue (migrations "v1" and "v2: cancel", the
    /// pipeline's path in `job.pipeline`) opens with its jobs listed, resumable and exportable.
    func testAStoreFromBeforeTheQueueIsMigrated() throws {
        let path = temporaryStore()
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let pipelineText = "name: old\nsource: { images: /data }\n"
        let sources = ["/data/0.jpg", "/data/1.jpg", "/data/2.jpg", "/data/3.jpg"]
        let id = JobID.make(pipeline: pipelineText, sources: sources)
        let done = #"{"error":null,"model":"efficientnet_lite0","source":"/data/0.jpg","top_k":[{"index":1,"label":"a","score":0.5}]}"#
        let failed = #"{"error":"truncated","model":"efficientnet_lite0","source":"/data/1.jpg"}"#
        let old = try DatabaseQueue(path: path)
        try old.write { db in
            // The schema as the old migrations made it, and GRDB's record of them.
            try db.execute(sql: """
                CREATE TABLE "job" ("id" TEXT PRIMARY KEY NOT NULL, "name" TEXT NOT NULL, "pipeline" TEXT NOT NULL,
                                    "createdAt" DATETIME NOT NULL, "total" INTEGER NOT NULL);
                CREATE TABLE "item" ("jobId" TEXT NOT NULL REFERENCES "job"("id") ON DELETE CASCADE,
                                     "position" INTEGER NOT NULL, "source" TEXT NOT NULL, "state" TEXT NOT NULL,
                                     "attempts" INTEGER NOT NULL, "listingError" TEXT, "error" TEXT, "record" TEXT,
                                     PRIMARY KEY ("jobId", "position"));
                ALTER TABLE "job" ADD COLUMN "cancelledAt" DATETIME;
                CREATE TABLE "grdb_migrations" ("identifier" TEXT NOT NULL PRIMARY KEY);
                INSERT INTO "grdb_migrations" VALUES ('v1'), ('v2: cancel');
                """)
            try db.execute(sql: "INSERT INTO job VALUES (?, 'old', '/home/me/old.yaml', '2026-11-20 10:00:00.000', 4, NULL)",
                           arguments: [id])
            let states: [(String, String?, String?)] = [("done", nil, done), ("failed", "truncated", failed), ("pending", nil, nil),
                                                        ("pending", nil, nil)]
            for (position, (state, error, record)) in states.enumerated() {
                try db.execute(sql: "INSERT INTO item VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                               arguments: [id, position, sources[position], state, state == "pending" ? 0 : 1, error, record])
            }
        }
        try old.close()

        let queue = try SQLiteJobQueue(path: path)
        let job = try XCTUnwrap(try queue.jobs().first)
        XCTAssertEqual(job.id, id)
        XCTAssertEqual(job.name, "old")
        XCTAssertEqual(job.origin, "/home/me/old.yaml")
        XCTAssertNil(job.pipeline, "the old store kept no pipeline text")
        XCTAssertEqual(job.total, 4)
        XCTAssertEqual(job.createdAt, Date(timeIntervalSince1970: 1_795_168_800))
        XCTAssertEqual(try queue.job(id: String(id.prefix(5))), job)
        XCTAssertEqual(try queue.status(job: id), JobStatus(total: 4, pending: 2, done: 1, failed: 1))
        var exported: [ResultRecord] = []
        try queue.records(job: id) { exported.append($0) }
        XCTAssertEqual(exported.map(\.source), ["/data/0.jpg", "/data/1.jpg"])
        XCTAssertEqual(exported.map(\.error), [nil, "truncated"])

        // Submitting the same pipeline and inputs finds the old job, which now keeps the text; it resumes
        // with the missing items.
        let resumed = try queue.submit(name: "old", pipeline: pipelineText, origin: "/home/me/old.yaml",
                                       items: sources.map { InputItem(path: $0) }, fresh: false)
        XCTAssertEqual(resumed.id, id)
        XCTAssertEqual(resumed.pipeline, pipelineText)
        let claims = try queue.claim(job: id, worker: "w", limit: 10, lease: 60)
        XCTAssertEqual(claims.map(\.position), [2, 3])
        XCTAssertEqual(claims.map(\.attempt), [1, 1])
        try queue.complete(job: id, worker: "w", results: claims.map {
            ItemResult(lease: $0.lease, records: [ResultRecord(source: $0.source, model: "efficientnet_lite0", topK: [])])
        })
        exported = []
        try queue.records(job: id) { exported.append($0) }
        XCTAssertEqual(exported.map(\.source), sources)
        XCTAssertEqual(try queue.status(job: id), JobStatus(total: 4, done: 3, failed: 1))
    }
}

/// Errors collected from concurrent threads.
final class UnsafeSendableBox: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [String] = []
    func add(_ value: String) { lock.lock(); collected.append(value); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return collected }
}
