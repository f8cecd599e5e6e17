import ArgumentParser
import Foundation
import SluiceJobs
import SluicePipeline

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a pipeline definition (YAML) as a resumable job: running it again resumes it.",
        discussion: """
            A job is identified by its pipeline file and its inputs. Each batch's results are committed to \
            the job store ($SLUICE_HOME/jobs.sqlite) together with the items' states, and the sink files are \
            written from the committed results, so a killed run loses nothing and a resumed one writes no \
            record twice. Exit status: 0 done (failed items are recorded), 1 the job could not run, 2 items \
            failed with --strict, 3 cancelled (`sluice jobs cancel`), 130 interrupted (Ctrl-C).
            """)

    @Argument(help: "Pipeline file.") var pipeline: String
    @Option(help: "Resume this job (id or unique prefix) with its recorded inputs, even if the folder changed since.")
    var resume: String?
    @Flag(help: "Start the job over instead of resuming it.") var fresh = false
    @Flag(help: "Exit non-zero when any item fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if resume != nil && fresh { throw CommandError("--resume and --fresh exclude each other") }
    }

    func run() throws {
        threadOptions.apply()
        let definition: PipelineDefinition
        do {
            definition = try PipelineDefinition.load(contentsOf: URL(fileURLWithPath: pipeline))
        } catch let error as PipelineValidationError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw CommandError("\(pipeline): \(error.issues.count) problem(s)")
        }
        let (card, loaded) = try loadModel(definition.model.name, weights: definition.model.weights)
        let plan: PipelinePlan
        do {
            plan = try PipelinePlan(card: card, loaded: loaded, media: definition.source.media,
                                    postprocessing: definition.postprocessing, overlayFolder: definition.overlay,
                                    maskFolder: definition.masks)
        } catch {
            throw CommandError("\(pipeline): \(error)")
        }
        let store: JobStore, job: JobStore.Job, runner: JobRunner
        let inputs: [InputItem], sink: CommittingSink
        do {
            store = try JobStore.openDefault()
            if let resume {
                guard let found = try store.job(id: resume) else {
                    throw CommandError("no job '\(resume)' (see `sluice jobs list`)")
                }
                job = found
            } else {
                let items = try definition.source.items()
                let pipelineText = try String(contentsOfFile: pipeline, encoding: .utf8)
                job = try store.openJob(id: JobStore.jobID(pipeline: pipelineText, sources: items.map(\.path)),
                                        name: definition.name, pipeline: pipeline, items: items, fresh: fresh)
            }
            if job.cancelledAt != nil {
                FileHandle.standardError.write(Data("job \(job.id) was cancelled; resuming it\n".utf8))
                try store.setCancelled(job: job.id, false)
            }
            runner = JobRunner(store: store, jobID: job.id)
            (inputs, sink) = try runner.pending(commitEvery: definition.model.batch)
        } catch let error as CommandError {
            throw error
        } catch {
            throw CommandError("\(pipeline): \(error)")
        }
        if inputs.count < job.total {
            FileHandle.standardError.write(Data("job \(job.id): resuming, \(job.total - inputs.count) of \(job.total) items already done\n".utf8))
        }
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: definition.model.batch,
                                                                   maxWait: definition.model.maxWait))
        // Ctrl-C or `sluice jobs cancel`: start no new item, finish and commit those in flight, write the
        // sinks, say where the job stopped.
        let interrupt = Interrupt()
        var cancelled = false
        var lastCancelCheck = Date()
        let summary = try executor.run(inputs, sink: sink, observers: [ProgressBar(total: inputs.count, label: "items")],
                                       shouldStop: {
            if interrupt.requested { return true }
            if Date().timeIntervalSince(lastCancelCheck) >= 1 {
                lastCancelCheck = Date()
                cancelled = (try? store.isCancelled(job: job.id)) ?? false
            }
            return cancelled
        })
        try sink.close()
        try runner.exportSinks(jsonl: definition.jsonl, csv: definition.csv, topK: definition.topK)
        let totals = try store.progress(job: job.id)
        if summary.stopped {
            let how = cancelled ? "cancelled" : "interrupted"
            FileHandle.standardError.write(Data("\n\(how): job \(job.id) stopped after \(totals.done + totals.failed) of \(totals.total) items; run the same command again to resume\n".utf8))
            throw cancelled ? ExitCode.cancelled : ExitCode.interrupted
        }
        let frames = definition.source.media == .image ? ""
            : String(format: ", %d frames at %.1f frames/s", summary.frames, summary.framesPerSecond)
        let line = String(format: "%@ (job %@): %d items, %d done, %d failed; this run %d items at %.1f items/s%@\n",
                          definition.name, job.id, totals.total, totals.done, totals.failed, summary.items,
                          summary.itemsPerSecond, frames)
        FileHandle.standardError.write(Data(line.utf8))
        if strict && totals.failed > 0 { throw ExitCode.itemsFailed }
    }
}

/// Turns SIGINT into a flag the run checks between batches. A second Ctrl-C exits at once, from the
/// signal handler: nothing is left to unwind to while the first one is being honoured.
final class Interrupt: @unchecked Sendable {
    private let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    private let lock = NSLock()
    private var count = 0

    init() {
        signal(SIGINT, SIG_IGN)
        source.setEventHandler { [self] in
            lock.lock(); count += 1; let n = count; lock.unlock()
            if n > 1 { Foundation.exit(ExitCode.interrupted.rawValue) }
        }
        source.resume()
    }

    var requested: Bool { lock.lock(); defer { lock.unlock() }; return count > 0 }
}
