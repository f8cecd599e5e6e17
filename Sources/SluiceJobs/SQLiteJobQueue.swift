import Foundation
import GRDB
import SluicePipeline

/// The job queue in SQLite through GRDB: at `$SLUICE_HOME/jobs.sqlite` a `DatabasePool` in WAL mode, so
/// several processes share it; in tests a `DatabaseQueue` in memory. A claim is one write transaction
/// (select, then update), and SQLite lets one writer at a time in, so two processes never claim the same
/// item under a live lease.
public final class SQLiteJobQueue: JobQueue {
    public let database: any DatabaseWriter
    /// The time leases are measured against (a test moves it by hand).
    let now: @Sendable () -> Date

    public init(database: any DatabaseWriter, now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.database = database
        self.now = now
        // Two processes opening a new store at once both find migrations to apply (GRDB reads which are
        // applied before it takes the write lock): the one that waited fails on what the other created,
        // and finds them applied when it tries again.
        for attempt in 1... {
            do {
                try Self.migrator.migrate(database)
                break
            } catch where attempt < 3 {
                continue
            }
        }
    }

    /// The store in a file: a `DatabasePool` (WAL) that waits up to 10 s for another process's write.
    public convenience init(path: String, now: @escaping @Sendable () -> Date = { Date() }) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try self.init(database: try Self.openPool(path: path), now: now)
    }

    /// Opens the pool, retrying while another process is opening the same new file: switching it to WAL
    /// (`PRAGMA journal_mode = WAL`) takes an exclusive lock that SQLite's busy timeout does not wait for,
    /// so two runs started together would otherwise see "database is locked".
    static func openPool(path: String) throws -> DatabasePool {
        let deadline = Date().addingTimeInterval(10)
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                if Date() >= deadline { throw error }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    public static var configuration: Configuration {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        return configuration
    }

    static var migrator: DatabaseMigrator {
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
        // The column `job.pipeline` keeps holding where the pipeline came from (a file path); the text
        // itself is new. Jobs from before have none, and their items need nothing: they are pending,
        // done or failed, and no one holds a lease.
        migrator.registerMigration("v3: queue") { db in
            try db.alter(table: "job") { t in t.add(column: "pipelineText", .text) }
            try db.alter(table: "item") { t in
                t.add(column: "leaseOwner", .text)
                t.add(column: "leaseToken", .text)
                t.add(column: "leaseExpiresAt", .double)   // seconds since 1970
                t.add(column: "failure", .text)            // FailureReason.kind, for items failed through `fail`
            }
            // Claims look for the lowest open items; done and failed ones stay out of the way.
            try db.execute(sql: "CREATE INDEX item_open ON item(jobId, position) WHERE state IN ('pending', 'claimed')")
        }
        // Finished items are numbered in the order they finished, so a progress stream can resume after
        // the last one a client saw. Items finished before keep their input order.
        migrator.registerMigration("v4: finish order") { db in
            try db.alter(table: "item") { t in t.add(column: "finishedSeq", .integer) }
            try db.execute(sql: "UPDATE item SET finishedSeq = position + 1 WHERE state IN ('done', 'failed')")
            try db.execute(sql: "CREATE INDEX item_finished ON item(jobId, finishedSeq) WHERE finishedSeq IS NOT NULL")
        }
        return migrator
    }

    /// The next finish sequence number of the job (inside the writing transaction).
    private static func nextSequence(_ db: Database, job: String) throws -> Int {
        (try Int.fetchOne(db, sql: "SELECT MAX(finishedSeq) FROM item WHERE jobId = ?", arguments: [job]) ?? 0) + 1
    }

    enum State: String { case pending, claimed, done, failed }

    // MARK: Jobs

    public func submit(name: String, pipeline: String, origin: String, items: [InputItem], fresh: Bool) throws -> Job {
        let id = JobID.make(pipeline: pipeline, sources: items.map(\.path))
        let created = now()
        return try database.write { db in
            if fresh { try db.execute(sql: "DELETE FROM job WHERE id = ?", arguments: [id]) }
            if var job = try Self.fetchJob(db, id: id) {
                if job.pipeline == nil {
                    // A job from before the store kept the text; the id says it is this text.
                    try db.execute(sql: "UPDATE job SET pipelineText = ? WHERE id = ?", arguments: [pipeline, id])
                    job.pipeline = pipeline
                }
                return job
            }
            try db.execute(sql: """
                INSERT INTO job (id, name, pipeline, pipelineText, createdAt, total) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [id, name, origin, pipeline, created, items.count])
            let insert = try db.makeStatement(sql: """
                INSERT INTO item (jobId, position, source, state, attempts, listingError) VALUES (?, ?, ?, 'pending', 0, ?)
                """)
            for (position, item) in items.enumerated() {
                try insert.execute(arguments: [id, position, item.path, item.listingError])
            }
            guard let job = try Self.fetchJob(db, id: id) else { throw JobQueueError.noSuchJob(id) }
            return job
        }
    }

    public func cancel(job: String) throws { try setCancelled(job: job, now()) }
    public func uncancel(job: String) throws { try setCancelled(job: job, nil) }

    private func setCancelled(job: String, _ date: Date?) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE job SET cancelledAt = ? WHERE id = ?", arguments: [date, job])
        }
    }

    public func isCancelled(job: String) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT cancelledAt IS NOT NULL FROM job WHERE id = ?", arguments: [job]) ?? true
        }
    }

    public func jobs() throws -> [Job] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM job ORDER BY createdAt DESC").map(Self.job(from:))
        }
    }

    public func job(id: String) throws -> Job? {
        try database.read { db in
            if let job = try Self.fetchJob(db, id: id) { return job }
            let matches = try Row.fetchAll(db, sql: "SELECT * FROM job WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 10",
                                           arguments: [id.count, id])
            if matches.count > 1 { throw JobQueueError.ambiguousJobID(id, matches: matches.map { $0["id"] }) }
            return matches.first.map(Self.job(from:))
        }
    }

    private static func fetchJob(_ db: Database, id: String) throws -> Job? {
        try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).map(job(from:))
    }

    private static func job(from row: Row) -> Job {
        Job(id: row["id"], name: row["name"], pipeline: row["pipelineText"], origin: row["pipeline"],
            createdAt: row["createdAt"], total: row["total"], cancelledAt: row["cancelledAt"])
    }

    public func status(job: String) throws -> JobStatus {
        let now = now().timeIntervalSince1970
        return try database.read { db in
            // A claim whose lease expired is pending again: anyone may claim it.
            let rows = try Row.fetchAll(db, sql: """
                SELECT CASE WHEN state = 'claimed' AND leaseExpiresAt <= ? THEN 'pending' ELSE state END AS s,
                       COUNT(*) AS n
                FROM item WHERE jobId = ? GROUP BY s
                """, arguments: [now, job])
            var status = JobStatus()
            for row in rows {
                let n: Int = row["n"]
                status.total += n
                switch State(rawValue: row["s"]) {
                case .pending: status.pending += n
                case .claimed: status.claimed += n
                case .done: status.done += n
                case .failed: status.failed += n
                case nil: break
                }
            }
            status.workers = try String.fetchAll(db, sql: """
                SELECT DISTINCT leaseOwner FROM item
                WHERE jobId = ? AND state = 'claimed' AND leaseExpiresAt > ? ORDER BY leaseOwner
                """, arguments: [job, now])
            return status
        }
    }

    // MARK: Claims

    public func claim(job: String, worker: String, limit: Int, lease: TimeInterval) throws -> [ClaimedItem] {
        guard limit > 0 else { return [] }
        let now = now()
        let expiresAt = now.addingTimeInterval(lease)
        let token = UUID().uuidString
        return try database.write { db in
            guard let cancelled = try Bool.fetchOne(db, sql: "SELECT cancelledAt IS NOT NULL FROM job WHERE id = ?",
                                                    arguments: [job]) else { throw JobQueueError.noSuchJob(job) }
            if cancelled { return [] }
            let rows = try Row.fetchAll(db, sql: """
                SELECT position, source, listingError, attempts FROM item
                WHERE jobId = ? AND state IN ('pending', 'claimed') AND (state = 'pending' OR leaseExpiresAt <= ?)
                ORDER BY position LIMIT ?
                """, arguments: [job, now.timeIntervalSince1970, limit])
            let update = try db.makeStatement(sql: """
                UPDATE item SET state = 'claimed', leaseOwner = ?, leaseToken = ?, leaseExpiresAt = ?,
                                attempts = attempts + 1
                WHERE jobId = ? AND position = ?
                """)
            return try rows.map { row in
                let position: Int = row["position"]
                try update.execute(arguments: [worker, token, expiresAt.timeIntervalSince1970, job, position])
                return ClaimedItem(lease: Lease(position: position, token: token), source: row["source"],
                                   listingError: row["listingError"], attempt: (row["attempts"] as Int) + 1, expiresAt: expiresAt)
            }
        }
    }

    public func heartbeat(job: String, worker: String, leases: [Lease], lease: TimeInterval) throws -> [Lease] {
        let expiresAt = now().addingTimeInterval(lease).timeIntervalSince1970
        return try database.write { db in
            let update = try db.makeStatement(sql: """
                UPDATE item SET leaseExpiresAt = ?
                WHERE jobId = ? AND position = ? AND state = 'claimed' AND leaseOwner = ? AND leaseToken = ?
                """)
            return try leases.filter { held in
                try update.execute(arguments: [expiresAt, job, held.position, worker, held.token])
                return db.changesCount == 0
            }
        }
    }

    public func release(job: String, worker: String, leases: [Lease]) throws {
        try database.write { db in
            let update = try db.makeStatement(sql: """
                UPDATE item SET state = 'pending', leaseOwner = NULL, leaseToken = NULL, leaseExpiresAt = NULL,
                                attempts = max(attempts - 1, 0)
                WHERE jobId = ? AND position = ? AND state = 'claimed' AND leaseOwner = ? AND leaseToken = ?
                """)
            for held in leases { try update.execute(arguments: [job, held.position, worker, held.token]) }
        }
    }

    public func abandon(job: String, worker: String) throws -> Int {
        try database.write { db in
            try db.execute(sql: """
                UPDATE item SET state = 'pending', leaseOwner = NULL, leaseToken = NULL, leaseExpiresAt = NULL
                WHERE jobId = ? AND state = 'claimed' AND leaseOwner = ?
                """, arguments: [job, worker])
            return db.changesCount
        }
    }

    // MARK: Results

    public func complete(job: String, worker: String, results: [ItemResult]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let rows = try results.map { result in
            let lines = try result.records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
            return (result.lease, result.records.lazy.compactMap(\.error).first, lines.joined(separator: "\n"))
        }
        try database.write { db in
            try Self.checkHeld(db, job: job, worker: worker, leases: results.map(\.lease))
            let update = try db.makeStatement(sql: """
                UPDATE item SET state = ?, error = ?, record = ?, failure = NULL, finishedSeq = ?,
                                leaseOwner = NULL, leaseToken = NULL, leaseExpiresAt = NULL
                WHERE jobId = ? AND position = ?
                """)
            var sequence = try Self.nextSequence(db, job: job)
            for (lease, error, json) in rows {
                try update.execute(arguments: [error == nil ? State.done.rawValue : State.failed.rawValue,
                                               error, json, sequence, job, lease.position])
                sequence += 1
            }
        }
    }

    public func fail(job: String, worker: String, lease: Lease, reason: FailureReason) throws {
        try database.write { db in
            try Self.checkHeld(db, job: job, worker: worker, leases: [lease])
            try db.execute(sql: """
                UPDATE item SET state = 'failed', error = ?, failure = ?, record = NULL, finishedSeq = ?,
                                leaseOwner = NULL, leaseToken = NULL, leaseExpiresAt = NULL
                WHERE jobId = ? AND position = ?
                """, arguments: [reason.description, reason.kind, try Self.nextSequence(db, job: job), job, lease.position])
        }
    }

    /// Throws `leaseLost` unless every lease is still this worker's claim. A lease that expired still
    /// counts while nobody claimed the item since: the work is done, and no one else is doing it.
    private static func checkHeld(_ db: Database, job: String, worker: String, leases: [Lease]) throws {
        let held = try db.makeStatement(sql: """
            SELECT 1 FROM item
            WHERE jobId = ? AND position = ? AND state = 'claimed' AND leaseOwner = ? AND leaseToken = ?
            """)
        let lost = try leases.filter { lease in
            try Int.fetchOne(held, arguments: [job, lease.position, worker, lease.token]) == nil
        }
        if !lost.isEmpty { throw JobQueueError.leaseLost(job: job, positions: lost.map(\.position)) }
    }

    public func records(job: String, _ body: (ResultRecord) throws -> Void) throws {
        let decoder = JSONDecoder()
        try database.read { db in
            let items = try Row.fetchCursor(db, sql: """
                SELECT source, record, error FROM item
                WHERE jobId = ? AND (record IS NOT NULL OR (state = 'failed' AND error IS NOT NULL))
                ORDER BY position
                """, arguments: [job])
            while let item = try items.next() {
                for record in try Self.records(of: item, decoder) { try body(record) }
            }
        }
    }

    public func finished(job: String, order: FinishedOrder, after cursor: Int, limit: Int) throws -> [FinishedItem] {
        let decoder = JSONDecoder()
        let key = order == .input ? "position" : "finishedSeq"
        return try database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT position, source, record, error, finishedSeq FROM item
                WHERE jobId = ? AND state IN ('done', 'failed') AND finishedSeq IS NOT NULL AND \(key) > ?
                ORDER BY \(key) LIMIT ?
                """, arguments: [job, cursor, max(0, limit)]).map { row in
                FinishedItem(sequence: row["finishedSeq"], position: row["position"], source: row["source"],
                             records: try Self.records(of: row, decoder), error: row["error"])
            }
        }
    }

    /// An item row's records (its `record` column, one JSON line each); an item failed through `fail`
    /// has none stored and gets one error record for its source with an empty model.
    private static func records(of row: Row, _ decoder: JSONDecoder) throws -> [ResultRecord] {
        guard let lines: String = row["record"] else { return [ResultRecord(source: row["source"], model: "", error: row["error"])] }
        return try lines.split(separator: "\n").map { try decoder.decode(ResultRecord.self, from: Data($0.utf8)) }
    }
}

extension SQLiteJobQueue {
    /// One line for an error of the store at `path`, saying which file and what a user can do; nil when
    /// the error is not the store's.
    public static func describe(_ error: any Error, path: String) -> String? {
        guard let error = error as? DatabaseError else { return nil }
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return "\(path) is locked by another process (waited 10 s): \(detail); try again when it is done"
        case .SQLITE_FULL, .SQLITE_IOERR:
            return "\(path): cannot write (a full disk or a file-size limit?): \(detail); committed results are kept"
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
            return "\(path) cannot be written: \(detail)"
        case .SQLITE_CANTOPEN:
            return "\(path) cannot be opened: \(detail)"
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return "\(path) is damaged or not a job store: \(detail)"
        default:
            return "\(path): \(error)"
        }
    }
}
