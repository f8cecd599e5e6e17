import ArgumentParser
import Foundation
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Run gated vision backbones over images and videos.",
        subcommands: [Classify.self, Run.self, Infer.self, Models.self, Benchmark.self, Probe.self])
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
        abstract: "Classify images (files or folders, walked recursively in a stable order).")

    @Argument(help: "Image files or folders.") var paths: [String]
    @Option(help: "Registered model name.") var model = "efficientnet_lite0"
    @Option(help: "Checkpoint to use instead of the imported weights (.pth, .safetensors, .npz).") var weights: String?
    @Option(name: .customLong("top-k"), help: "Predictions per image.") var topK = 5
    @Option(help: "Images per batch.") var batch = 8
    @Option(help: "Write records to FILE.jsonl or FILE.csv (default: JSON Lines on stdout).") var out: String?
    @Flag(help: "Exit non-zero when any image fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (card, classifier) = loadClassifier(model, weights: weights)
        let items = InputWalker.expand(paths)
        let sink: RecordSink
        do { sink = try Sinks.open(path: out, topK: topK) } catch { fail("\(error)") }
        let runner = ClassifyRunner(card: card, classifier: classifier, topK: topK, batchSize: batch)
        let progress = ProgressReporter(total: items.count, label: "images")
        let summary = try runner.run(items, sink: sink, progress: progress)
        try sink.close()
        let line = String(format: "classified %d images with %@: %d failed, %.1f images/s (%d threads)\n",
                          summary.items, card.name, summary.failures, summary.imagesPerSecond, Parallel.threads)
        FileHandle.standardError.write(Data(line.utf8))
        if strict && summary.failures > 0 { throw ExitCode(2) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a pipeline definition (YAML): a source of images, a model stage, top-k, sinks.")

    @Argument(help: "Pipeline file.") var pipeline: String
    @Flag(help: "Exit non-zero when any item fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let definition: PipelineDefinition
        do {
            definition = try PipelineDefinition.load(contentsOf: URL(fileURLWithPath: pipeline))
        } catch let error as PipelineValidationError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            FileHandle.standardError.write(Data("sluice: error: \(pipeline): \(error.issues.count) problem(s)\n".utf8))
            throw ExitCode(1)
        }
        let (card, classifier) = loadClassifier(definition.model.name, weights: definition.model.weights)
        let items: [InputItem]
        let sink: RecordSink
        do {
            switch definition.source {
            case .images(let paths, let recursive): items = InputWalker.expand(paths, recursive: recursive)
            case .list(let path): items = try InputWalker.readList(path)
            }
            let outputs = [definition.jsonl, definition.csv].compactMap { $0 }
            sink = TeeSink(try outputs.map { try Sinks.open(path: $0, topK: definition.topK) })
        } catch {
            fail("\(pipeline): \(error)")
        }
        let runner = ClassifyRunner(card: card, classifier: classifier, topK: definition.topK,
                                    batchSize: definition.model.batch)
        let summary = try runner.run(items, sink: sink, progress: ProgressReporter(total: items.count, label: "images"))
        try sink.close()
        let line = String(format: "%@: %d items with %@: %d failed, %.1f items/s\n", definition.name,
                          summary.items, card.name, summary.failures, summary.imagesPerSecond)
        FileHandle.standardError.write(Data(line.utf8))
        if strict && summary.failures > 0 { throw ExitCode(2) }
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
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (card, classifier) = loadClassifier(model, weights: weights)
        let side = card.preprocessing.cropSize
        var generator = SystemRandomNumberGenerator()
        let input = Tensor(shape: [batch, side, side, 3],
                           data: (0..<(batch * side * side * 3)).map { _ in Float.random(in: -1...1, using: &generator) })
        _ = classifier(input)  // warm-up
        var iterations = 0
        let start = Date()
        while iterations < 5 || Date().timeIntervalSince(start) < seconds {
            _ = classifier(input)
            iterations += 1
        }
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(iterations * batch) / elapsed
        print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"kind\": \"model\", \"images_per_s\": %.2f, \"ms_per_batch\": %.3f}",
                     Parallel.threads, batch, rate, 1000 * elapsed / Double(iterations)))
    }
}
