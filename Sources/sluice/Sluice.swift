import ArgumentParser
import Foundation
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor
import SluiceJobs

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Run gated vision backbones over images and videos.",
        subcommands: [Classify.self, Run.self, Jobs.self, Infer.self, Models.self, Benchmark.self, Probe.self])
}

/// Prints a one-line error and exits non-zero: for failures of the whole command, not of one item.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sluice: error: \(message)\n".utf8))
    Foundation.exit(1)
}

/// The named model with weights from FILE or the model store; a failure ends the command with one line.
func loadClassifier(_ model: String, weights: String?) -> (ModelCard, any ImageClassifier) {
    do {
        return try ModelStore().loadClassifier(model, weights: weights.map { URL(fileURLWithPath: $0) })
    } catch {
        fail("\(error)")
    }
}

struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads for kernels and OpenBLAS (default: SLUICE_THREADS or all cores).")
    var threads: Int?
    func apply() { Parallel.configure(threads: threads) }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images (files or folders, walked recursively in a stable order), or video frames with --fps.",
        discussion: "A front over a generated pipeline (see `sluice run`): the same stage graph, without a job store.")

    @Argument(help: "Image files or folders (video files or folders with --fps).") var paths: [String]
    @Option(help: "Registered model name.") var model = "efficientnet_lite0"
    @Option(help: "Checkpoint to use instead of the imported weights (.pth, .safetensors, .npz).") var weights: String?
    @Option(name: .customLong("top-k"), help: "Predictions per image.") var topK = 5
    @Option(help: "Most images per batch.") var batch = 8
    @Option(help: "Treat the inputs as videos and classify frames sampled at this rate (by timestamp).") var fps: Double?
    @Option(help: "Write records to FILE.jsonl or FILE.csv (default: JSON Lines on stdout).") var out: String?
    @Flag(help: "Exit non-zero when any image fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        if let fps, !(fps > 0) { fail("--fps must be positive, got \(fps)") }
        let source: PipelineDefinition.Source = fps.map { .videos(paths: paths, recursive: true, sampling: .fps($0)) }
            ?? .images(paths: paths, recursive: true)
        let definition = PipelineDefinition(name: "classify", source: source,
                                            model: .init(name: model, weights: weights, batch: batch),
                                            postprocessing: Postprocessing(topK: topK), jsonl: nil, csv: nil)
        let (card, classifier) = loadClassifier(model, weights: weights)
        let items: [InputItem]
        let sink: ItemSink
        do {
            items = try definition.source.items()
            sink = RecordItemSink(try Sinks.open(path: out, topK: topK))
        } catch {
            fail("\(error)")
        }
        let plan: PipelinePlan
        do {
            plan = try PipelinePlan(card: card, loaded: .classifier(classifier), media: definition.source.media,
                                    postprocessing: definition.postprocessing)
        } catch {
            fail("\(error)")
        }
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: batch, maxWait: definition.model.maxWait))
        let unit = fps == nil ? "images" : "videos"
        let summary = try executor.run(items, sink: sink, observers: [ProgressBar(total: items.count, label: unit)])
        try sink.close()
        let frames = fps == nil ? "" : String(format: " (%d frames, %.1f frames/s)", summary.frames, summary.framesPerSecond)
        let line = String(format: "classified %d %@ with %@: %d failed, %.1f %@/s%@ (%d threads)\n",
                          summary.items, unit, card.name, summary.failures, summary.itemsPerSecond, unit, frames,
                          Parallel.threads)
        FileHandle.standardError.write(Data(line.utf8))
        if strict && summary.failures > 0 { throw ExitCode(2) }
    }
}

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

    func run() throws {
        threadOptions.apply()
        if resume != nil && fresh { fail("--resume and --fresh exclude each other") }
        let definition: PipelineDefinition
        do {
            definition = try PipelineDefinition.load(contentsOf: URL(fileURLWithPath: pipeline))
        } catch let error as PipelineValidationError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            FileHandle.standardError.write(Data("sluice: error: \(pipeline): \(error.issues.count) problem(s)\n".utf8))
            throw ExitCode(1)
        }
        let (card, classifier) = loadClassifier(definition.model.name, weights: definition.model.weights)
        let store: SQLiteJobQueue, job: Job, runner: JobRunner, before: JobStatus
        do {
            store = try SQLiteJobQueue.openDefault()
            if let resume {
                guard let found = try store.job(id: resume) else { fail("no job '\(resume)' (see `sluice jobs list`)") }
                job = found
            } else {
                let items = try definition.source.items()
                let pipelineText = try String(contentsOfFile: pipeline, encoding: .utf8)
                job = try store.submit(name: definition.name, pipeline: pipelineText, origin: pipeline, items: items,
                                       fresh: fresh)
            }
            if job.cancelledAt != nil {
                FileHandle.standardError.write(Data("job \(job.id) was cancelled; resuming it\n".utf8))
                try store.uncancel(job: job.id)
            }
            runner = JobRunner(queue: store, jobID: job.id)
            before = try store.status(job: job.id)
        } catch {
            fail("\(pipeline): \(error)")
        }
        if before.remaining < job.total {
            FileHandle.standardError.write(Data("job \(job.id): resuming, \(job.total - before.remaining) of \(job.total) items already done\n".utf8))
        }
        let plan: PipelinePlan
        do {
            plan = try PipelinePlan(card: card, loaded: .classifier(classifier), media: definition.source.media,
                                    postprocessing: definition.postprocessing, overlayFolder: definition.overlay,
                                    maskFolder: definition.masks)
        } catch {
            fail("\(pipeline): \(error)")
        }
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: definition.model.batch,
                                                                   maxWait: definition.model.maxWait))
        // Ctrl-C or `sluice jobs cancel`: start no new item, finish and commit those in flight, write the
        // sinks, say where the job stopped.
        let interrupt = Interrupt()
        runner.notice = { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
        let summary = try runner.run(executor: executor, commitEvery: definition.model.batch,
                                     observers: [ProgressBar(total: before.remaining, label: "items")],
                                     shouldStop: { interrupt.requested })
        let cancelled = summary.cancelled
        try runner.exportSinks(jsonl: definition.jsonl, csv: definition.csv, topK: definition.topK)
        let totals = try store.status(job: job.id)
        if summary.stopped {
            let how = cancelled ? "cancelled" : "interrupted"
            FileHandle.standardError.write(Data("\n\(how): job \(job.id) stopped after \(totals.done + totals.failed) of \(totals.total) items; run the same command again to resume\n".utf8))
            throw ExitCode(cancelled ? 3 : 130)
        }
        let frames = definition.source.media == .image ? ""
            : String(format: ", %d frames at %.1f frames/s", summary.frames, summary.framesPerSecond)
        let line = String(format: "%@ (job %@): %d items, %d done, %d failed; this run %d items at %.1f items/s%@\n",
                          definition.name, job.id, totals.total, totals.done, totals.failed, summary.items,
                          summary.itemsPerSecond, frames)
        FileHandle.standardError.write(Data(line.utf8))
        if strict && totals.failed > 0 { throw ExitCode(2) }
    }
}

