// The job queue in PostgreSQL, for many workers on many machines sharing one queue. The work-queue
// pattern River, Oban and graphile-worker use: a claim picks the lowest open items with
// `FOR UPDATE SKIP LOCKED` (workers claiming at once take different items without waiting on each
// other), a lease with an expiry and a token fences every later write, and completions commit the
// records and states in one transaction that first locks and checks the leases.
//
// An item whose records carry an error is tried again, after a pause that doubles with each attempt,
// until `RetryPolicy.maxAttempts`; then it is recorded as failed with its last error. Attempts count
// claims, so an item whose workers keep dying (their leases run out) also ends as failed rather than
// going round for ever. Every change of an item's or a job's state NOTIFYs channel `sluice_work`, so
// idle workers LISTENing there wake at once instead of polling.
//
// Times are seconds since 1970 as double precision. They come from the database's clock
// (`clock_timestamp()`), one clock for every machine, unless the queue was given a clock (tests move
// one by hand).

import Foundation
import Logging
import PostgresNIO
import SluiceJobs
import SluicePipeline

/// When a failed item is tried again, and how often at most.
public struct RetryPolicy: Sendable, Equatable {
    /// Claims an item gets in all, whether its attempts failed or their leases ran out.
    public var maxAttempts: Int
    /// Whether an item that failed with attempts left is tried again (false: failures are final at once,
    /// as in the SQLite store, and only leases that ran out lead to another attempt).
    public var retriesFailures: Bool
    /// The pause before the second attempt; it doubles for each later one, up to `longestDelay`.
    public var firstDelay: TimeInterval
    public var longestDelay: TimeInterval

    public init(maxAttempts: Int = 3, retriesFailures: Bool = true, firstDelay: TimeInterval = 1, longestDelay: TimeInterval = 300) {
        self.maxAttempts = max(1, maxAttempts); self.retriesFailures = retriesFailures
        self.firstDelay = firstDelay; self.longestDelay = longestDelay
    }

    /// The SQLite store's behaviour: failures final, claims whose leases ran out taken again (up to 100).
    public static let failuresFinal = RetryPolicy(maxAttempts: 100, retriesFailures: false)

    /// The pause after attempt `attempt` (1-based) failed.
    public func delay(after attempt: Int) -> TimeInterval {
        min(longestDelay, firstDelay * pow(2, Double(max(0, min(attempt - 1, 30)))))
    }
}

public final class PostgresJobQueue: JobQueue, @unchecked Sendable {
    let connections: PostgresConnections
    public let retry: RetryPolicy
    private let listener: ChangeListener
    /// The clock leases are measured against; nil: the database's.
    let clock: (@Sendable () -> Date)?
    var logger: Logger { connections.logger }

    /// The schema versions this code knows, each statements separated by `;` (none inside one);
    /// `migrate` applies the missing ones.
    static let migrations: [String] = [
        """
        CREATE TABLE sluice_pipeline (sha256 text PRIMARY KEY, text text NOT NULL);
        CREATE TABLE sluice_job (
            id text PRIMARY KEY,
            name text NOT NULL,
            origin text NOT NULL,
            pipeline text NOT NULL REFERENCES sluice_pipeline (sha256),
            created_at double precision NOT NULL,
            total integer NOT NULL,
            cancelled_at double precision,
            finished bigint NOT NULL DEFAULT 0);
        CREATE TABLE sluice_item (
            job_id text NOT NULL REFERENCES sluice_job (id) ON DELETE CASCADE,
            position integer NOT NULL,
            source text NOT NULL,
            listing_error text,
            state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            lease_owner text,
            lease_token text,
            lease_expires_at double precision,
            error text,
            failure text,
            available_at double precision,
            last_error text,
            record text,
            finished_seq bigint,
            PRIMARY KEY (job_id, position));
        CREATE INDEX sluice_item_open ON sluice_item (job_id, position) WHERE state IN ('pending', 'claimed');
        CREATE INDEX sluice_item_finished ON sluice_item (job_id, finished_seq) WHERE finished_seq IS NOT NULL;
        """,
    ]

