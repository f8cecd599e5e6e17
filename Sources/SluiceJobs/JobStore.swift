import Foundation
import GRDB
import SluicePipeline

/// The embedded job store: SQLite through GRDB in WAL mode, at `$SLUICE_HOME/jobs.sqlite`.
/// A job has one item per input; an item's result record is committed in the same transaction as its
/// state, so a run killed at any point loses nothing that was committed and never writes a result twice.
public final class JobStore: Sendable {
    public let database: DatabasePool

    public struct Job: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
        public static let databaseTableName = "job"
        public var id: String
        public var name: String
        public var pipeline: String
        public var createdAt: Date
        public var total: Int
        /// Set by `sluice jobs cancel`: a run of the job stops after the item in flight.
        public var cancelledAt: Date?
    }

    public enum ItemState: String, Codable, Sendable { case pending, done, failed }

    public struct Item: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
        public static let databaseTableName = "item"
        public var jobId: String
        public var position: Int
        public var source: String
        public var state: ItemState
        public var attempts: Int
        /// Why the input could not even be listed (an unreadable folder), kept for the record.
        public var listingError: String?
        public var error: String?
        /// The item's result records as JSON Lines (one row for an image, one per sampled frame of a
        /// video), once the item is done or failed.
        public var record: String?
    }

    public struct Progress: Sendable, Equatable {
        public var total = 0, done = 0, failed = 0
        public var pending: Int { total - done - failed }
        public init(total: Int = 0, done: Int = 0, failed: Int = 0) { self.total = total; self.done = done; self.failed = failed }
    }

    public init(path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        database = try DatabasePool(path: path)   // WAL mode
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "job") { t in
                t.primaryKey("id", .text)
                t.column("name", .text).notNull()
                t.column("pipeline", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("total", .integer).notNull()
            }
            try db.create(table: "item") { t in
                t.column("jobId", .text).notNull().references("job", onDelete: .cascade)
                t.column("position", .integer).notNull()
                t.column("source", .text).notNull()
                t.column("state", .text).notNull()
                t.column("attempts", .integer).notNull()
                t.column("listingError", .text)
                t.column("error", .text)
                t.column("record", .text)
                t.primaryKey(["jobId", "position"])
            }
        }
        migrator.registerMigration("v2: cancel") { db in
            try db.alter(table: "job") { t in t.add(column: "cancelledAt", .datetime) }
        }
        try migrator.migrate(database)
    }

    /// The store under `$SLUICE_HOME` (default `~/.local/share/sluice`).
    public static func openDefault() throws -> JobStore {
        let home = ProcessInfo.processInfo.environment["SLUICE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share/sluice").path
        return try JobStore(path: (home as NSString).appendingPathComponent("jobs.sqlite"))
    }

    /// A job is identified by its pipeline and its inputs, so running the same command again resumes it.
    public static func jobID(pipeline: String, sources: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325   // FNV-1a 64
        for byte in Array((pipeline + "\u{0}" + sources.joined(separator: "\u{0}")).utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16).leftPadded(to: 16)
    }

    /// Opens the job for these inputs, creating it (all items pending) if it does not exist; `fresh`
    /// deletes an existing one first.
    public func openJob(id: String, name: String, pipeline: String, items: [InputItem], fresh: Bool) throws -> Job {
        try database.write { db in
            if fresh { try Job.deleteOne(db, key: id) }
            if let job = try Job.fetchOne(db, key: id) { return job }
            let job = Job(id: id, name: name, pipeline: pipeline, createdAt: Date(), total: items.count, cancelledAt: nil)
            try job.insert(db)
            for (position, item) in items.enumerated() {
                try Item(jobId: id, position: position, source: item.path, state: .pending, attempts: 0,
                         listingError: item.listingError, error: nil, record: nil).insert(db)
            }
            return job
        }
    }

    public func pendingItems(job: String) throws -> [Item] {
        try database.read { db in
            try Item.filter(Column("jobId") == job && Column("state") == ItemState.pending.rawValue)
                .order(Column("position")).fetchAll(db)
        }
    }

    /// Commits the results of a batch of items: each item's state and records in one transaction. An
    /// item fails when any of its records carries an error (a bad image; a video damaged part-way, whose
    /// frames before the damage are kept).
    public func commit(job: String, results: [(position: Int, records: [ResultRecord])]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let rows = try results.map { result in
            let lines = try result.records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
            return (result.position, result.records.lazy.compactMap(\.error).first, lines.joined(separator: "\n"))
        }
        try database.write { db in
            for (position, error, json) in rows {
                try db.execute(sql: """
                    UPDATE item SET state = ?, attempts = attempts + 1, error = ?, record = ?
                    WHERE jobId = ? AND position = ?
                    """, arguments: [error == nil ? ItemState.done.rawValue : ItemState.failed.rawValue,
                                     error, json, job, position])
            }
        }
    }

    /// Marks a job cancelled (a run in progress stops after the item in flight) or clears the mark.
    public func setCancelled(job: String, _ cancelled: Bool) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE job SET cancelledAt = ? WHERE id = ?", arguments: [cancelled ? Date() : nil, job])
        }
    }

    public func isCancelled(job: String) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT cancelledAt IS NOT NULL FROM job WHERE id = ?", arguments: [job]) ?? true
        }
    }

    public func progress(job: String) throws -> Progress {
        try database.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM item WHERE jobId = ? GROUP BY state",
                                        arguments: [job])
            var progress = Progress()
            for row in rows {
                let n: Int = row["n"]
                progress.total += n
                switch ItemState(rawValue: row["state"]) {
                case .done: progress.done += n
                case .failed: progress.failed += n
                default: break
                }
            }
            return progress
        }
    }

    /// Committed records in input order (an item's own records in the order they were written).
    public func records(job: String) throws -> [ResultRecord] {
        let decoder = JSONDecoder()
        return try database.read { db in
            try String.fetchAll(db, sql: "SELECT record FROM item WHERE jobId = ? AND record IS NOT NULL ORDER BY position",
                                arguments: [job])
        }.flatMap { lines in
            try lines.split(separator: "\n").map { try decoder.decode(ResultRecord.self, from: Data($0.utf8)) }
        }
    }

    public func jobs() throws -> [Job] {
        try database.read { db in try Job.order(Column("createdAt").desc).fetchAll(db) }
    }

    public func job(id: String) throws -> Job? {
        try database.read { db in
            try Job.fetchOne(db, key: id) ?? Job.filter(Column("id").like("\(id)%")).fetchOne(db)
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
