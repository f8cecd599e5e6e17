import Foundation
import XCTest
import SluiceJobs
import SluicePipeline

/// A clock the checks move by hand, so leases expire when a check says so.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
}

/// What every `JobQueue` must do, as checks over `any JobQueue`. An implementation's tests run each
/// check against each way of opening it (see `SQLiteJobQueueTests`).
struct JobQueueConformance {
    /// A new, empty queue whose leases are measured by `clock`.
    let make: (TestClock) throws -> any JobQueue
    /// Two handles on one new, empty store, as two processes would open it, on the real clock.
    let makeShared: () throws -> (any JobQueue, any JobQueue)

    static let hour: TimeInterval = 3600

    static func items(_ count: Int, folder: String = "/data") -> [InputItem] {
        (0..<count).map { InputItem(path: String(format: "%@/%04d.jpg", folder, $0)) }
    }

    /// The records a worker writes for an item: `count` frames, each naming its item and frame.
    static func records(for claim: ClaimedItem, count: Int = 1, error: String? = nil) -> [ResultRecord] {
        (0..<count).map { frame in
            ResultRecord(source: claim.source, frameIndex: count > 1 ? frame : nil, model: "m",
                         topK: error == nil ? [Prediction(index: claim.position, label: "p\(claim.position)", score: 0.5)] : nil,
                         error: error)
        }
    }

    static func results(_ claims: [ClaimedItem]) -> [ItemResult] {
        claims.map { ItemResult(lease: $0.lease, records: records(for: $0)) }
    }

    static func allRecords(_ queue: any JobQueue, job: String) throws -> [ResultRecord] {
        var records: [ResultRecord] = []
        try queue.records(job: job) { records.append($0) }
        return records
    }

