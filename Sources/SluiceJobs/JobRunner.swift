import Foundation
import SluicePipeline

/// One worker of a job: claims the job's items from its queue a slice at a time, runs each slice through
/// the pipeline, and completes the items through the queue (records and states in one transaction every
/// `commitEvery` items, and at least every two seconds), keeping its leases alive meanwhile. Killed at
/// any point and run again, a job resumes with exactly the missing items; two runs of one job share its
/// items and never record one twice. The sink files are derived from what is committed.
public final class JobRunner {
    public let queue: any JobQueue
    public let jobID: String
    /// Who holds the claims: `host:pid` by default, so a later run on this machine can tell that a
    /// killed run's claims have no one working on them.
    public let worker: String
    /// How long a claim holds without a heartbeat (heartbeats come four times per lease).
    public var lease: TimeInterval = 60
    /// Items claimed at a time: the slice one pass of the executor runs.
    public var claimSize = 256
    /// Told when the run waits for items that other runs hold.
    public var notice: (String) -> Void = { _ in }
    /// Whether `run` waits for the items other runs hold (or that wait to be tried again) until the job
    /// is finished; false: it returns when nothing can be claimed now (a worker with other jobs to do).
    public var waitsForOtherRuns = true

    public init(queue: any JobQueue, jobID: String, worker: String = JobRunner.localWorker) {
        self.queue = queue; self.jobID = jobID; self.worker = worker
    }

    public static let localWorker = "\(hostName):\(getpid())"

