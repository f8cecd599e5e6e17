import ArgumentParser
import Foundation
import SluiceJobs

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show, cancel and export jobs in the job queue.",
        subcommands: [List.self, Show.self, Cancel.self, Export.self])

    static func store() throws -> SQLiteJobQueue {
        do {
            return try SQLiteJobQueue(path: Configuration.current.jobQueuePath)
        } catch {
            throw jobStoreError(error)
        }
    }

    static func job(_ id: String, in store: SQLiteJobQueue) throws -> Job {
        let found: Job?
        do { found = try store.job(id: id) } catch { throw jobStoreError(error) }
        guard let found else { throw CommandError("no job '\(id)' (see `sluice jobs list`)") }
        return found
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per job: id, name, progress.")
        func run() throws {
            let store = try Jobs.store()
            for job in try store.jobs() {
                let p = try store.status(job: job.id)
                print("\(job.id)\t\(job.name)\t\(p.done) done, \(p.failed) failed, \(p.remaining) pending of \(p.total)\t\(job.origin)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A job's progress and its failed items.")
        @Argument(help: "Job id (a unique prefix is enough).") var id: String
        func run() throws {
            let store = try Jobs.store()
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
        func run() throws {
            let store = try Jobs.store()
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
        func run() throws {
            let store = try Jobs.store()
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

/// A job store error as one line naming the store file (locked, full disk, damaged); other errors as
/// they are.
func jobStoreError(_ error: any Error) -> any Error {
    guard let text = SQLiteJobQueue.describe(error, path: Configuration.current.jobQueuePath) else { return error }
    return CommandError("job store " + text)
}
