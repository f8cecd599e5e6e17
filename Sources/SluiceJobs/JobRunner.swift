import Foundation
import SluiceMedia
import SluicePipeline

/// Resumable runs over a job's items. The records of each batch are committed atomically with their
/// items' states; the sink files are derived from what is committed. Killed at any point and run
/// again, a job resumes with exactly the missing items, and its sink files hold one record per item.
public struct JobRunner {
    public let store: JobStore
    public let jobID: String

    public init(store: JobStore, jobID: String) { self.store = store; self.jobID = jobID }

    /// The items still to do, as inputs in job order, and a sink that commits their records (written
    /// in that same order) every `commitEvery` items.
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

/// An item sink that maps the n-th item written to the n-th pending item and commits every
/// `commitEvery` items (and at least every two seconds, so slow items such as long videos are not held).
public final class CommittingSink: ItemSink {
    let store: JobStore
    let jobID: String
    let positions: [Int]
    let commitEvery: Int
    let onCommit: (JobStore.Progress) -> Void
    private var buffer: [(position: Int, records: [ResultRecord])] = []
    private var lastCommit = Date()

    init(store: JobStore, jobID: String, positions: [Int], commitEvery: Int,
         onCommit: @escaping (JobStore.Progress) -> Void) {
        self.store = store; self.jobID = jobID; self.positions = positions
        self.commitEvery = max(1, commitEvery); self.onCommit = onCommit
    }

    public func write(item index: Int, records: [ResultRecord]) throws {
        precondition(index < positions.count, "item \(index) of \(positions.count) pending items")
        buffer.append((positions[index], records))
        if buffer.count >= commitEvery || Date().timeIntervalSince(lastCommit) >= 2 { try flush() }
    }

    public func close() throws { try flush() }

    private func flush() throws {
        lastCommit = Date()
        guard !buffer.isEmpty else { return }
        try store.commit(job: jobID, results: buffer)
        buffer.removeAll(keepingCapacity: true)
        onCommit(try store.progress(job: jobID))
    }
}