    static var hostName: String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// True when `worker` names a process on this machine that no longer exists.
    static func isGone(worker: String) -> Bool {
        guard let colon = worker.lastIndex(of: ":"), worker[..<colon] == hostName,
              let pid = pid_t(worker[worker.index(after: colon)...]), pid > 0, pid != getpid() else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    public struct Summary: Sendable {
        /// Items this run completed (successes and failures).
        public var items = 0
        public var failures = 0
        /// Frames that went through the model.
        public var frames = 0
        public var seconds = 0.0
        /// The run stopped before the job was finished: `shouldStop` said so, or the job was cancelled.
        public var stopped = false
        public var cancelled = false
        /// Items this run processed whose leases another run had taken over (that run records them).
        public var lostItems = 0
        public var itemsPerSecond: Double { seconds > 0 ? Double(items) / seconds : 0 }
        public var framesPerSecond: Double { seconds > 0 ? Double(frames) / seconds : 0 }
    }

    /// Works on the job until no item is left to do, or until `shouldStop` (asked after each item) or a
    /// cancellation (looked up every second) stops it: then the items in flight finish and are
    /// committed, and the claims not started are given back. When the only items left are held by other
    /// runs, it waits for them to finish or for their leases to run out, so a run that returns without
    /// stopping leaves the job finished. `observers` see one run over the items left at the start
    /// (the executor runs once per slice of claims; its events are renumbered across slices).
    public func run(executor: PipelineExecutor, commitEvery: Int, observers: [PipelineObserver] = [],
                    shouldStop: @escaping () -> Bool = { false }) throws -> Summary {
        let start = Date()
        var summary = Summary()
        let events = SliceEvents(observers: observers, total: try queue.status(job: jobID).remaining)
        var lastCancelCheck = Date.distantPast
        func stopRequested() -> Bool {
            if shouldStop() { return true }
            if Date().timeIntervalSince(lastCancelCheck) >= 1 {
                lastCancelCheck = Date()
                summary.cancelled = (try? queue.isCancelled(job: jobID)) ?? false
            }
            return summary.cancelled
        }
        let keeper = LeaseKeeper(queue: queue, jobID: jobID, worker: worker, lease: lease)
        defer { keeper.stop() }
        try abandonGoneWorkers()
        var waiting = false
        while true {
            if stopRequested() { summary.stopped = true; break }
            let claims = try queue.claim(job: jobID, worker: worker, limit: claimSize, lease: lease)
            if claims.isEmpty {
                if try queue.isCancelled(job: jobID) { summary.cancelled = true; summary.stopped = true; break }
                let status = try queue.status(job: jobID)
                if status.remaining == 0 { break }
                if try abandonGoneWorkers() > 0 { continue }
                if !waitsForOtherRuns { break }
                if !waiting {
                    waiting = true
                    notice(status.claimed > 0
                        ? "job \(jobID): waiting for \(status.claimed) items that other runs hold (\(status.workers.joined(separator: ", ")))"
                        : "job \(jobID): waiting for \(status.pending) items to be tried again")
                }
                queue.waitForChange(timeout: 0.5)
                continue
            }
            waiting = false
            keeper.hold(claims.map(\.lease))
            let sink = CommittingSink(queue: queue, jobID: jobID, worker: worker, claims: claims,
                                      commitEvery: commitEvery, keeper: keeper)
            let pass: PipelineExecutor.Summary
            do {
                pass = try executor.run(claims.map(\.input), sink: sink, observers: [events], shouldStop: stopRequested)
                try sink.close()
            } catch {
                try? queue.release(job: jobID, worker: worker, leases: sink.uncommitted)
                keeper.drop(claims.map(\.lease))
                throw error
            }
            try queue.release(job: jobID, worker: worker, leases: sink.uncommitted)
            keeper.drop(claims.map(\.lease))
            events.sliceEnded(pass)
            summary.items += pass.items
            summary.failures += pass.failures
            summary.frames += pass.frames
            summary.lostItems += sink.lost
            if pass.stopped { summary.stopped = true; break }
        }
        events.finish()
        summary.cancelled = summary.cancelled && summary.stopped
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }

    /// Gives back the claims of runs on this machine that were killed. Returns how many.
    @discardableResult
    func abandonGoneWorkers() throws -> Int {
        try queue.status(job: jobID).workers.filter(Self.isGone(worker:)).reduce(0) { count, gone in
            count + (try queue.abandon(job: jobID, worker: gone))
        }
    }

    /// Writes the committed records to each sink file, replacing it atomically (each sink writes a
    /// temporary of its own, renamed over the file when complete), so a reader never sees a half-written
    /// file, two runs of a job may export at once, and a resumed run rewrites it whole. When a write
    /// fails (a full disk, a read-only folder) every sink file is left as it was, with no temporary.
    public func exportSinks(jsonl: String?, csv: String?, topK: Int, masks: Bool = false, clips: Bool = false) throws {
        let paths = [jsonl, csv].compactMap { $0 }
        guard !paths.isEmpty else { return }
        var sinks: [RecordSink] = []
        do {
            for path in paths { sinks.append(try Sinks.open(path: path, topK: topK, masks: masks, clips: clips)) }
            try queue.records(job: jobID) { record in
                for sink in sinks { try sink.write(record) }
            }
            for (index, sink) in sinks.enumerated() {
                do { try sink.close() } catch { sinks.removeFirst(index + 1); throw error }
            }
        } catch {
            for sink in sinks { sink.discard() }
            throw error
        }
    }
}

/// An item sink over one slice of claims: the n-th item written is the n-th claim. It completes the
/// items through the queue every `commitEvery` items, and at least every two seconds so slow items such
/// as long videos are not held.
public final class CommittingSink: ItemSink {
    let queue: any JobQueue
    let jobID: String
    let worker: String
    let claims: [ClaimedItem]
    let commitEvery: Int
    let keeper: LeaseKeeper
    private var buffer: [ItemResult] = []
    private var lastCommit = Date()
    /// Claims completed (or lost) so far: a prefix of `claims`.
    private(set) var finished = 0
    /// Items whose lease another worker took over before they were committed.
    private(set) var lost = 0

    init(queue: any JobQueue, jobID: String, worker: String, claims: [ClaimedItem], commitEvery: Int, keeper: LeaseKeeper) {
        self.queue = queue; self.jobID = jobID; self.worker = worker; self.claims = claims
        self.commitEvery = max(1, commitEvery); self.keeper = keeper
    }

    /// The claims neither completed nor lost, to give back.
    var uncommitted: [Lease] { claims[finished...].map(\.lease) }

    public func write(item index: Int, records: [ResultRecord]) throws {
        guard index == finished + buffer.count, index < claims.count else {
            throw JobRunnerError.outOfOrder(item: index, expected: finished + buffer.count)
        }
        buffer.append(ItemResult(lease: claims[index].lease, records: records))
        if buffer.count >= commitEvery || Date().timeIntervalSince(lastCommit) >= 2 { try flush() }
    }