    /// Opens the queue at `url` and brings its schema up to date.
    public convenience init(url: String, retry: RetryPolicy = RetryPolicy(), clock: (@Sendable () -> Date)? = nil,
                            reconnectTimeout: TimeInterval = 60, logger: Logger = Logger(label: "sluice.postgres")) throws {
        try self.init(location: try PostgresLocation(url: url), retry: retry, clock: clock, reconnectTimeout: reconnectTimeout,
                      logger: logger)
    }

    public init(location: PostgresLocation, retry: RetryPolicy = RetryPolicy(), clock: (@Sendable () -> Date)? = nil,
                reconnectTimeout: TimeInterval = 60, logger: Logger = Logger(label: "sluice.postgres")) throws {
        connections = PostgresConnections(location: location, reconnectTimeout: reconnectTimeout, logger: logger)
        listener = ChangeListener(connections: connections)
        self.retry = retry
        self.clock = clock
        try migrate()
    }

    /// NOTIFY channel every state change is announced on (payload: the job id); delivered at commit.
    static let channel = "sluice_work"

    private func announce(_ connection: PostgresConnection, job: String) throws {
        _ = try query(connection, "SELECT pg_notify(\(Self.channel), \(job))")
    }

    public func waitForChange(timeout: TimeInterval) { listener.wait(timeout: timeout) }

    /// Applies the missing migrations in one transaction under an advisory lock, so processes starting
    /// together take turns: the first applies them, the others find them applied.
    func migrate() throws {
        let known = Self.migrations.count
        try connections.transaction { connection in
            _ = try connection.query("SELECT pg_advisory_xact_lock(7253017135)", logger: logger).wait()
            _ = try connection.query("CREATE TABLE IF NOT EXISTS sluice_schema (version integer PRIMARY KEY)", logger: logger).wait()
            let current = try connection.query("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", logger: logger).wait()
                .rows.first?.decode(Int.self) ?? 0
            if current > known { throw PostgresQueueError.schemaTooNew(connections.location.description, version: current, known: known) }
            for version in stride(from: current + 1, through: known, by: 1) {
                // One statement per message: the extended protocol postgres-nio speaks takes no more.
                for statement in Self.migrations[version - 1].split(separator: ";")
                    where !statement.allSatisfy(\.isWhitespace) {
                    _ = try connection.query(PostgresQuery(unsafeSQL: String(statement)), logger: logger).wait()
                }
                _ = try connection.query("INSERT INTO sluice_schema (version) VALUES (\(version))", logger: logger).wait()
            }
        }
    }

    /// The clock's time as a bind, or NULL for the database's (`COALESCE($now, epoch(clock_timestamp()))`).
    private var now: Double? { clock.map { $0().timeIntervalSince1970 } }
    private static let databaseNow = "extract(epoch from clock_timestamp())::double precision"

    private func query(_ connection: PostgresConnection, _ query: PostgresQuery) throws -> PostgresQueryResult {
        try connection.query(query, logger: logger).wait()
    }

    // MARK: Jobs

    public func submit(name: String, pipeline: String, origin: String, items: [InputItem], fresh: Bool) throws -> Job {
        let id = JobID.make(pipeline: pipeline, sources: items.map(\.path))
        let now = now
        return try connections.transaction { connection in
            if fresh { _ = try query(connection, "DELETE FROM sluice_job WHERE id = \(id)") }
            _ = try query(connection, """
                INSERT INTO sluice_pipeline (sha256, text) VALUES (encode(sha256(convert_to(\(pipeline), 'UTF8')), 'hex'), \(pipeline))
                ON CONFLICT (sha256) DO NOTHING
                """)
            // Two processes submitting the same new job: the second waits here for the first's commit,
            // then inserts nothing and reads the job the first made.
            let inserted = try query(connection, """
                INSERT INTO sluice_job (id, name, origin, pipeline, created_at, total)
                VALUES (\(id), \(name), \(origin), encode(sha256(convert_to(\(pipeline), 'UTF8')), 'hex'),
                        COALESCE(\(now), \(unescaped: Self.databaseNow)), \(items.count))
                ON CONFLICT (id) DO NOTHING RETURNING id
                """)
            if !inserted.rows.isEmpty {
                for start in stride(from: 0, to: items.count, by: 10_000) {
                    let slice = items[start..<min(start + 10_000, items.count)]
                    _ = try query(connection, """
                        INSERT INTO sluice_item (job_id, position, source, listing_error)
                        SELECT \(id), \(start) + ordinality - 1, source, NULLIF(listing_error, '')
                        FROM unnest(\(slice.map(\.path))::text[], \(slice.map { $0.listingError ?? "" })::text[])
                             WITH ORDINALITY AS t(source, listing_error, ordinality)
                        """)
                }
            }
            guard let job = try fetchJob(connection, id: id) else { throw JobQueueError.noSuchJob(id) }
            try announce(connection, job: id)
            return job
        }
    }

