import ArgumentParser
import Foundation
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

struct ClassifyVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify-video",
        abstract: "Classify videos with a streaming video model (TRecViT): a record per sampled frame and one per clip.",
        discussion: """
            Frames stream through one session per video, so memory does not grow with the video's length. Each \
            sampled frame gets a record with its index, timestamp and the top-k of its clip so far; each clip \
            (frames_per_clip frames; a shorter last one at the video's end) a record with "clip" and the clip's \
            top-k. --set frames_per_clip=N changes the clip length (the released model: 32); --set mode=stream \
            never resets the state and predicts from the last frames_per_clip frames. With --overlay DIR each \
            video is written again with its current top 3. The same runs through `sluice run` with a pipeline \
            whose model stage names the video model.
            """)

    @Argument(help: "Video files or folders (walked for video extensions).") var paths: [String]
    @Option(help: "Registered video classification model.") var model = "trecvit_b"
    @Option(help: "Checkpoint to use instead of the imported weights (.npz, .safetensors).") var weights: String?
    @Option(help: "Frames to use: all, fps=X, every=N, uniform=N.") var sample = "all"
    @Option(help: "Write records to FILE.jsonl or FILE.csv (default: JSON Lines on stdout).") var out: String?
    @Option(help: "Write each video again, with its current top 3, into this folder.") var overlay: String?
    @Option(name: .customLong("top-k"), help: "Predictions per record.") var topK = 5
    @Option(name: .customLong("set"), help: "Model setting KEY=VALUE[,KEY=VALUE]: frames_per_clip, mode (clip|stream).")
    var settings: [String] = []
    @Flag(help: "Exit non-zero when any video fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if !(1...1000).contains(topK) { throw CommandError("--top-k must be in 1...1000, got \(topK)") }
        _ = try Self.sampling(sample)
    }

    /// `all`, `fps=X`, `every=N` or `uniform=N`.
    static func sampling(_ text: String) throws -> VideoSampling {
        if text == "all" { return .all }
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        if parts.count == 2 {
            switch parts[0] {
            case "fps": if let x = Double(parts[1]), x > 0, x.isFinite { return .fps(x) }
            case "every": if let n = Int(parts[1]), n > 0 { return .everyNth(n) }
            case "uniform": if let n = Int(parts[1]), n > 0 { return .uniform(count: n) }
            default: break
            }
        }
        throw CommandError("--sample \(text): expected all, fps=X (X > 0), every=N or uniform=N (N > 0)")
    }

    func run() throws {
        threadOptions.apply()
        let card: ModelCard
        do { card = try ModelRegistry.card(named: model) } catch { throw CommandError("\(error)") }
        guard card.task == .videoClassification else {
            throw CommandError("\(model) does \(card.task.rawValue), not video classification (see `sluice models list`)")
        }
        var (_, loaded) = try loadModel(model, weights: weights)
        if case .streamingVideo(let network) = loaded, let trecvit = network as? TRecViT {
            loaded = .streamingVideo(trecvit.with(try Infer.videoConfiguration(trecvit.configuration, settings)))
        } else if !settings.isEmpty {
            throw CommandError("\(model) takes no --set options")
        }
        let source = PipelineDefinition.Source.videos(paths: paths, recursive: true, sampling: try Self.sampling(sample))
        let items: [InputItem]
        let sink: ItemSink
        let plan: PipelinePlan
        do {
            plan = try PipelinePlan(card: card, loaded: loaded, media: source.media, postprocessing: Postprocessing(topK: topK),
                                    overlayFolder: overlay)
            items = try source.items()
            sink = RecordItemSink(try Sinks.open(path: out, topK: topK, clips: true))
        } catch {
            throw CommandError("\(error)")
        }
        // A video's frames step 8 at a time: larger matrix products, the same values up to float rounding.
        let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: 8, maxWait: 0.05))
        let summary = try executor.run(items, sink: sink, observers: [ProgressBar(total: items.count, label: "videos"),
                                                                     PipelineMetrics(model: card.name)])
        try sink.close()
        log.info("\(String(format: "classified %d videos with %@: %d failed, %d frames at %.1f frames/s (%d threads)", summary.items, card.name, summary.failures, summary.frames, summary.framesPerSecond, Parallel.threads))")
        if strict && summary.failures > 0 { throw ExitCode.itemsFailed }
    }
}
