import Foundation
import SluicePipeline

/// A job's items as a queue shared by any number of workers (threads, processes): a worker claims the
/// lowest pending items for a lease, keeps the lease alive with heartbeats while it works, and completes
/// them, the records and the items' states in one transaction. A completion whose lease was lost (it
/// expired and another worker claimed the item, or the job was submitted again with `fresh`) is refused
/// whole, so no item is ever recorded twice.
///
/// The methods are synchronous: the pipeline's writer is a plain thread. An implementation over a
/// network database bridges to its asynchronous driver inside.
public protocol JobQueue: Sendable {
    /// Creates the job for this pipeline text and these inputs, all items pending, or returns the
    /// existing one (its id is `JobID.make(pipeline:sources:)`, so submitting again resumes it); `fresh`
    /// deletes an existing one first, which also voids every lease on it.
    func submit(name: String, pipeline: String, origin: String, items: [InputItem], fresh: Bool) throws -> Job

    /// Claims up to `limit` items, lowest positions first: pending ones, and claimed ones whose lease
    /// expired. Each claim holds for `lease` seconds unless extended. A cancelled job yields nothing.
    func claim(job: String, worker: String, limit: Int, lease: TimeInterval) throws -> [ClaimedItem]

    /// Extends these leases by `lease` seconds from now; returns those that were lost (not extended).
    func heartbeat(job: String, worker: String, leases: [Lease], lease: TimeInterval) throws -> [Lease]

    /// Records the items' records and states in one transaction: an item with a record that carries an
    /// error is failed, any other done. Throws `JobQueueError.leaseLost`, writing nothing, if any of the
    /// leases was lost (a lease that expired but that nobody claimed since still counts as held).
    func complete(job: String, worker: String, results: [ItemResult]) throws

    /// Records an item as failed without records of its own, for `reason`; refused like `complete`.
    func fail(job: String, worker: String, lease: Lease, reason: FailureReason) throws

    /// Gives claims back unprocessed (a run stopped): the items can be claimed again at once. Leases
    /// already lost are skipped.
    func release(job: String, worker: String, leases: [Lease]) throws

    /// Gives back every claim `worker` holds on the job, for a worker known to be gone (its process
    /// died), so its items need not wait for their leases to expire. Returns how many it gave back.
    func abandon(job: String, worker: String) throws -> Int

    /// Marks a job cancelled (claims yield nothing; a run in progress stops after the items in flight).
    func cancel(job: String) throws
    func uncancel(job: String) throws
    /// True for a cancelled job, and for one that does not exist.
    func isCancelled(job: String) throws -> Bool

    func status(job: String) throws -> JobStatus
    /// Every job, newest first.
    func jobs() throws -> [Job]
    /// The job with this id or, failing that, the one job whose id starts with it; nil if none.
    /// Throws `JobQueueError.ambiguousJobID` when the prefix fits several.
    func job(id: String) throws -> Job?

    /// Calls `body` with the job's committed records in input order (an item's own records in the order
    /// they were written), reading them as it goes rather than loading the job. An item failed through
    /// `fail` yields one error record for its source with an empty model.
    func records(job: String, _ body: (ResultRecord) throws -> Void) throws

    /// Up to `limit` finished items (done or failed) with their records, a page at a time: in input
    /// order after position `cursor`, or in the order they finished after sequence number `cursor`
    /// (sequence numbers count a job's finished items from 1, so a reader that kept the last one it saw
    /// resumes exactly where it stopped). Start with -1 (input) or 0 (finish order).
    func finished(job: String, order: FinishedOrder, after cursor: Int, limit: Int) throws -> [FinishedItem]

    /// The jobs a worker could work on: not cancelled, with items not finished; oldest first.
    func openJobs() throws -> [Job]

    /// Returns when the queue may have changed (a job submitted, items given back or finished, a job
    /// cancelled), or after `timeout` seconds. A queue that cannot be told of changes sleeps `timeout`:
    /// the caller looks again either way.
    func waitForChange(timeout: TimeInterval)
}

extension JobQueue {
    public func openJobs() throws -> [Job] {
        try jobs().filter { $0.cancelledAt == nil }.filter { try status(job: $0.id).remaining > 0 }.reversed()
    }

    public func waitForChange(timeout: TimeInterval) {
        Thread.sleep(forTimeInterval: max(0, timeout))
    }
}

public enum FinishedOrder: Sendable { case input, finish }

