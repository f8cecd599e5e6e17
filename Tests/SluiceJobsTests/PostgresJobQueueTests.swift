import Foundation
import Logging
import NIOPosix
import PostgresNIO
import XCTest
import SluiceJobs
import SluicePostgres
import SluiceTestSupport

/// The conformance checks against the PostgreSQL queue on a real server: `scripts/test` starts a
/// throwaway cluster (`scripts/postgres`) and names it in SLUICE_TEST_POSTGRES_URL. Each check gets a
/// database of its own, dropped afterwards.
/// The test server `scripts/test` starts (`scripts/postgres`), named in SLUICE_TEST_POSTGRES_URL and
/// SLUICE_TEST_POSTGRES_DIR; each test gets databases of its own, dropped afterwards.
enum PostgresTestServer {
    static var url: String? { ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES_URL"] }
    static var folder: String? { ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES_DIR"] }

    /// A new, empty database on the test server; its URL.
    static func temporaryDatabase(for test: XCTestCase) throws -> String {
        guard let url else {
            throw TestResources.missing("no PostgreSQL server: set SLUICE_TEST_POSTGRES_URL (scripts/test starts one)")
        }
        let name = "sluice_test_\(UUID().uuidString.prefix(8).lowercased())"
        try administer(url, "CREATE DATABASE \(name)")
        test.addTeardownBlock { try? administer(url, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        var components = URLComponents(string: url)!
        components.path = "/" + name
        return components.string!
    }

    /// Runs `sql` on its own connection; the rows' first columns as text.
    @discardableResult
    static func administer(_ url: String, _ sql: String) throws -> [String] {
        let location = try PostgresLocation(url: url)
        let connection = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(),
                                                        configuration: location.configuration, id: 0,
                                                        logger: Logger(label: "test")).wait()
        defer { _ = try? connection.close().wait() }
        return try connection.simpleQuery(sql).wait().map { try $0.decode(String.self) }
    }

    /// `scripts/postgres ARGUMENTS` (restart), started.
    static func script(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = TestResources.repository.appendingPathComponent("scripts/postgres")
        process.arguments = arguments
        try process.run()
        return process
    }
}

/// The conformance checks against the PostgreSQL queue on a real server, and what only it does:
/// retries with backoff, attempts that run out, LISTEN/NOTIFY, reconnecting.
final class PostgresJobQueueTests: XCTestCase {
    func temporaryDatabase() throws -> String { try PostgresTestServer.temporaryDatabase(for: self) }

    func forEachStore(_ check: (JobQueueConformance) throws -> Void) throws {
        let conformance = JobQueueConformance(
            // Failures final at once, as in the SQLite store; retries have checks of their own below.
            make: { clock in try PostgresJobQueue(url: try self.temporaryDatabase(), retry: Self.noRetry, clock: { clock.now }) },
            makeShared: {
                let url = try self.temporaryDatabase()
                return (try PostgresJobQueue(url: url, retry: Self.noRetry), try PostgresJobQueue(url: url, retry: Self.noRetry))
            })
        try check(conformance)
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

    static let noRetry = RetryPolicy.failuresFinal

    /// An item whose records carry an error waits out a doubling pause and is claimed again, its failed
    /// records not kept; its last attempt's failure is recorded. The other items are not held up.
    func testAFailingItemIsTriedAgainAfterABackoffThenRecordedAsFailed() throws {
        let clock = TestClock()
        let queue = try PostgresJobQueue(url: try temporaryDatabase(), retry: RetryPolicy(maxAttempts: 3, firstDelay: 10, longestDelay: 100),
                                         clock: { clock.now })
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: JobQueueConformance.items(3), fresh: false)
        func finish(_ claims: [ClaimedItem], error: String) throws {
            try queue.complete(job: job.id, worker: "w", results: claims.map { claim in
                ItemResult(lease: claim.lease, records: JobQueueConformance.records(for: claim, error: claim.position == 0 ? error : nil))
            })
        }
        let first = try queue.claim(job: job.id, worker: "w", limit: 2, lease: 60)
        XCTAssertEqual(first.map(\.position), [0, 1])
        try finish(first, error: "cannot decode (1)")
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 3, pending: 2, done: 1))
        XCTAssertEqual(try JobQueueConformance.allRecords(queue, job: job.id).map(\.source), ["/data/0001.jpg"],
                       "a failure with attempts left keeps no record")
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60).map(\.position), [2],
                       "the failed item waits; the others go on")
        clock.advance(9.9)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60), [], "10 s before the second attempt")
        clock.advance(0.2)
        let second = try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60)
        XCTAssertEqual(second.map(\.position), [0])
        XCTAssertEqual(second.map(\.attempt), [2])
        try finish(second, error: "cannot decode (2)")
        clock.advance(19.9)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60), [], "20 s before the third")
        clock.advance(0.2)
        let third = try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60)
        XCTAssertEqual(third.map(\.attempt), [3])
        try finish(third, error: "cannot decode (3)")
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 3, claimed: 1, done: 1, failed: 1, workers: ["w"]), "item 2 is still held")
        clock.advance(1000)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w", limit: 5, lease: 60).map(\.position), [2],
                       "only item 2's expired claim is left; item 0 is finished")
        let records = try JobQueueConformance.allRecords(queue, job: job.id)
        XCTAssertEqual(records.map(\.source), ["/data/0000.jpg", "/data/0001.jpg"])
        XCTAssertEqual(records.first?.error, "cannot decode (3)", "the last attempt's error is recorded")
        XCTAssertEqual(try queue.finished(job: job.id, order: .finish, after: 0, limit: 10).map(\.position), [1, 0])
    }

    /// An item whose workers all die with it (each lease runs out) is failed once its attempts are spent,
    /// and the worker that held it last can no longer record it.
    func testAnItemWhoseLeasesKeepRunningOutIsFailedAfterTheLastAttempt() throws {
        let clock = TestClock()
        let queue = try PostgresJobQueue(url: try temporaryDatabase(), retry: RetryPolicy(maxAttempts: 2), clock: { clock.now })
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: JobQueueConformance.items(2), fresh: false)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w1", limit: 1, lease: 10).map(\.attempt), [1])
        clock.advance(11)
        let second = try queue.claim(job: job.id, worker: "w2", limit: 1, lease: 10)
        XCTAssertEqual(second.map(\.position), [0])
        XCTAssertEqual(second.map(\.attempt), [2])
        clock.advance(11)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w3", limit: 5, lease: 10).map(\.position), [1])
        XCTAssertEqual(try queue.status(job: job.id).failed, 1)
        let records = try JobQueueConformance.allRecords(queue, job: job.id)
        XCTAssertEqual(records.map(\.source), ["/data/0000.jpg"])
        XCTAssertTrue(records.first?.error?.hasPrefix("gave up after 2 attempt(s): the lease ran out") == true, "\(records)")
        XCTAssertThrowsError(try queue.complete(job: job.id, worker: "w2", results: JobQueueConformance.results(second))) { error in
            XCTAssertEqual(error as? JobQueueError, .leaseLost(job: job.id, positions: [0]))
        }
    }

    /// A waiting worker is woken by another process's submission (LISTEN/NOTIFY), long before its timeout.
    func testAWaitingWorkerWakesWhenWorkIsSubmitted() throws {
        let url = try temporaryDatabase()
        let waiting = try PostgresJobQueue(url: url), submitting = try PostgresJobQueue(url: url)
        waiting.waitForChange(timeout: 0)  // listening from here on
        let woke = expectation(description: "woken")
        let started = Date()
        nonisolated(unsafe) var waited = 0.0
        Thread.detachNewThread {
            waiting.waitForChange(timeout: 60)
            waited = Date().timeIntervalSince(started)
            woke.fulfill()
        }
        Thread.sleep(forTimeInterval: 0.3)
        _ = try submitting.submit(name: "j", pipeline: "p", origin: "", items: JobQueueConformance.items(1), fresh: false)
        wait(for: [woke], timeout: 60)
        XCTAssertLessThan(waited, 30, "woken by the NOTIFY, not by the 60 s timeout")
        XCTAssertEqual(try waiting.openJobs().map(\.name), ["j"])
    }

    /// The server restarts while a worker holds claims: the calls made while it is down wait and
    /// reconnect, the claims still hold, the completion commits, nothing is lost or recorded twice.
    func testCallsReconnectWhenTheServerRestarts() throws {
        guard let folder = PostgresTestServer.folder else {
            throw TestResources.missing("SLUICE_TEST_POSTGRES_DIR not set: scripts/test names the cluster it starts")
        }
        let queue = try PostgresJobQueue(url: try temporaryDatabase(), reconnectTimeout: 60)
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: JobQueueConformance.items(4), fresh: false)
        let claims = try queue.claim(job: job.id, worker: "w", limit: 4, lease: 600)
        let restart = try PostgresTestServer.script(["restart", folder, "2"])
        Thread.sleep(forTimeInterval: 1)  // stopped by now, back in about 2 s
        try queue.complete(job: job.id, worker: "w", results: JobQueueConformance.results(Array(claims.prefix(2))))
        restart.waitUntilExit()
        XCTAssertEqual(restart.terminationStatus, 0)
        try queue.complete(job: job.id, worker: "w", results: JobQueueConformance.results(Array(claims.suffix(2))))
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 4, done: 4))
        XCTAssertEqual(try JobQueueConformance.allRecords(queue, job: job.id).map(\.source), JobQueueConformance.items(4).map(\.path))
    }

    /// Processes starting together on a new database all open it: the migrations are applied once.
    func testQueuesOpenedTogetherOnANewDatabaseAllOpen() throws {
        for _ in 0..<5 {
            let url = try temporaryDatabase()
            let failures = UnsafeSendableBox()
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                do { _ = try PostgresJobQueue(url: url).jobs() } catch { failures.add("\(error)") }
            }
            XCTAssertEqual(failures.values, [])
        }
    }

    func testBadURLsSayWhatIsWrong() {
        for (url, message) in [("mysql://u@h/d", "expected postgres://USER@HOST[:PORT]/DATABASE"),
                               ("postgres://h/d", "no user name"), ("postgres://u@h", "no database name"),
                               ("postgres://u@h/d?sslmode=verify-full", "sslmode 'verify-full' is not disable or require")] {
            XCTAssertThrowsError(try PostgresLocation(url: url)) { error in
                XCTAssertEqual("\(error)", "queue URL '\(url)': \(message)")
            }
        }
        XCTAssertEqual(try PostgresLocation(url: "postgres://u:secret@h:5433/d").description, "postgres://u:***@h:5433/d")
    }
}