    public func cancel(job: String) throws {
        let now = now
        try connections.transaction { connection in
            _ = try query(connection, "UPDATE sluice_job SET cancelled_at = COALESCE(\(now), \(unescaped: Self.databaseNow)) WHERE id = \(job)")
            try announce(connection, job: job)
        }
    }

    public func uncancel(job: String) throws {
        try connections.transaction { connection in
            _ = try query(connection, "UPDATE sluice_job SET cancelled_at = NULL WHERE id = \(job)")
            try announce(connection, job: job)
        }
    }

    public func isCancelled(job: String) throws -> Bool {
        try connections.with { connection in
            try query(connection, "SELECT cancelled_at IS NOT NULL FROM sluice_job WHERE id = \(job)").rows.first?.decode(Bool.self) ?? true
        }
    }

    private static let jobColumns = """
        j.id, j.name, p.text, j.origin, j.created_at, j.total, j.cancelled_at
        FROM sluice_job j JOIN sluice_pipeline p ON p.sha256 = j.pipeline
        """

    public func jobs() throws -> [Job] {
        try connections.with { connection in
            try query(connection, "SELECT \(unescaped: Self.jobColumns) ORDER BY j.created_at DESC, j.id").rows.map(Self.job(from:))
        }
    }

    public func openJobs() throws -> [Job] {
        try connections.with { connection in
            try query(connection, """
                SELECT \(unescaped: Self.jobColumns)
                WHERE j.cancelled_at IS NULL AND EXISTS (
                    SELECT 1 FROM sluice_item i WHERE i.job_id = j.id AND i.state IN ('pending', 'claimed'))
                ORDER BY j.created_at, j.id
                """).rows.map(Self.job(from:))
        }
    }

    public func job(id: String) throws -> Job? {
        try connections.with { connection in
            if let job = try fetchJob(connection, id: id) { return job }
            let matches = try query(connection, """
                SELECT \(unescaped: Self.jobColumns) WHERE left(j.id, char_length(\(id))) = \(id) ORDER BY j.id LIMIT 10
                """).rows.map(Self.job(from:))
            if matches.count > 1 { throw JobQueueError.ambiguousJobID(id, matches: matches.map(\.id)) }
            return matches.first
        }
    }

    private func fetchJob(_ connection: PostgresConnection, id: String) throws -> Job? {
        try query(connection, "SELECT \(unescaped: Self.jobColumns) WHERE j.id = \(id)").rows.first.map(Self.job(from:))
    }

    private static func job(from row: PostgresRow) throws -> Job {
        let (id, name, pipeline, origin, created, total, cancelled) =
            try row.decode((String, String, String, String, Double, Int, Double?).self)
        return Job(id: id, name: name, pipeline: pipeline, origin: origin, createdAt: Date(timeIntervalSince1970: created),
                   total: total, cancelledAt: cancelled.map(Date.init(timeIntervalSince1970:)))
    }

    public func status(job: String) throws -> JobStatus {
        let now = now
        return try connections.with { connection in
            // A claim whose lease expired is pending again: anyone may claim it.
            let counts = try query(connection, """
                SELECT CASE WHEN state = 'claimed' AND lease_expires_at <= COALESCE(\(now), \(unescaped: Self.databaseNow))
                            THEN 'pending' ELSE state END AS s, COUNT(*)
                FROM sluice_item WHERE job_id = \(job) GROUP BY s
                """)
            var status = JobStatus()
            for row in counts.rows {
                let (state, count) = try row.decode((String, Int).self)
                status.total += count
                switch state {
                case "pending": status.pending += count
                case "claimed": status.claimed += count
                case "done": status.done += count
                case "failed": status.failed += count
                default: break
                }
            }
            status.workers = try query(connection, """
                SELECT DISTINCT lease_owner FROM sluice_item
                WHERE job_id = \(job) AND state = 'claimed' AND lease_expires_at > COALESCE(\(now), \(unescaped: Self.databaseNow))
                ORDER BY lease_owner
                """).rows.map { try $0.decode(String.self) }
            return status
        }
    }

