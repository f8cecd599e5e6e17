import ArgumentParser
import Foundation
import PostgresNIO
import SluiceJobs
import SluicePostgres

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show, cancel and export jobs in the job queue.",
        subcommands: [List.self, Show.self, Cancel.self, Export.self])

    static func job(_ id: String, in store: any JobQueue) throws -> Job {
        let found: Job?
        do { found = try store.job(id: id) } catch { throw jobStoreError(error) }
        guard let found else { throw CommandError("no job '\(id)' (see `sluice jobs list`)") }
        return found
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per job: id, name, progress.")
        @OptionGroup var queueOptions: QueueOptions
        func run() throws {
            let store = try queueOptions.open()
            for job in try store.jobs() {
                let p = try store.status(job: job.id)
                print("\(job.id)\t\(job.name)\t\(p.done) done, \(p.failed) failed, \(p.remaining) pending of \(p.total)\t\(job.origin)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A job's progress and its failed items.")
        @Argument(help: "Job id (a unique prefix is enough).") var id: String
        @OptionGroup var queueOptions: QueueOptions
        func run() throws {
            let store = try queueOptions.open()
            let job = try Jobs.job(id, in: store)
            let p = try store.status(job: job.id)
            print("job \(job.id) \(job.name) (\(job.origin)): \(p.done) done, \(p.failed) failed, \(p.remaining) pending of \(p.total)")
            try store.records(job: job.id) { record in
                if let error = record.error { print("failed: \(error)") }
            }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a job: a run in progress stops after the items in flight (committed results stay).")
        @Argument(help: "Job id (a unique prefix is enough).") var id: String
        @OptionGroup var queueOptions: QueueOptions
        func run() throws {
            let store = try queueOptions.open()
            let job = try Jobs.job(id, in: store)
            try store.cancel(job: job.id)
            let p = try store.status(job: job.id)
            print("cancelled job \(job.id) \(job.name): \(p.done) done, \(p.failed) failed, \(p.remaining) pending of \(p.total)")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a job's committed records to FILE.jsonl or FILE.csv.")
        @Argument(help: "Job id (a unique prefix is enough).") var id: String
        @Option(help: "Output file (.jsonl or .csv).") var out: String
        @Option(name: .customLong("top-k"), help: "Predictions per record in CSV columns.") var topK = 5
        @OptionGroup var queueOptions: QueueOptions
        func run() throws {
            let store = try queueOptions.open()
            let job = try Jobs.job(id, in: store)
            let runner = JobRunner(queue: store, jobID: job.id)
            do {
                let csv = out.lowercased().hasSuffix(".csv")
                try runner.exportSinks(jsonl: csv ? nil : out, csv: csv ? out : nil, topK: topK)
            } catch {
                throw CommandError("\(out): \(error)")
            }
        }
    }
}

/// Which job queue a command works on: `--queue postgres://…` (or SLUICE_QUEUE) for one shared by many
/// workers, else the SQLite store in $SLUICE_HOME.
struct QueueOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Shared job queue: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: SLUICE_QUEUE, else the SQLite store).",
                               valueName: "url"))
    var queue: String?

    var url: String? { queue ?? Configuration.current.queue }

    func open(retry: RetryPolicy = RetryPolicy()) throws -> any JobQueue {
        do {
            if let url { return try PostgresJobQueue(url: url, retry: retry) }
            return try SQLiteJobQueue(path: Configuration.current.jobQueuePath)
        } catch {
            throw jobStoreError(error)
        }
    }
}

/// A job store error as one line naming the store (locked, full disk, damaged, unreachable); other
/// errors as they are.
func jobStoreError(_ error: any Error) -> any Error {
    describeStoreError(error).map(CommandError.init) ?? error
}

/// The one-line wording of an error of either store; nil for any other error.
func describeStoreError(_ error: any Error) -> String? {
    if let error = error as? PostgresQueueError { return "\(error)" }
    if let error = error as? PSQLError {
        let server = error.serverInfo?[.message].map { "\($0) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))" }
        return "job queue in PostgreSQL: \(server ?? "\(error.code)")"
    }
    return SQLiteJobQueue.describe(error, path: Configuration.current.jobQueuePath).map { "job store " + $0 }
}