    func submitIsIdempotent() throws {
        let queue = try make(TestClock())
        let items = Self.items(5)
        let job = try queue.submit(name: "photos", pipeline: "name: photos\n", origin: "/p/photos.yaml", items: items, fresh: false)
        XCTAssertEqual(job.id, JobID.make(pipeline: "name: photos\n", sources: items.map(\.path)))
        XCTAssertEqual(job.pipeline, "name: photos\n", "the pipeline is kept by content")
        XCTAssertEqual(job.origin, "/p/photos.yaml")
        XCTAssertEqual(job.total, 5)
        let claimed = try queue.claim(job: job.id, worker: "w1", limit: 2, lease: Self.hour)
        try queue.complete(job: job.id, worker: "w1", results: Self.results(claimed))

        // The same text and inputs, from another file: the same job, with its progress.
        let again = try queue.submit(name: "photos", pipeline: "name: photos\n", origin: "/elsewhere.yaml", items: items, fresh: false)
        XCTAssertEqual(again, job)
        XCTAssertEqual(try queue.jobs(), [job])
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 5, pending: 3, done: 2))
        XCTAssertEqual(try queue.job(id: job.id), job)
        XCTAssertEqual(try queue.job(id: String(job.id.prefix(6))), job, "a unique prefix finds it")
        XCTAssertNil(try queue.job(id: "nothing"))

        // Another text or other inputs: another job.
        let edited = try queue.submit(name: "photos", pipeline: "name: photos\ntopk: 1\n", origin: "/p/photos.yaml", items: items, fresh: false)
        let fewer = try queue.submit(name: "photos", pipeline: "name: photos\n", origin: "/p/photos.yaml", items: Array(items.prefix(4)), fresh: false)
        XCTAssertEqual(Set([job.id, edited.id, fewer.id]).count, 3)
        XCTAssertEqual(Set(try queue.jobs().map(\.id)), Set([job.id, edited.id, fewer.id]))
    }

    /// Ids are the FNV-1a 64 hash the job store has always used (computed independently), so the jobs
    /// in an existing store keep theirs.
    func jobIDsAreUnchanged() {
        XCTAssertEqual(JobID.make(pipeline: "name: photos\n", sources: ["/data/a.jpg", "/data/b.jpg"]), "6d53b422f709c70c")
        XCTAssertEqual(JobID.make(pipeline: "x", sources: []), "08f0d807b58d20e5", "padded to 16 digits")
    }

    func ambiguousPrefixIsAnError() throws {
        let queue = try make(TestClock())
        // Seventeen ids in sixteen hex digits: two share their first digit.
        var byFirst: [Character: String] = [:]
        var shared: Character?
        for n in 0..<17 where shared == nil {
            let job = try queue.submit(name: "j", pipeline: "n: \(n)", origin: "", items: Self.items(1), fresh: false)
            if byFirst[job.id.first!] != nil { shared = job.id.first } else { byFirst[job.id.first!] = job.id }
        }
        let prefix = String(try XCTUnwrap(shared))
        XCTAssertThrowsError(try queue.job(id: prefix)) { error in
            guard case JobQueueError.ambiguousJobID(prefix, let matches)? = error as? JobQueueError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(matches.count, 2)
        }
    }

    func claimsComeInOrderUpToTheLimit() throws {
        let queue = try make(TestClock())
        let items = Self.items(10) + [InputItem(path: "/data/locked", listingError: "cannot list directory")]
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: items, fresh: false)
        let first = try queue.claim(job: job.id, worker: "w1", limit: 3, lease: Self.hour)
        XCTAssertEqual(first.map(\.position), [0, 1, 2])
        XCTAssertEqual(first.map(\.source), items[0..<3].map(\.path))
        XCTAssertEqual(first.map(\.attempt), [1, 1, 1])
        let second = try queue.claim(job: job.id, worker: "w2", limit: 4, lease: Self.hour)
        XCTAssertEqual(second.map(\.position), [3, 4, 5, 6], "claimed items are not handed out again")
        try queue.complete(job: job.id, worker: "w1", results: Self.results(first))
        let rest = try queue.claim(job: job.id, worker: "w1", limit: 100, lease: Self.hour)
        XCTAssertEqual(rest.map(\.position), [7, 8, 9, 10])
        XCTAssertEqual(rest.last?.input, items[10], "the listing error travels with the claim")
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w3", limit: 100, lease: Self.hour), [])
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w3", limit: 0, lease: Self.hour), [])

        // Released claims can be claimed again at once, lowest first.
        try queue.release(job: job.id, worker: "w2", leases: second.suffix(2).map(\.lease))
        let again = try queue.claim(job: job.id, worker: "w3", limit: 100, lease: Self.hour)
        XCTAssertEqual(again.map(\.position), [5, 6])
        XCTAssertEqual(again.map(\.attempt), [1, 1], "a claim given back unprocessed is no attempt")
        XCTAssertThrowsError(try queue.claim(job: "nope", worker: "w1", limit: 1, lease: Self.hour)) { error in
            XCTAssertEqual(error as? JobQueueError, .noSuchJob("nope"))
        }
    }

    /// Two workers on two handles (as two processes) claim and complete concurrently, many rounds: no
    /// item is handed to one while the other holds it, and every item is completed exactly once.
    func concurrentWorkersNeverShareAnItem() throws {
        let (a, b) = try makeShared()
        for round in 0..<3 {
            let job = try a.submit(name: "race", pipeline: "round \(round)", origin: "", items: Self.items(240), fresh: false)
            let ledger = Ledger(items: 240)
            DispatchQueue.concurrentPerform(iterations: 2) { n in
                let queue = n == 0 ? a : b
                let worker = "w\(n)"
                var generator = SystemRandomNumberGenerator()
                do {
                    while true {
                        let claims = try queue.claim(job: job.id, worker: worker, limit: Int.random(in: 1...7, using: &generator),
                                                     lease: Self.hour)
                        if claims.isEmpty { break }
                        ledger.claimed(claims.map(\.position), by: worker)
                        try queue.complete(job: job.id, worker: worker, results: Self.results(claims))
                        ledger.completed(claims.map(\.position))
                    }
                } catch {
                    ledger.problem("\(worker): \(error)")
                }
            }
            XCTAssertEqual(ledger.problems, [], "round \(round)")
            XCTAssertEqual(ledger.completions, [Int](repeating: 1, count: 240), "round \(round): each item completed once")
            XCTAssertEqual(try b.status(job: job.id), JobStatus(total: 240, done: 240))
            let records = try Self.allRecords(a, job: job.id)
            XCTAssertEqual(records.map(\.source), Self.items(240).map(\.path), "round \(round): one record per item, in order")
        }
    }

    func anExpiredLeaseGoesToAnotherWorkerAndTheFirstIsRefused() throws {
        let clock = TestClock()
        let queue = try make(clock)
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(4), fresh: false)
        let slow = try queue.claim(job: job.id, worker: "slow", limit: 2, lease: 10)
        clock.advance(5)
        let fastFirst = try queue.claim(job: job.id, worker: "fast", limit: 2, lease: 10)
        XCTAssertEqual(fastFirst.map(\.position), [2, 3])
        XCTAssertEqual(try queue.claim(job: job.id, worker: "fast", limit: 2, lease: 10), [], "leases live for 10 s")
        // Item 0's lease is extended, item 1's runs out and another worker takes the item.
        XCTAssertEqual(try queue.heartbeat(job: job.id, worker: "slow", leases: [slow[0].lease], lease: 10), [])
        clock.advance(6)
        let taken = try queue.claim(job: job.id, worker: "fast", limit: 10, lease: 10)
        XCTAssertEqual(taken.map(\.position), [1], "the expired lease is claimed again, no live one")
        XCTAssertEqual(taken.map(\.attempt), [2])
        XCTAssertEqual(try queue.status(job: job.id).workers, ["fast", "slow"])

        XCTAssertThrowsError(try queue.complete(job: job.id, worker: "slow", results: Self.results(slow))) { error in
            XCTAssertEqual(error as? JobQueueError, .leaseLost(job: job.id, positions: [1]))
        }
        XCTAssertEqual(try queue.status(job: job.id).done, 0, "a refused completion writes nothing, not even item 0")
        XCTAssertEqual(try Self.allRecords(queue, job: job.id), [])
        XCTAssertEqual(try queue.heartbeat(job: job.id, worker: "slow", leases: slow.map(\.lease), lease: 10), [slow[1].lease])
        XCTAssertThrowsError(try queue.fail(job: job.id, worker: "slow", lease: slow[1].lease, reason: .cancelled))

        try queue.complete(job: job.id, worker: "slow", results: Self.results([slow[0]]))
        try queue.complete(job: job.id, worker: "fast", results: Self.results(taken + fastFirst))
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 4, done: 4))
        XCTAssertEqual(try Self.allRecords(queue, job: job.id).map(\.topK?.first?.index), [0, 1, 2, 3])

        // A lease that ran out while nobody claimed the item still completes: no one else did the work.
        let late = try queue.submit(name: "j", pipeline: "late", origin: "", items: Self.items(1), fresh: false)
        let claim = try queue.claim(job: late.id, worker: "slow", limit: 1, lease: 10)
        clock.advance(60)
        XCTAssertEqual(try queue.status(job: late.id), JobStatus(total: 1, pending: 1), "an expired claim is pending")
        try queue.complete(job: late.id, worker: "slow", results: Self.results(claim))
        XCTAssertEqual(try queue.status(job: late.id), JobStatus(total: 1, done: 1))
    }

    func heartbeatsKeepALeaseAlive() throws {
        let clock = TestClock()
        let queue = try make(clock)
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(1), fresh: false)
        let claims = try queue.claim(job: job.id, worker: "w1", limit: 1, lease: 10)
        for beat in 0..<5 {
            clock.advance(8)
            XCTAssertEqual(try queue.heartbeat(job: job.id, worker: "w1", leases: claims.map(\.lease), lease: 10), [], "beat \(beat)")
            XCTAssertEqual(try queue.claim(job: job.id, worker: "w2", limit: 1, lease: 10), [], "beat \(beat)")
        }
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 1, claimed: 1, workers: ["w1"]))
        XCTAssertEqual(try queue.heartbeat(job: job.id, worker: "w2", leases: claims.map(\.lease), lease: 10), claims.map(\.lease),
                       "only the holder extends a lease")
        clock.advance(11)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w2", limit: 1, lease: 10).map(\.position), [0],
                       "without heartbeats the lease runs out")
    }

    func failRecordsTheReason() throws {
        let queue = try make(TestClock())
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(3), fresh: false)
        let claims = try queue.claim(job: job.id, worker: "w1", limit: 3, lease: Self.hour)
        try queue.fail(job: job.id, worker: "w1", lease: claims[0].lease, reason: .workerError("decoder crashed"))
        try queue.fail(job: job.id, worker: "w1", lease: claims[1].lease, reason: .unreadable("permission denied"))
        // A record carrying an error makes its item failed too (a bad image).
        try queue.complete(job: job.id, worker: "w1",
                           results: [ItemResult(lease: claims[2].lease, records: Self.records(for: claims[2], error: "truncated"))])
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 3, failed: 3))
        let records = try Self.allRecords(queue, job: job.id)
        XCTAssertEqual(records.map(\.source), claims.map(\.source))
        XCTAssertEqual(records.map(\.error), ["worker error: decoder crashed", "unreadable: permission denied", "truncated"])
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w2", limit: 3, lease: Self.hour), [], "failed items are finished")
        XCTAssertThrowsError(try queue.fail(job: job.id, worker: "w1", lease: claims[0].lease, reason: .cancelled),
                             "a finished item's lease is gone")
    }

    func cancelStopsClaims() throws {
        let queue = try make(TestClock())
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(4), fresh: false)
        let held = try queue.claim(job: job.id, worker: "w1", limit: 1, lease: Self.hour)
        XCTAssertFalse(try queue.isCancelled(job: job.id))
        try queue.cancel(job: job.id)
        XCTAssertTrue(try queue.isCancelled(job: job.id))
        XCTAssertNotNil(try queue.job(id: job.id)?.cancelledAt)
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w2", limit: 4, lease: Self.hour), [])
        // Work in flight still commits.
        try queue.complete(job: job.id, worker: "w1", results: Self.results(held))
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 4, pending: 3, done: 1))
        try queue.uncancel(job: job.id)
        XCTAssertFalse(try queue.isCancelled(job: job.id))
        XCTAssertEqual(try queue.claim(job: job.id, worker: "w2", limit: 4, lease: Self.hour).map(\.position), [1, 2, 3])
        XCTAssertTrue(try queue.isCancelled(job: "nope"), "a job that does not exist runs no more")
    }

    func statusCountsEachState() throws {
        let clock = TestClock()
        let queue = try make(clock)
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(8), fresh: false)
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 8, pending: 8))
        let a = try queue.claim(job: job.id, worker: "a", limit: 4, lease: 100)
        let b = try queue.claim(job: job.id, worker: "b", limit: 2, lease: 10)
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 8, pending: 2, claimed: 6, workers: ["a", "b"]))
        try queue.complete(job: job.id, worker: "a", results: [
            ItemResult(lease: a[0].lease, records: Self.records(for: a[0], count: 3)),
            ItemResult(lease: a[1].lease, records: Self.records(for: a[1], error: "bad")),
        ])
        try queue.release(job: job.id, worker: "a", leases: [a[2].lease])
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 8, pending: 3, claimed: 3, done: 1, failed: 1, workers: ["a", "b"]))
        clock.advance(11)
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 8, pending: 5, claimed: 1, done: 1, failed: 1, workers: ["a"]),
                       "b's leases ran out")
        XCTAssertEqual(try queue.abandon(job: job.id, worker: "a"), 1)
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 8, pending: 6, done: 1, failed: 1))
        XCTAssertEqual(try queue.claim(job: job.id, worker: "c", limit: 8, lease: 10).map(\.position), [2, 3, 4, 5, 6, 7],
                       "an abandoned claim is free at once")
        _ = b
    }

    func recordsStreamInPositionOrder() throws {
        let queue = try make(TestClock())
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(5), fresh: false)
        let claims = try queue.claim(job: job.id, worker: "w1", limit: 5, lease: Self.hour)
        // Completed out of order, in several transactions, an item with several records (a video's frames).
        try queue.complete(job: job.id, worker: "w1", results: [ItemResult(lease: claims[3].lease, records: Self.records(for: claims[3]))])
        try queue.complete(job: job.id, worker: "w1", results: [
            ItemResult(lease: claims[1].lease, records: Self.records(for: claims[1], count: 3)),
            ItemResult(lease: claims[0].lease, records: Self.records(for: claims[0])),
        ])
        var seen: [String] = []
        try queue.records(job: job.id) { seen.append("\($0.topK![0].index)/\($0.frameIndex ?? -1)") }
        XCTAssertEqual(seen, ["0/-1", "1/0", "1/1", "1/2", "3/-1"], "committed records only, by position, frames in order")
        // The body's error ends the stream and comes out.
        struct Stop: Error {}
        var count = 0
        XCTAssertThrowsError(try queue.records(job: job.id) { _ in count += 1; if count == 2 { throw Stop() } }) {
            XCTAssertTrue($0 is Stop)
        }
        XCTAssertEqual(count, 2)
    }

    /// Pages of finished items, by input position or in the order they finished, resume after a cursor.
    func finishedItemsPageByEitherOrder() throws {
        let queue = try make(TestClock())
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: Self.items(5), fresh: false)
        let claims = try queue.claim(job: job.id, worker: "w1", limit: 5, lease: Self.hour)
        try queue.complete(job: job.id, worker: "w1", results: [ItemResult(lease: claims[3].lease, records: Self.records(for: claims[3]))])
        try queue.fail(job: job.id, worker: "w1", lease: claims[4].lease, reason: .unreadable("gone"))
        try queue.complete(job: job.id, worker: "w1", results: [
            ItemResult(lease: claims[1].lease, records: Self.records(for: claims[1], count: 3)),
            ItemResult(lease: claims[0].lease, records: Self.records(for: claims[0], error: "truncated")),
        ])
        let byFinish = try queue.finished(job: job.id, order: .finish, after: 0, limit: 10)
        XCTAssertEqual(byFinish.map(\.position), [3, 4, 1, 0], "the order they finished in")
        XCTAssertEqual(byFinish.map(\.sequence), [1, 2, 3, 4])
        XCTAssertEqual(byFinish[1].error, "unreadable: gone")
        XCTAssertEqual(byFinish[1].records.map(\.error), ["unreadable: gone"], "a failed item without records has one error record")
        XCTAssertEqual(byFinish[2].records.map(\.frameIndex), [0, 1, 2])
        XCTAssertEqual(byFinish[3].error, "truncated")
        XCTAssertEqual(try queue.finished(job: job.id, order: .finish, after: 2, limit: 1).map(\.position), [1], "resumes after a sequence")
        XCTAssertEqual(try queue.finished(job: job.id, order: .input, after: -1, limit: 2).map(\.position), [0, 1])
        XCTAssertEqual(try queue.finished(job: job.id, order: .input, after: 1, limit: 10).map(\.position), [3, 4], "pending items are skipped")
        XCTAssertEqual(try queue.finished(job: "nope", order: .input, after: -1, limit: 10), [])
    }

    func freshResubmissionStartsOverAndVoidsLeases() throws {
        let clock = TestClock()
        let queue = try make(clock)
        let items = Self.items(4)
        let job = try queue.submit(name: "j", pipeline: "p", origin: "", items: items, fresh: false)
        let first = try queue.claim(job: job.id, worker: "w1", limit: 2, lease: Self.hour)
        try queue.complete(job: job.id, worker: "w1", results: Self.results(first))
        let held = try queue.claim(job: job.id, worker: "w1", limit: 2, lease: Self.hour)
        try queue.cancel(job: job.id)
        clock.advance(1)

        let fresh = try queue.submit(name: "j", pipeline: "p", origin: "", items: items, fresh: true)
        XCTAssertEqual(fresh.id, job.id)
        XCTAssertGreaterThan(fresh.createdAt, job.createdAt)
        XCTAssertNil(fresh.cancelledAt)
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 4, pending: 4))
        XCTAssertEqual(try Self.allRecords(queue, job: job.id), [])
        XCTAssertThrowsError(try queue.complete(job: job.id, worker: "w1", results: Self.results(held))) { error in
            XCTAssertEqual(error as? JobQueueError, .leaseLost(job: job.id, positions: [2, 3]))
        }
        // Even claimed again by the same worker, the old claims stay void.
        let again = try queue.claim(job: job.id, worker: "w1", limit: 4, lease: Self.hour)
        XCTAssertEqual(again.map(\.position), [0, 1, 2, 3])
        XCTAssertThrowsError(try queue.complete(job: job.id, worker: "w1", results: Self.results(held)))
        try queue.complete(job: job.id, worker: "w1", results: Self.results(again))
        XCTAssertEqual(try queue.status(job: job.id), JobStatus(total: 4, done: 4))
    }
}

/// What the concurrent workers did, kept under a lock.
private final class Ledger: @unchecked Sendable {
    private let lock = NSLock()
    private var held: Set<Int> = []
    private var counts: [Int]
    private var found: [String] = []

    init(items: Int) { counts = [Int](repeating: 0, count: items) }

    func claimed(_ positions: [Int], by worker: String) {
        lock.withLock {
            for position in positions where !held.insert(position).inserted {
                found.append("\(worker) claimed \(position) while the other held it")
            }
        }
    }

    func completed(_ positions: [Int]) {
        lock.withLock {
            for position in positions { held.remove(position); counts[position] += 1 }
        }
    }

    func problem(_ text: String) { lock.withLock { found.append(text) } }
    var problems: [String] { lock.withLock { found } }
    var completions: [Int] { lock.withLock { counts } }
}