    // MARK: Claims

    public func claim(job: String, worker: String, limit: Int, lease: TimeInterval) throws -> [ClaimedItem] {
        guard limit > 0 else { return [] }
        let now = now
        let token = UUID().uuidString
        return try connections.transaction { connection in
            guard let cancelled = try query(connection, "SELECT cancelled_at IS NOT NULL FROM sluice_job WHERE id = \(job)")
                .rows.first?.decode(Bool.self) else { throw JobQueueError.noSuchJob(job) }
            if cancelled { return [] }
            try failExhausted(connection, job: job, now: now)
            // One statement: the rows are locked as they are picked, and rows another claim holds locked
            // are skipped, not waited for. Items waiting to be tried again are left until their time.
            let rows = try query(connection, """
                WITH clock AS (SELECT COALESCE(\(now), \(unescaped: Self.databaseNow)) AS now),
                picked AS (
                    SELECT position FROM sluice_item, clock
                    WHERE job_id = \(job)
                      AND ((state = 'pending' AND COALESCE(available_at, 0) <= clock.now)
                           OR (state = 'claimed' AND lease_expires_at <= clock.now))
                    ORDER BY position LIMIT \(limit) FOR UPDATE OF sluice_item SKIP LOCKED)
                UPDATE sluice_item SET state = 'claimed', lease_owner = \(worker), lease_token = \(token),
                                       lease_expires_at = (SELECT now FROM clock) + \(lease), attempts = attempts + 1,
                                       available_at = NULL
                FROM picked WHERE sluice_item.job_id = \(job) AND sluice_item.position = picked.position
                RETURNING sluice_item.position, source, listing_error, attempts, lease_expires_at
                """).rows
            return try rows.map { row in
                let (position, source, listingError, attempts, expires) = try row.decode((Int, String, String?, Int, Double).self)
                return ClaimedItem(lease: Lease(position: position, token: token), source: source, listingError: listingError,
                                   attempt: attempts, expiresAt: Date(timeIntervalSince1970: expires))
            }.sorted { $0.position < $1.position }
        }
    }

    /// Items whose lease ran out on their last allowed attempt are failed: each worker that took them
    /// stopped before finishing (killed, crashed, stuck), and trying for ever would hold the job open.
    private func failExhausted(_ connection: PostgresConnection, job: String, now: Double?) throws {
        let rows = try query(connection, """
            SELECT position, attempts, last_error FROM sluice_item
            WHERE job_id = \(job) AND state = 'claimed' AND attempts >= \(retry.maxAttempts)
              AND lease_expires_at <= COALESCE(\(now), \(unescaped: Self.databaseNow))
            ORDER BY position FOR UPDATE SKIP LOCKED
            """).rows.map { try $0.decode((Int, Int, String?).self) }
        guard !rows.isEmpty else { return }
        let first = try reserveSequence(connection, job: job, count: rows.count)
        for (offset, (position, attempts, lastError)) in rows.enumerated() {
            let reason = "gave up after \(attempts) attempt(s): the lease ran out before the item was finished each time"
                + (lastError.map { "; last error: \($0)" } ?? "")
            _ = try query(connection, """
                UPDATE sluice_item SET state = 'failed', error = \(reason), failure = 'workerError', record = NULL,
                                       finished_seq = \(first + offset), lease_expires_at = NULL,
                                       lease_owner = NULL, lease_token = NULL
                WHERE job_id = \(job) AND position = \(position)
                """)
        }
        try announce(connection, job: job)
    }