/// An item that is done or failed, as a page of `JobQueue.finished` returns it.
public struct FinishedItem: Sendable, Equatable {
    /// Its place in the order items finished, from 1.
    public var sequence: Int
    public var position: Int
    public var source: String
    /// Its records (an item failed through `fail` has one error record with an empty model).
    public var records: [ResultRecord]
    public var error: String?

    public init(sequence: Int, position: Int, source: String, records: [ResultRecord], error: String?) {
        self.sequence = sequence; self.position = position; self.source = source; self.records = records; self.error = error
    }
}

/// A job is identified by its pipeline text and its inputs, so running the same command again resumes
/// it: FNV-1a 64 of both, as the ids of the jobs in existing stores were made.
public enum JobID {
    public static func make(pipeline: String, sources: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array((pipeline + "\u{0}" + sources.joined(separator: "\u{0}")).utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}

public struct Job: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The pipeline definition the job was submitted with; nil for jobs submitted before the store
    /// kept it.
    public var pipeline: String?
    /// Where the pipeline came from (its file), for display.
    public var origin: String
    public var createdAt: Date
    public var total: Int
    public var cancelledAt: Date?

    public init(id: String, name: String, pipeline: String?, origin: String, createdAt: Date, total: Int,
                cancelledAt: Date? = nil) {
        self.id = id; self.name = name; self.pipeline = pipeline; self.origin = origin
        self.createdAt = createdAt; self.total = total; self.cancelledAt = cancelledAt
    }
}

/// One claim: which item, under which lease. `position` and `token` identify the claim to the queue.
public struct Lease: Sendable, Hashable {
    public var position: Int
    public var token: String
    public init(position: Int, token: String) { self.position = position; self.token = token }
}

public struct ClaimedItem: Sendable, Equatable {
    public var lease: Lease
    public var source: String
    /// Why the input could not even be listed (an unreadable folder), kept for the record.
    public var listingError: String?
    /// 1 for the first claim of the item, 2 when a claim before this one was given up, and so on.
    public var attempt: Int
    public var expiresAt: Date

    public var position: Int { lease.position }
    public var input: InputItem { InputItem(path: source, listingError: listingError) }

    public init(lease: Lease, source: String, listingError: String?, attempt: Int, expiresAt: Date) {
        self.lease = lease; self.source = source; self.listingError = listingError
        self.attempt = attempt; self.expiresAt = expiresAt
    }
}

public struct ItemResult: Sendable {
    public var lease: Lease
    public var records: [ResultRecord]
    public init(lease: Lease, records: [ResultRecord]) { self.lease = lease; self.records = records }
}

/// Why an item failed outside its records.
public enum FailureReason: Sendable, Equatable, CustomStringConvertible {
    case unreadable(String)
    case cancelled
    case workerError(String)

    public var kind: String {
        switch self {
        case .unreadable: "unreadable"
        case .cancelled: "cancelled"
        case .workerError: "workerError"
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let why): "unreadable: \(why)"
        case .cancelled: "cancelled"
        case .workerError(let why): "worker error: \(why)"
        }
    }
}

public struct JobStatus: Sendable, Equatable {
    public var total = 0
    /// Waiting to be claimed, including claims whose lease expired.
    public var pending = 0
    /// Held under a live lease: being worked on.
    public var claimed = 0
    public var done = 0
    public var failed = 0
    /// Who holds the live leases.
    public var workers: [String] = []

    public init(total: Int = 0, pending: Int = 0, claimed: Int = 0, done: Int = 0, failed: Int = 0, workers: [String] = []) {
        self.total = total; self.pending = pending; self.claimed = claimed; self.done = done; self.failed = failed
        self.workers = workers
    }

    /// Items not finished (pending or claimed).
    public var remaining: Int { pending + claimed }
}

public enum JobQueueError: Error, Equatable, CustomStringConvertible {
    case noSuchJob(String)
    case ambiguousJobID(String, matches: [String])
    /// The leases of these positions were lost; nothing of the call was written.
    case leaseLost(job: String, positions: [Int])

    public var description: String {
        switch self {
        case .noSuchJob(let id): "no job '\(id)'"
        case .ambiguousJobID(let prefix, let matches): "job id '\(prefix)' fits \(matches.count) jobs: \(matches.joined(separator: ", "))"
        case .leaseLost(let job, let positions): "job \(job): the leases of items \(positions.map(String.init).joined(separator: ", ")) were lost"
        }
    }
}