    public func close() throws { try flush() }

    private func flush() throws {
        lastCommit = Date()
        var results = buffer
        while !results.isEmpty {
            do {
                try queue.complete(job: jobID, worker: worker, results: results)
                break
            } catch JobQueueError.leaseLost(_, let positions) {
                // Another run took these items over after our leases ran out and records them itself;
                // the rest are still ours.
                let gone = Set(positions)
                lost += gone.count
                results.removeAll { gone.contains($0.lease.position) }
            }
        }
        keeper.drop(buffer.map(\.lease))
        finished += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }
}

public enum JobRunnerError: Error, CustomStringConvertible {
    case outOfOrder(item: Int, expected: Int)
    public var description: String {
        switch self {
        case .outOfOrder(let item, let expected): "item \(item) written where item \(expected) was due"
        }
    }
}

/// Extends the leases a runner holds, from its own thread, four times per lease.
final class LeaseKeeper: @unchecked Sendable {
    private let lock = NSLock()
    private var held: Set<Lease> = []
    private var stopped = false
    private let wake = DispatchSemaphore(value: 0)

    init(queue: any JobQueue, jobID: String, worker: String, lease: TimeInterval) {
        let thread = Thread { [self] in
            while true {
                _ = wake.wait(timeout: .now() + lease / 4)
                let leases: [Lease]? = lock.withLock { stopped ? nil : Array(held) }
                guard let leases else { return }
                if leases.isEmpty { continue }
                // A failed heartbeat (the store busy past its timeout) is retried at the next beat.
                guard let gone = try? queue.heartbeat(job: jobID, worker: worker, leases: leases, lease: lease) else { continue }
                lock.withLock { held.subtract(gone) }
            }
        }
        thread.name = "sluice.leases"
        thread.start()
    }

    func hold(_ leases: [Lease]) { lock.withLock { held.formUnion(leases) } }
    func drop(_ leases: [Lease]) { lock.withLock { held.subtract(leases) } }

    func stop() {
        lock.withLock { stopped = true }
        wake.signal()
    }
}

/// Passes the events of the executor's runs over successive slices on as those of one run: one
/// `started` with the items left at the start, item indexes and progress counted across slices, and one
/// `finished` with the slices' summaries added up.
final class SliceEvents: PipelineObserver, @unchecked Sendable {
    private let observers: [PipelineObserver]
    private let total: Int
    private let lock = NSLock()
    private var itemsBefore = 0, failuresBefore = 0
    private var combined: PipelineExecutor.Summary?

    init(observers: [PipelineObserver], total: Int) {
        self.observers = observers
        self.total = total
        for observer in observers { observer.observe(.started(items: total)) }
    }

    func observe(_ event: PipelineEvent) {
        let (items, failures) = lock.withLock { (itemsBefore, failuresBefore) }
        let passed: PipelineEvent
        switch event {
        case .started, .finished: return
        case .item(let index, let records, let error): passed = .item(index: items + index, records: records, error: error)
        case .progress(let done, let failed, _): passed = .progress(done: items + done, failed: failures + failed, total: total)
        case .batch, .queueDepth: passed = event
        }
        for observer in observers { observer.observe(passed) }
    }

    func sliceEnded(_ pass: PipelineExecutor.Summary) {
        lock.withLock {
            itemsBefore += pass.items
            failuresBefore += pass.failures
            guard var sum = combined else { combined = pass; return }
            sum.items += pass.items
            sum.failures += pass.failures
            sum.frames += pass.frames
            sum.seconds += pass.seconds
            sum.stopped = sum.stopped || pass.stopped
            sum.mostItemsInFlight = max(sum.mostItemsInFlight, pass.mostItemsInFlight)
            sum.mostFramesDecoded = max(sum.mostFramesDecoded, pass.mostFramesDecoded)
            sum.mostSessionsOpen = max(sum.mostSessionsOpen, pass.mostSessionsOpen)
            combined = sum
        }
    }

    /// Sends `finished` once, when any slice ran (an executor summary exists only from a run).
    func finish() {
        guard let summary = lock.withLock({ combined }) else { return }
        for observer in observers { observer.observe(.finished(summary)) }
    }
}
