import ArgumentParser
import Foundation
import SluicePipeline
import SluiceTensor

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

    func validate() throws {
        if let fps, !(fps > 0) { throw CommandError("--fps must be positive, got \(fps)") }
    }

    func run() throws {
        threadOptions.apply()
        let source: PipelineDefinition.Source = fps.map { .videos(paths: paths, recursive: true, sampling: .fps($0)) }
            ?? .images(paths: paths, recursive: true)
        let definition = PipelineDefinition(name: "classify", source: source,
                                            model: .init(name: model, weights: weights, batch: batch),
                                            postprocessing: Postprocessing(topK: topK), jsonl: nil, csv: nil)
        let (card, loaded) = try loadModel(model, weights: weights)
        let items: [InputItem]
        let sink: ItemSink
        let plan: PipelinePlan
        do {
            plan = try PipelinePlan(card: card, loaded: loaded, media: definition.source.media,
                                    postprocessing: definition.postprocessing)
            items = try definition.source.items()
            sink = RecordItemSink(try Sinks.open(path: out, topK: topK))
        } catch {
            throw CommandError("\(error)")
        }
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: batch, maxWait: definition.model.maxWait))
        let unit = fps == nil ? "images" : "videos"
        let summary = try executor.run(items, sink: sink, observers: [ProgressBar(total: items.count, label: unit), PipelineMetrics(model: card.name)])
        try sink.close()
        let frames = fps == nil ? "" : String(format: " (%d frames, %.1f frames/s)", summary.frames, summary.framesPerSecond)
        log.info("\(String(format: "classified %d %@ with %@: %d failed, %.1f %@/s%@ (%d threads)", summary.items, unit, card.name, summary.failures, summary.itemsPerSecond, unit, frames, Parallel.threads))")
        if strict && summary.failures > 0 { throw ExitCode.itemsFailed }
    }
}