    public func heartbeat(job: String, worker: String, leases: [Lease], lease: TimeInterval) throws -> [Lease] {
        guard !leases.isEmpty else { return [] }
        let now = now
        let extended = try connections.with { connection in
            try query(connection, """
                UPDATE sluice_item SET lease_expires_at = COALESCE(\(now), \(unescaped: Self.databaseNow)) + \(lease)
                WHERE job_id = \(job) AND state = 'claimed' AND lease_owner = \(worker)
                  AND (position, lease_token) IN (SELECT * FROM unnest(\(leases.map(\.position))::integer[], \(leases.map(\.token))::text[]))
                RETURNING position, lease_token
                """).rows.map { row in
                let (position, token) = try row.decode((Int, String).self)
                return Lease(position: position, token: token)
            }
        }
        let kept = Set(extended)
        return leases.filter { !kept.contains($0) }
    }

    public func release(job: String, worker: String, leases: [Lease]) throws {
        guard !leases.isEmpty else { return }
        try connections.transaction { connection in
            try announce(connection, job: job)
            _ = try query(connection, """
                UPDATE sluice_item SET state = 'pending', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                                       attempts = GREATEST(attempts - 1, 0)
                WHERE job_id = \(job) AND state = 'claimed' AND lease_owner = \(worker)
                  AND (position, lease_token) IN (SELECT * FROM unnest(\(leases.map(\.position))::integer[], \(leases.map(\.token))::text[]))
                """)
        }
    }

    public func abandon(job: String, worker: String) throws -> Int {
        try connections.transaction { connection in
            try announce(connection, job: job)
            return try query(connection, """
                UPDATE sluice_item SET state = 'pending', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                WHERE job_id = \(job) AND state = 'claimed' AND lease_owner = \(worker)
                RETURNING position
                """).rows.count
        }
    }

    // MARK: Results

    public func complete(job: String, worker: String, results: [ItemResult]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let rows = try results.map { result in
            let lines = try result.records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
            return (lease: result.lease, error: result.records.lazy.compactMap(\.error).first, json: lines.joined(separator: "\n"))
        }
        let now = now
        try connections.transaction { connection, rerun in
            let pending = try checkHeld(connection, job: job, worker: worker, leases: rows.map(\.lease), rerun: rerun)
            guard !pending.isEmpty else { return }
            // A failure with attempts left goes back to wait for its next try; its records are not kept.
            let recorded = rows.filter { row in
                guard let attempts = pending[row.lease] else { return false }
                return row.error == nil || !retry.retriesFailures || attempts >= retry.maxAttempts
            }
            for row in rows where pending[row.lease] != nil && !recorded.contains(where: { $0.lease == row.lease }) {
                let attempts = pending[row.lease] ?? 1
                _ = try query(connection, """
                    UPDATE sluice_item SET state = 'pending', lease_expires_at = NULL, last_error = \(row.error),
                                           available_at = COALESCE(\(now), \(unescaped: Self.databaseNow)) + \(retry.delay(after: attempts))
                    WHERE job_id = \(job) AND position = \(row.lease.position)
                    """)
            }
            if !recorded.isEmpty {
                var sequence = try reserveSequence(connection, job: job, count: recorded.count)
                for row in recorded {
                    _ = try query(connection, """
                        UPDATE sluice_item SET state = \(row.error == nil ? "done" : "failed"), error = \(row.error), record = \(row.json),
                                               failure = NULL, finished_seq = \(sequence), lease_expires_at = NULL
                        WHERE job_id = \(job) AND position = \(row.lease.position)
                        """)
                    sequence += 1
                }
            }
            try announce(connection, job: job)
        }
    }

    public func fail(job: String, worker: String, lease: Lease, reason: FailureReason) throws {
        try connections.transaction { connection, rerun in
            guard try !checkHeld(connection, job: job, worker: worker, leases: [lease], rerun: rerun).isEmpty else { return }
            try announce(connection, job: job)
            let sequence = try reserveSequence(connection, job: job, count: 1)
            _ = try query(connection, """
                UPDATE sluice_item SET state = 'failed', error = \(reason.description), failure = \(reason.kind), record = NULL,
                                       finished_seq = \(sequence), lease_expires_at = NULL
                WHERE job_id = \(job) AND position = \(lease.position)
                """)
        }
    }

