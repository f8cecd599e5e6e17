import ArgumentParser
import Foundation
import SluiceJobs
import SluiceModels
import SluicePipeline
import SluicePostgres

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work on the jobs of a queue shared by many machines, as long as it runs.",
        discussion: """
            Claims items of every open job (oldest job first) in batches under a lease kept alive by \
            heartbeats, runs them through the job's own pipeline (its model loaded on first use and kept), \
            and commits each batch's records and states in one transaction. An item that fails is tried \
            again after a pause that doubles each time, up to --max-attempts, then recorded as failed with \
            its last error. Inputs must be paths every worker can read (a shared mount); masks and overlays \
            go where the pipeline says. When a job is finished, the worker that finished it writes its sink \
            files. Idle, it waits for the queue's NOTIFY. SIGTERM or Ctrl-C: the items in flight finish and \
            are committed, the rest given back; exit 0.
            """)

    @OptionGroup var queueOptions: QueueOptions
    @Option(help: "Name of this worker in leases and `jobs show` (default HOST:PID).") var name: String?
    @Option(help: "Seconds a claim holds without a heartbeat (heartbeats come four times per lease).") var lease: Double = 60
    @Option(name: .customLong("max-attempts"), help: "Claims an item gets before it is recorded as failed.")
    var maxAttempts = 3
    @Option(name: .customLong("claim"), help: "Items claimed at a time (default: one batch of the job's model).")
    var claimSize: Int?
    @Flag(name: .customLong("until-idle"), help: "Exit when no job has items left to claim or finish.")
    var untilIdle = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if !(lease >= 1) { throw CommandError("--lease must be at least 1 s, got \(lease)") }
        if !(1...100).contains(maxAttempts) { throw CommandError("--max-attempts must be in 1...100, got \(maxAttempts)") }
        if let claimSize, !(1...100_000).contains(claimSize) { throw CommandError("--claim must be in 1...100000, got \(claimSize)") }
    }

    func run() throws {
        threadOptions.apply()
        let queue = try queueOptions.open(retry: RetryPolicy(maxAttempts: maxAttempts))
        let worker = name ?? JobRunner.localWorker
        let stop = Interrupt(signals: [SIGINT, SIGTERM])
        var models = LoadedModels()
        /// Jobs that cannot run here (their pipeline or model failed), with when to look again.
        var unrunnable: [String: Date] = [:]
        log.info("worker \(worker): waiting for jobs on \(queueOptions.url.map(Self.withoutPassword) ?? Configuration.current.jobQueuePath)")
        while !stop.requested {
            let open: [Job]
            do { open = try queue.openJobs() } catch { throw jobStoreError(error) }
            if untilIdle && open.isEmpty { break }
            var worked = false
            for job in open where !stop.requested && (unrunnable[job.id] ?? .distantPast) < Date() {
                do {
                    worked = try work(on: job, queue: queue, worker: worker, models: &models, stop: stop) || worked
                } catch let error where describeStoreError(error) != nil {
                    throw jobStoreError(error)
                } catch {
                    log.error("job \(job.id) (\(job.origin)): \(error); trying it again in 60 s")
                    unrunnable[job.id] = Date().addingTimeInterval(60)
                }
            }
            // Nothing to claim now: wait for a submission or items given back (NOTIFY), or for leases of
            // stopped workers and retry pauses to run out (looked at every 2 s).
            if !worked && !stop.requested { queue.waitForChange(timeout: 2) }
        }
        log.info("worker \(worker): stopped")
    }

    /// Runs what can be claimed of `job` now; true when anything was.
    private func work(on job: Job, queue: any JobQueue, worker: String, models: inout LoadedModels, stop: Interrupt) throws -> Bool {
        guard let text = job.pipeline else { throw CommandError("the job has no stored pipeline") }
        let definition = try PipelineDefinition.parse(
            text, file: job.origin, baseDirectory: URL(fileURLWithPath: job.origin).deletingLastPathComponent())
        let (card, plan) = try Run.plan(definition, origin: job.origin, load: { try models.load($0, weights: $1) })
        let runner = JobRunner(queue: queue, jobID: job.id, worker: worker)
        runner.lease = lease
        // One batch at a time measured fastest with two workers (scripts/bench/workers: 480 images in
        // 4.3 s against 6.3 s at two batches and 6.7 s at four): the workers finish the job together.
        runner.claimSize = claimSize ?? definition.model.batch
        runner.waitsForOtherRuns = false
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: definition.model.batch, maxWait: definition.model.maxWait))
        let summary = try runner.run(executor: executor, commitEvery: definition.model.batch,
                                     observers: [PipelineMetrics(model: card.name)], shouldStop: { stop.requested })
        guard summary.items > 0 || summary.lostItems > 0 else { return false }
        let status = try queue.status(job: job.id)
        log.info("\(String(format: "job %@ (%@): %d items at %.1f items/s here; %d done, %d failed, %d left of %d", job.id, definition.name, summary.items, summary.itemsPerSecond, status.done, status.failed, status.remaining, status.total))")
        if status.remaining == 0 {
            // Whoever finishes a job writes its sinks (each replaced atomically, so two at once is safe).
            do {
                try runner.exportSinks(jsonl: definition.jsonl, csv: definition.csv, topK: definition.topK,
                                       masks: card.task.makesMasks, clips: card.task == .videoClassification)
            } catch {
                log.error("job \(job.id): \(error)")
            }
            log.info("job \(job.id) (\(definition.name)) finished: \(status.done) done, \(status.failed) failed")
        }
        return true
    }

    static func withoutPassword(_ url: String) -> String {
        (try? PostgresLocation(url: url).description) ?? url
    }
}

/// Models loaded once per process, by name and weights, for the jobs that use them.
struct LoadedModels {
    private var loaded: [String: (ModelCard, LoadedModel)] = [:]

    mutating func load(_ name: String, weights: String?) throws -> (ModelCard, LoadedModel) {
        let key = name + "\u{0}" + (weights ?? "")
        if let found = loaded[key] { return found }
        let model = try loadModel(name, weights: weights)
        loaded[key] = model
        return model
    }
}