/// Turns SIGINT into a flag the run checks between batches (a second Ctrl-C exits at once).
final class Interrupt: @unchecked Sendable {
    private let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    private let lock = NSLock()
    private var count = 0

    init() {
        signal(SIGINT, SIG_IGN)
        source.setEventHandler { [self] in
            lock.lock(); count += 1; let n = count; lock.unlock()
            if n > 1 { Foundation.exit(130) }
        }
        source.resume()
    }

    var requested: Bool { lock.lock(); defer { lock.unlock() }; return count > 0 }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show, cancel and export jobs in the job store.",
        subcommands: [List.self, Show.self, Cancel.self, Export.self])

    static func store() -> SQLiteJobQueue {
        do { return try SQLiteJobQueue.openDefault() } catch { fail("job store: \(error)") }
    }

    static func job(_ id: String, in store: SQLiteJobQueue) -> Job {
        do {
            guard let job = try store.job(id: id) else { fail("no job '\(id)' (see `sluice jobs list`)") }
            return job
        } catch {
            fail("job store: \(error)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per job: id, name, progress.")
        func run() throws {
            let store = Jobs.store()
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
            let store = Jobs.store()
            let job = Jobs.job(id, in: store)
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
            let store = Jobs.store()
            let job = Jobs.job(id, in: store)
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
            let store = Jobs.store()
            let job = Jobs.job(id, in: store)
            let runner = JobRunner(queue: store, jobID: job.id)
            do {
                let csv = out.lowercased().hasSuffix(".csv")
                try runner.exportSinks(jsonl: csv ? nil : out, csv: csv ? out : nil, topK: topK)
            } catch {
                fail("\(out): \(error)")
            }
        }
    }
}

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model's forward pass on a preprocessed tensor in the official layout (NCHW for PyTorch models).")

    @Option(help: "Registered model name.") var model: String
    @Option(help: "Checkpoint (default: the imported weights).") var weights: String?
    @Option(help: "Input .npy (NAME=FILE for models with several inputs).") var input: [String]
    @Option(help: "Output .npy.") var output: String
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (_, classifier) = loadClassifier(model, weights: weights)
        do {
            guard input.count == 1 else { fail("\(model) takes one input, got \(input.count)") }
            let path = input[0].split(separator: "=", maxSplits: 1).last.map(String.init)!
            let x = try NPY.read(contentsOf: URL(fileURLWithPath: path))
            guard x.rank == 4, x.shape[1] == 3 else { fail("\(path): expected NCHW input [N, 3, H, W], got \(x.shape)") }
            let logits = classifier(x.nchwToNHWC())
            try NPY.write(logits, to: URL(fileURLWithPath: output))
        } catch {
            fail("\(error)")
        }
    }
}

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import and list model weights.", subcommands: [Import.self, List.self])

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a checkpoint against a model and store it as NAME.safetensors + NAME.json.")
        @Argument(help: "Checkpoint: PyTorch .pth (zip or legacy), .safetensors, .npz.") var file: String
        @Option(help: "Registered model name.") var model: String

        func run() throws {
            do {
                let summary = try ModelStore().importCheckpoint(URL(fileURLWithPath: file), model: model)
                print("imported \(model) from \(file) (\(summary.format)): \(summary.tensorCount) tensors, "
                      + "\(summary.parameterCount) parameters -> \(summary.weights.path)")
            } catch {
                fail("\(error)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered models and imported weights.")
        func run() throws {
            let store = ModelStore()
            for card in ModelRegistry.cards {
                let imported = FileManager.default.fileExists(atPath: store.weightsURL(for: card.name).path)
                print("\(card.name)\t\(card.family)\t\(imported ? "imported" : "not imported")")
            }
        }
    }
}