    /// Locks the leased items and returns the leases still to record, with their attempt counts. Throws `leaseLost` unless each is
    /// this worker's claim (a lease that expired still counts while nobody claimed the item since).
    /// On a `rerun` (a commit whose answer was lost with the connection, run again after reconnecting),
    /// an item already finished or sent back under the same lease is left out rather than refused: the
    /// first run committed it, and it must not fail or be recorded twice.
    private func checkHeld(_ connection: PostgresConnection, job: String, worker: String, leases: [Lease],
                           rerun: Bool) throws -> [Lease: Int] {
        let rows = try query(connection, """
            SELECT position, state, lease_owner, lease_token, attempts FROM sluice_item
            WHERE job_id = \(job) AND position = ANY(\(leases.map(\.position))::integer[])
            ORDER BY position FOR UPDATE
            """).rows
        var found: [Int: (state: String, owner: String?, token: String?, attempts: Int)] = [:]
        for row in rows {
            let (position, state, owner, token, attempts) = try row.decode((Int, String, String?, String?, Int).self)
            found[position] = (state, owner, token, attempts)
        }
        var pending: [Lease: Int] = [:], lost: [Int] = []
        for lease in leases {
            guard let item = found[lease.position], item.owner == worker, item.token == lease.token else {
                lost.append(lease.position); continue
            }
            switch item.state {
            case "claimed": pending[lease] = item.attempts
            // Finished, or sent back to be tried again, by this very lease: the first run of this commit.
            case "done", "failed", "pending": if !rerun { lost.append(lease.position) }
            default: lost.append(lease.position)
            }
        }
        if !lost.isEmpty { throw JobQueueError.leaseLost(job: job, positions: lost) }
        return pending
    }

    /// The next `count` finish sequence numbers of the job; the job's row lock orders concurrent commits.
    private func reserveSequence(_ connection: PostgresConnection, job: String, count: Int) throws -> Int {
        guard let last = try query(connection, """
            UPDATE sluice_job SET finished = finished + \(count) WHERE id = \(job) RETURNING finished
            """).rows.first?.decode(Int.self) else { throw JobQueueError.noSuchJob(job) }
        return last - count + 1
    }

    public func records(job: String, _ body: (ResultRecord) throws -> Void) throws {
        let decoder = JSONDecoder()
        var after = -1
        // A page at a time, in position order: the job's results are never all in memory.
        while true {
            let page = try connections.with { connection in
                try query(connection, """
                    SELECT position, source, record, error FROM sluice_item
                    WHERE job_id = \(job) AND position > \(after) AND (record IS NOT NULL OR (state = 'failed' AND error IS NOT NULL))
                    ORDER BY position LIMIT 256
                    """).rows.map { try $0.decode((Int, String, String?, String?).self) }
            }
            for (position, source, record, error) in page {
                for item in try Self.records(source: source, record: record, error: error, decoder) { try body(item) }
                after = position
            }
            if page.count < 256 { return }
        }
    }

    public func finished(job: String, order: FinishedOrder, after cursor: Int, limit: Int) throws -> [FinishedItem] {
        let decoder = JSONDecoder()
        let key = order == .input ? "position" : "finished_seq"
        return try connections.with { connection in
            try query(connection, """
                SELECT position, source, record, error, finished_seq FROM sluice_item
                WHERE job_id = \(job) AND state IN ('done', 'failed') AND finished_seq IS NOT NULL AND \(unescaped: key) > \(cursor)
                ORDER BY \(unescaped: key) LIMIT \(max(0, limit))
                """).rows.map { row in
                let (position, source, record, error, sequence) = try row.decode((Int, String, String?, String?, Int).self)
                return FinishedItem(sequence: sequence, position: position, source: source,
                                    records: try Self.records(source: source, record: record, error: error, decoder), error: error)
            }
        }
    }

    /// An item's records (one JSON line each); an item failed through `fail` has none stored and gets one
    /// error record for its source with an empty model.
    private static func records(source: String, record: String?, error: String?, _ decoder: JSONDecoder) throws -> [ResultRecord] {
        guard let record else { return [ResultRecord(source: source, model: "", error: error)] }
        return try record.split(separator: "\n").map { try decoder.decode(ResultRecord.self, from: Data($0.utf8)) }
    }
}
