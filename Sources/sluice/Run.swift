import ArgumentParser
import Foundation
import SluiceJobs
import SluiceModels
import SluicePipeline

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a pipeline definition (YAML) as a resumable job: running it again resumes it.",
        discussion: """
            A job is identified by its pipeline's text and its inputs. Each batch's results are committed to \
            the job queue ($SLUICE_HOME/jobs.sqlite) together with the items' states, and the sink files are \
            written from the committed results, so a killed run loses nothing and a resumed one writes no \
            record twice. With --queue postgres://… the job goes to a queue shared by many machines: this run \
            works on it alongside any `sluice worker`s, or with --detach only submits it and prints its id. \
            Exit status: 0 done (failed items are recorded), 1 the job could not run, 2 items failed with \
            --strict, 3 cancelled (`sluice jobs cancel`), 130 interrupted (Ctrl-C).
            """)

    @Argument(help: "Pipeline file.") var pipeline: String
    @Option(help: "Resume this job (id or unique prefix) with its recorded inputs, even if the folder changed since.")
    var resume: String?
    @Flag(help: "Start the job over instead of resuming it.") var fresh = false
    @Flag(help: "Exit non-zero when any item fails.") var strict = false
    @Flag(help: "Submit the job and print its id without working on it (for `sluice worker`s on a shared queue).")
    var detach = false
    @OptionGroup var queueOptions: QueueOptions
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if resume != nil && fresh { throw CommandError("--resume and --fresh exclude each other") }
        if resume != nil && detach { throw CommandError("--resume and --detach exclude each other") }
    }

    func run() throws {
        threadOptions.apply()
        let store: any JobQueue, resumed: Job?
        do {
            store = try queueOptions.open()
            resumed = try resume.map { id throws -> Job in
                guard let found = try store.job(id: id) else { throw CommandError("no job '\(id)' (see `sluice jobs list`)") }
                return found
            }
        } catch let error as CommandError {
            throw error
        } catch {
            throw jobStoreError(error)
        }
        // A resumed job runs the pipeline it was submitted with (stored by content), whatever the file
        // says now; jobs from stores older than that read the file.
        let definition: PipelineDefinition, text: String
        do {
            if let resumed, let stored = resumed.pipeline {
                text = stored
                definition = try PipelineDefinition.parse(
                    stored, file: resumed.origin, baseDirectory: URL(fileURLWithPath: resumed.origin).deletingLastPathComponent())
            } else {
                (definition, text) = try PipelineDefinition.loadWithText(contentsOf: URL(fileURLWithPath: pipeline))
            }
        } catch let error as PipelineValidationError {
            log.info("\(error)")
            throw CommandError("\(resumed?.origin ?? pipeline): \(error.issues.count) problem(s)")
        }
        if detach {
            do {
                _ = try Self.plan(definition, origin: pipeline)  // refuse a job no worker could run
                let job = try store.submit(name: definition.name, pipeline: text, origin: URL(fileURLWithPath: pipeline).path,
                                           items: try definition.source.items(), fresh: fresh)
                if job.cancelledAt != nil { try store.uncancel(job: job.id) }
                let status = try store.status(job: job.id)
                log.info("submitted job \(job.id) (\(definition.name)): \(status.remaining) of \(status.total) items to do")
                print(job.id)
            } catch {
                throw jobStoreError(error)
            }
            return
        }
        try Self.runJob(definition, text: text, origin: pipeline, store: store, resumed: resumed, fresh: fresh, strict: strict)
    }

    /// The model and the stage plan a pipeline runs with (`origin`: its file, for messages).
    static func plan(_ definition: PipelineDefinition, origin: String,
                     load: (String, String?) throws -> (ModelCard, LoadedModel) = { try loadModel($0, weights: $1) })
        throws -> (ModelCard, PipelinePlan) {
        let (card, loaded) = try load(definition.model.name, definition.model.weights)
        do {
            let configured = loaded.settingSegmentationMode(definition.model.mode)
                .settingVideo(framesPerClip: definition.model.framesPerClip, mode: definition.model.clipMode)
            return (card, try PipelinePlan(card: card, loaded: configured, media: definition.source.media,
                                           postprocessing: definition.postprocessing, overlayFolder: definition.overlay,
                                           maskFolder: definition.masks))
        } catch {
            throw CommandError("\(origin): \(error)")
        }
    }

    /// Runs a parsed pipeline as a job of `store`: submits it (or resumes `resumed`, or the job with the
    /// same pipeline and inputs), runs what is left, writes the sinks from the committed results.
    /// (`sluice run` and `sluice segment`.) A store error, wherever it happens, is one line naming the store.
    static func runJob(_ definition: PipelineDefinition, text: String, origin pipeline: String, store: any JobQueue,
                       resumed: Job?, fresh: Bool, strict: Bool) throws {
        do {
            try runJobSteps(definition, text: text, origin: pipeline, store: store, resumed: resumed, fresh: fresh, strict: strict)
        } catch {
            throw jobStoreError(error)
        }
    }

    private static func runJobSteps(_ definition: PipelineDefinition, text: String, origin pipeline: String,
                                    store: any JobQueue, resumed: Job?, fresh: Bool, strict: Bool) throws {
        let (card, plan) = try plan(definition, origin: pipeline)
        let job: Job, runner: JobRunner, before: JobStatus
        do {
            if let resumed {
                job = resumed
            } else {
                job = try store.submit(name: definition.name, pipeline: text, origin: URL(fileURLWithPath: pipeline).path,
                                       items: try definition.source.items(), fresh: fresh)
            }
            if job.cancelledAt != nil {
                log.info("job \(job.id) was cancelled; resuming it")
                try store.uncancel(job: job.id)
            }
            runner = JobRunner(queue: store, jobID: job.id)
            before = try store.status(job: job.id)
        } catch let error as CommandError {
            throw error
        } catch where describeStoreError(error) == nil {
            throw CommandError("\(pipeline): \(error)")
        }   // a store error goes on to `runJob`, which words it
        if before.remaining < job.total {
            log.info("job \(job.id): resuming, \(job.total - before.remaining) of \(job.total) items already done")
        }
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: definition.model.batch,
                                                                   maxWait: definition.model.maxWait))
        // Ctrl-C or `sluice jobs cancel`: start no new item, finish and commit those in flight, write the
        // sinks, say where the job stopped.
        let interrupt = Interrupt()
        runner.notice = { log.info("\($0)") }
        let summary = try runner.run(executor: executor, commitEvery: definition.model.batch,
                                     observers: [ProgressBar(total: before.remaining, label: "items"), PipelineMetrics(model: card.name)],
                                     shouldStop: { interrupt.requested })
        let cancelled = summary.cancelled
        try runner.exportSinks(jsonl: definition.jsonl, csv: definition.csv, topK: definition.topK, masks: card.task.makesMasks,
                               clips: card.task == .videoClassification)
        let totals = try store.status(job: job.id)
        if summary.stopped {
            let how = cancelled ? "cancelled" : "interrupted"
            log.info("\n\(how): job \(job.id) stopped after \(totals.done + totals.failed) of \(totals.total) items; run the same command again to resume")
            throw cancelled ? ExitCode.cancelled : ExitCode.interrupted
        }
        let frames = definition.source.media == .image ? ""
            : String(format: ", %d frames at %.1f frames/s", summary.frames, summary.framesPerSecond)
        log.info("\(String(format: "%@ (job %@): %d items, %d done, %d failed; this run %d items at %.1f items/s%@", definition.name, job.id, totals.total, totals.done, totals.failed, summary.items, summary.itemsPerSecond, frames))")
        if strict && totals.failed > 0 { throw ExitCode.itemsFailed }
    }
}

/// Turns SIGINT (and any other `signals`) into a flag the run checks between batches. A second one exits
/// at once, from the signal handler: nothing is left to unwind to while the first one is being honoured.
final class Interrupt: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let lock = NSLock()
    private var count = 0

    init(signals: [Int32] = [SIGINT]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                lock.lock(); count += 1; let n = count; lock.unlock()
                if n > 1 { Foundation.exit(ExitCode.interrupted.rawValue) }
            }
            source.resume()
            sources.append(source)
        }
    }

    var requested: Bool { lock.lock(); defer { lock.unlock() }; return count > 0 }
}
