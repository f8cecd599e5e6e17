import Foundation
import SluicePipeline

/// Resumable runs over a job's items. The records of each batch are committed atomically with their
/// items' states; the sink files are derived from what is committed. Killed at any point and run
/// again, a job resumes with exactly the missing items, and its sink files hold one record per item.
public struct JobRunner {
    public let store: JobStore
    public let jobID: String

    public init(store: JobStore, jobID: String) { self.store = store; self.jobID = jobID }

    /// The items still to do, as inputs in job order, and a sink that commits their records (written
    /// in that same order) every `commitEvery` records.
    public func pending(commitEvery: Int, onCommit: @escaping (JobStore.Progress) -> Void = { _ in })
        throws -> (inputs: [InputItem], sink: CommittingSink) {
        let items = try store.pendingItems(job: jobID)
        let inputs = items.map { InputItem(path: $0.source, listingError: $0.listingError) }
        let sink = CommittingSink(store: store, jobID: jobID, positions: items.map(\.position),
                                  commitEvery: commitEvery, onCommit: onCommit)
        return (inputs, sink)
    }

    /// Writes the committed records to each sink file, replacing it atomically (temporary file, then
    /// rename), so a reader never sees a half-written file and a resumed run rewrites it whole.
    public func exportSinks(jsonl: String?, csv: String?, topK: Int) throws {
        let records = try store.records(job: jobID)
        for case let path? in [jsonl, csv] {
            let ext = (path as NSString).pathExtension
            let temporary = (path as NSString).deletingPathExtension + ".partial." + ext
            let sink = try Sinks.open(path: temporary, topK: topK)
            for record in records { try sink.write(record) }
            try sink.close()
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        }
    }
}

/// A sink that maps the n-th record written to the n-th pending item and commits in batches.
public final class CommittingSink: RecordSink {
    let store: JobStore
    let jobID: String
    let positions: [Int]
    let commitEvery: Int
    let onCommit: (JobStore.Progress) -> Void
    private var next = 0
    private var buffer: [(position: Int, record: ResultRecord)] = []

    init(store: JobStore, jobID: String, positions: [Int], commitEvery: Int,
         onCommit: @escaping (JobStore.Progress) -> Void) {
        self.store = store; self.jobID = jobID; self.positions = positions
        self.commitEvery = max(1, commitEvery); self.onCommit = onCommit
    }

    public func write(_ record: ResultRecord) throws {
        precondition(next < positions.count, "more records than pending items")
        buffer.append((positions[next], record))
        next += 1
        if buffer.count >= commitEvery { try flush() }
    }

    public func close() throws { try flush() }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try store.commit(job: jobID, results: buffer)
        buffer.removeAll(keepingCapacity: true)
        onCommit(try store.progress(job: jobID))
    }
}
