import ArgumentParser
import Foundation
import SluiceJobs
import SluiceModels
import SluicePipeline

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment images (files or folders) or video frames (--fps): masks, overlays, JSONL and CSV records in one folder.",
        discussion: """
            Writes into --out: masks/ (a palette PNG per image or frame: one class index per pixel at the picture's \
            own size, coloured with the model's palette), overlays/ (the picture blended with its mask and a legend \
            of its largest classes: a PNG per image, an H.264 video per video), segments.jsonl (size, per-class \
            pixels and fractions, with --rle each class's COCO RLE), segments.csv (the largest classes), and \
            segment.yaml, the pipeline it ran. It runs as a job (`sluice jobs`): the same command again resumes it.
            """)

    @Argument(help: "Image files or folders (video files or folders with --fps).") var paths: [String]
    @Option(help: "Registered segmentation model.") var model = "upernet_hornet_tiny_gf"
    @Option(help: "Checkpoint to use instead of the imported weights (.pth, .safetensors).") var weights: String?
    @Option(help: "Output folder.") var out: String
    @Option(help: "Treat the inputs as videos and segment frames sampled at this rate (by timestamp).") var fps: Double?
    @Option(help: "Whole-picture inference instead of the model's sliding windows: whole or slide.") var mode: String?
    @Option(name: .customLong("top-k"), help: "Classes per row in the CSV.") var topK = 5
    @Flag(help: "Add each class's COCO run-length encoding to the JSONL records.") var rle = false
    @Flag(name: .customLong("no-overlays"), help: "Write no overlay pictures or videos.") var noOverlays = false
    @Option(help: "Most pictures per forward pass.") var batch = 1
    @Flag(help: "Start the job over instead of resuming it.") var fresh = false
    @Flag(help: "Exit non-zero when any input fails.") var strict = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if let fps, !(fps > 0) { throw CommandError("--fps must be positive, got \(fps)") }
        if let mode, mode != "whole" && mode != "slide" { throw CommandError("--mode must be whole or slide, got \(mode)") }
        if !(1...1000).contains(topK) { throw CommandError("--top-k must be in 1...1000, got \(topK)") }
        if !(1...256).contains(batch) { throw CommandError("--batch must be in 1...256, got \(batch)") }
    }

    func run() throws {
        threadOptions.apply()
        let card: ModelCard
        do { card = try ModelRegistry.card(named: model) } catch { throw CommandError("\(error)") }
        guard card.task == .semanticSegmentation else {
            throw CommandError("\(model) does \(card.task.rawValue), not semantic segmentation (see `sluice models list`)")
        }
        let folder = URL(fileURLWithPath: out).standardizedFileURL
        let pipelineFile = folder.appendingPathComponent("segment.yaml")
        let text = pipelineText()
        let definition: PipelineDefinition
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: pipelineFile, options: .atomic)
            definition = try PipelineDefinition.parse(text, file: pipelineFile.path, baseDirectory: folder)
        } catch let error as PipelineValidationError {
            throw CommandError("\(error)")
        } catch {
            throw CommandError("\(out): \(error)")
        }
        let store: SQLiteJobQueue
        do { store = try SQLiteJobQueue(path: Configuration.current.jobQueuePath) } catch { throw jobStoreError(error) }
        try Run.runJob(definition, text: text, origin: pipelineFile.path, store: store, resumed: nil, fresh: fresh, strict: strict)
        let written = "masks in \(folder.appendingPathComponent("masks").path)"
            + (noOverlays ? "" : ", overlays in \(folder.appendingPathComponent("overlays").path)")
            + ", records in segments.jsonl and segments.csv"
        log.info("\(written)")
    }

    /// The pipeline this command runs, with absolute input paths (JSON strings are YAML strings).
    func pipelineText() -> String {
        func quoted(_ text: String) -> String {
            let data = try! JSONEncoder().encode(text)
            return String(decoding: data, as: UTF8.self)
        }
        let inputs = "[" + paths.map { quoted(URL(fileURLWithPath: $0).standardizedFileURL.path) }.joined(separator: ", ") + "]"
        let source = fps.map { "{ video: \(inputs), recursive: true, sample: { fps: \($0) } }" }
            ?? "{ images: \(inputs), recursive: true }"
        var lines = ["name: segment", "source: \(source)", "stages:", "  - model: \(quoted(model))"]
        if let weights { lines.append("    weights: \(quoted(URL(fileURLWithPath: weights).standardizedFileURL.path))") }
        lines.append("    batch: \(batch)")
        if let mode { lines.append("    mode: \(mode)") }
        lines.append("  - topk: \(topK)")
        if rle { lines.append("  - rle: true") }
        lines.append("sink: { jsonl: segments.jsonl, csv: segments.csv, masks: masks" + (noOverlays ? "" : ", overlays: overlays") + " }")
        return lines.joined(separator: "\n") + "\n"
    }
}