struct Benchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model's forward pass on random input; prints one JSON line.")

    @Option(help: "Registered model name.") var model = "efficientnet_lite0"
    @Option(help: "Checkpoint (default: the imported weights).") var weights: String?
    @Option(help: "Images per forward pass.") var batch = 1
    @Option(help: "Minimum seconds to measure.") var seconds = 3.0
    @Option(help: "Input side in pixels (default: the model's crop size).") var size: Int?
    @Flag(help: "Print each layer's median wall time inside the forward pass instead (one JSON line per layer; models that report layers only).")
    var layers = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (card, classifier) = loadClassifier(model, weights: weights)
        let side = size ?? card.input.image.fixedSide ?? 512
        // Seeded: reproducible input, and no getrandom system call per value (3M of them at 1024 px).
        var generator = SplitMix64(seed: 1)
        let input = Tensor(shape: [batch, side, side, 3],
                           data: (0..<(batch * side * side * 3)).map { _ in Float.random(in: -1...1, using: &generator) })
        _ = classifier(input)  // warm-up
        if layers {
            guard let timed = classifier as? any LayerTimedClassifier else {
                throw ValidationError("\(model) does not report per-layer times")
            }
            // A layer that runs once per image (the early ones at batch > 1) counts with its sum.
            var order: [String] = [], times: [String: [Double]] = [:]
            repeatPasses {
                var pass: [String: Double] = [:]
                _ = timed(input) { layer, ms in
                    if times.isEmpty && pass[layer] == nil { order.append(layer) }
                    pass[layer, default: 0] += ms
                }
                for (layer, ms) in pass { times[layer, default: []].append(ms) }
            }
            for layer in order {
                print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"layer\": \"%@\", \"ms_median\": %.4f}",
                             Parallel.threads, batch, layer, median(times[layer]!)))
            }
            return
        }
        // Each pass is timed too: the median pass is steadier than the mean on these shared VMs, where
        // a neighbour's burst can slow a few passes by half.
        var passes: [Double] = []
        let elapsed = repeatPasses {
            let passStart = DispatchTime.now().uptimeNanoseconds
            _ = classifier(input)
            passes.append(Double(DispatchTime.now().uptimeNanoseconds - passStart) / 1e6)
        }
        let rate = Double(passes.count * batch) / elapsed
        print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"size\": %d, \"kind\": \"model\", \"images_per_s\": %.2f, \"ms_per_batch\": %.3f, \"images_per_s_median_pass\": %.2f}",
                     Parallel.threads, batch, side, rate, 1000 * elapsed / Double(passes.count), 1000 * Double(batch) / median(passes)))
    }

    /// Runs `pass` at least 5 times and for at least `seconds`; the seconds it took.
    @discardableResult
    func repeatPasses(_ pass: () -> Void) -> Double {
        let start = Date()
        var count = 0
        while count < 5 || Date().timeIntervalSince(start) < seconds {
            pass()
            count += 1
        }
        return Date().timeIntervalSince(start)
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
