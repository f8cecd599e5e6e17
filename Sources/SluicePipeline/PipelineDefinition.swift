import Foundation
import Yams
import SluiceMedia
import SluiceModels

/// A pipeline file (YAML): where inputs come from, which model runs on them with what
/// post-processing, and where results go.
///
/// ```yaml
/// name: photos-top5
/// source: { images: ./photos, recursive: true }   # or { list: files.txt }
///                                                 # or { video: clip.mp4, sample: { fps: 2 } }
/// stages:
///   - model: efficientnet_lite0                   # a registry name; optional weights: FILE
///     batch: 8                                    # most frames per forward pass
///     max_wait_ms: 50                             # how long a batch may wait to fill
///                                                 # segmenters: mode: whole|slide; video classifiers:
///                                                 # frames_per_clip: N, mode: clip|stream
///   - topk: 5
///   - threshold: 0.1                              # keep predictions with probability >= 0.1
/// sink: { jsonl: out/photos.jsonl, csv: out/photos.csv }  # optional overlays: FOLDER (a PNG per image,
///                                                         # an H.264 video per video), and for
///                                                         # segmentation models masks: FOLDER
/// ```
/// Video sampling: `all`, `{ every: N }`, `{ fps: X }`, `{ uniform: N }` or `{ range: [START, END] }` (seconds).
/// Relative paths are resolved against the pipeline file's folder.
public struct PipelineDefinition: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case images(paths: [String], recursive: Bool)
        /// A text file naming one input per line (blank lines and `#` comments ignored).
        case list(path: String)
        /// Video files (folders are walked for video extensions), frames chosen by `sampling`.
        case videos(paths: [String], recursive: Bool, sampling: VideoSampling)

        /// Images or video frames.
        public var media: MediaKind {
            if case .videos(_, _, let sampling) = self { return .video(sampling) }
            return .image
        }

        /// The inputs, in a stable order.
        public func items() throws -> [InputItem] {
            switch self {
            case .images(let paths, let recursive): return InputWalker.expand(paths, recursive: recursive)
            case .list(let path): return try InputWalker.readList(path)
            case .videos(let paths, let recursive, _):
                return InputWalker.expand(paths, recursive: recursive, extensions: InputWalker.videoExtensions)
            }
        }
    }

    public struct ModelStage: Sendable, Equatable {
        public var name: String
        public var weights: String?
        public var batch: Int
        /// Seconds a batch may wait for more frames once it has one.
        public var maxWait: Double
        /// How a segmenter covers each picture (nil: the card's setting).
        public var mode: SegmentationMode?
        /// A video classifier's clip length and mode (nil: the card's).
        public var framesPerClip: Int?
        public var clipMode: TRecViTConfiguration.Mode?
        public init(name: String, weights: String?, batch: Int, maxWait: Double = 0.05, mode: SegmentationMode? = nil,
                    framesPerClip: Int? = nil, clipMode: TRecViTConfiguration.Mode? = nil) {
            self.name = name; self.weights = weights; self.batch = batch; self.maxWait = maxWait; self.mode = mode
            self.framesPerClip = framesPerClip; self.clipMode = clipMode
        }
    }

    public var name: String
    public var source: Source
    public var model: ModelStage
    public var postprocessing: Postprocessing
    public var jsonl: String?
    public var csv: String?
    /// Folder for overlays (`overlays:`, or `overlay:`): a PNG per image, an H.264 video per video, each
    /// picture with its top-1 label or its mask.
    public var overlay: String?
    /// Folder for mask images (segmentation models): a palette PNG per image or frame.
    public var masks: String?

    public var topK: Int { postprocessing.topK }

    public init(name: String, source: Source, model: ModelStage, postprocessing: Postprocessing, jsonl: String?,
                csv: String?, overlay: String? = nil, masks: String? = nil) {
        self.name = name; self.source = source; self.model = model; self.postprocessing = postprocessing
        self.jsonl = jsonl; self.csv = csv; self.overlay = overlay; self.masks = masks
    }
}

/// One problem in a pipeline file, with its position.
public struct PipelineIssue: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Every problem found in a pipeline file (validation never stops at the first one).
public struct PipelineValidationError: Error, CustomStringConvertible {
    public var issues: [PipelineIssue]
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

extension PipelineDefinition {
    public static func load(contentsOf url: URL) throws -> PipelineDefinition {
        try loadWithText(contentsOf: url).definition
    }

    /// The definition and the exact text it was parsed from (what a job is stored and identified by).
    public static func loadWithText(contentsOf url: URL) throws -> (definition: PipelineDefinition, text: String) {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw PipelineValidationError(issues: [PipelineIssue(file: url.path, line: 1, column: 1,
                                                                 message: "cannot read pipeline file: \(InputWalker.describe(error))")])
        }
        return (try parse(text, file: url.path, baseDirectory: url.deletingLastPathComponent()), text)
    }

    /// Parses and validates a pipeline; throws `PipelineValidationError` listing every problem.
    /// `requiresSink: false` accepts a pipeline without `sink` (a server keeps the results itself).
    public static func parse(_ text: String, file: String, baseDirectory: URL? = nil,
                             requiresSink: Bool = true) throws -> PipelineDefinition {
        var validator = Validator(file: file, base: baseDirectory, requiresSink: requiresSink)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw PipelineValidationError(issues: [validator.issue(for: error, text: text)])
        }
        guard let root, let mapping = root.mapping else {
            throw PipelineValidationError(issues: [validator.at(root, "a pipeline is a mapping with keys source, stages, sink")])
        }
        let definition = validator.pipeline(mapping, node: root)
        if !validator.issues.isEmpty { throw PipelineValidationError(issues: validator.issues) }
        return definition!
    }
}

/// Walks the YAML node tree, collecting every problem with its position.
private struct Validator {
    let file: String
    let base: URL?
    let requiresSink: Bool
    var issues: [PipelineIssue] = []

    init(file: String, base: URL?, requiresSink: Bool = true) {
        self.file = file; self.base = base; self.requiresSink = requiresSink
    }

    func at(_ node: Node?, _ message: String) -> PipelineIssue {
        PipelineIssue(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
    }

    func issue(for error: YamlError, text: String) -> PipelineIssue {
        switch error {
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams points at the mapping; a user wants the line that repeats the key.
            let key = duplicates.sorted().first ?? "?"
            let places = Self.keyPlaces(key, in: text, from: context.mark.line)
            if places.count >= 2 {
                return PipelineIssue(file: file, line: places[1].line, column: places[1].column,
                                     message: "duplicate key '\(key)' (first at line \(places[0].line))")
            }
            return PipelineIssue(file: file, line: context.mark.line, column: context.mark.column,
                                 message: "duplicate key '\(key)' in this mapping")
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return PipelineIssue(file: file, line: mark.line, column: mark.column, message: "invalid YAML: \(what)")
        default:
            return PipelineIssue(file: file, line: 1, column: 1, message: "invalid YAML: \(error)")
        }
    }

    mutating func report(_ node: Node?, _ message: String) { issues.append(at(node, message)) }

    /// Where `key` appears as a mapping key (`key:` after the line's indent, a `- `, `{` or `,`), from
    /// line `firstLine` on: 1-based lines and columns.
    static func keyPlaces(_ key: String, in text: String, from firstLine: Int) -> [(line: Int, column: Int)] {
        var places: [(line: Int, column: Int)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where index + 1 >= firstLine {
            let characters = Array(line)
            let target = Array(key)
            var i = 0
            while i + target.count <= characters.count {
                let before = i == 0 ? " " : characters[i - 1]
                if (before == " " || before == "{" || before == "," || before == "-" || before == "\t"),
                   Array(characters[i..<(i + target.count)]) == target {
                    var j = i + target.count
                    while j < characters.count && characters[j] == " " { j += 1 }
                    if j < characters.count && characters[j] == ":" {
                        places.append((index + 1, i + 1))
                    }
                }
                i += 1
            }
        }
        return places
    }

    /// Reports keys outside `allowed` and returns the mapping's entries by key.
    mutating func entries(_ mapping: Node.Mapping, allowed: [String], context: String) -> [String: (key: Node, value: Node)] {
        var found: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { report(key, "\(context): keys must be strings"); continue }
            if !allowed.contains(name) {
                report(key, "\(context): unknown key '\(name)' (allowed: \(allowed.joined(separator: ", ")))")
                continue
            }
            if found[name] != nil { report(key, "\(context): duplicate key '\(name)'"); continue }
            found[name] = (key, value)
        }
        return found
    }

    mutating func string(_ node: Node, _ key: String) -> String? {
        guard case .scalar(let scalar) = node, let value = node.string, !value.isEmpty,
              scalar.style != .plain || (node.int == nil && node.bool == nil && node.null == nil) else {
            report(node, "'\(key)' must be a non-empty string, got \(describe(node))")
            return nil
        }
        return value
    }

    mutating func integer(_ node: Node, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard case .scalar = node, let value = node.int else {
            report(node, "'\(key)' must be an integer, got \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(node, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    mutating func boolean(_ node: Node, _ key: String) -> Bool? {
        guard case .scalar = node, let value = node.bool else {
            report(node, "'\(key)' must be true or false, got \(describe(node))")
            return nil
        }
        return value
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): return scalar.string.isEmpty ? "an empty value" : "'\(scalar.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func resolve(_ path: String) -> String {
        guard !path.hasPrefix("/"), let base else { return path }
        return base.appendingPathComponent(path).standardizedFileURL.path
    }

    mutating func pipeline(_ mapping: Node.Mapping, node: Node) -> PipelineDefinition? {
        let top = entries(mapping, allowed: ["name", "source", "stages", "sink"], context: "pipeline")
        var name = "pipeline"
        if let entry = top["name"], let value = string(entry.value, "name") { name = value }

        var source: PipelineDefinition.Source?
        if let entry = top["source"] {
            source = self.source(entry.value)
        } else {
            report(node, "pipeline: missing 'source' (one of: images, list, video)")
        }

        var model: PipelineDefinition.ModelStage?
        var postprocessing = Postprocessing(topK: 5)
        if let entry = top["stages"] {
            (model, postprocessing) = stages(entry.value)
        } else {
            report(node, "pipeline: missing 'stages' (a list with a model stage)")
        }

        var jsonl: String?, csv: String?, overlay: String?, masks: String?
        if let entry = top["sink"] {
            if let sink = entry.value.mapping {
                let fields = entries(sink, allowed: ["jsonl", "csv", "overlay", "overlays", "masks"], context: "sink")
                if let value = fields["jsonl"] { jsonl = string(value.value, "jsonl").map(resolve) }
                if let value = fields["csv"] { csv = string(value.value, "csv").map(resolve) }
                if let value = fields["overlay"] ?? fields["overlays"] {
                    overlay = string(value.value, "overlays").map(resolve)
                    if fields["overlay"] != nil && fields["overlays"] != nil {
                        report(value.key, "sink: give 'overlays' once (overlay is the same sink)")
                    }
                }
                if let value = fields["masks"] {
                    masks = string(value.value, "masks").map(resolve)
                    if let model, let card = try? ModelRegistry.card(named: model.name), !card.task.makesMasks {
                        report(value.key, "sink: 'masks' needs a segmentation model; \(model.name) does \(card.task.rawValue)")
                    }
                }
                if requiresSink && fields["jsonl"] == nil && fields["csv"] == nil {
                    report(entry.value, "sink: name at least one of jsonl, csv")
                }
            } else {
                report(entry.value, "'sink' must be a mapping with jsonl and/or csv, got \(describe(entry.value))")
            }
        } else if requiresSink {
            report(node, "pipeline: missing 'sink' (jsonl and/or csv)")
        }
        guard issues.isEmpty, let source, let model else { return nil }
        return PipelineDefinition(name: name, source: source, model: model, postprocessing: postprocessing,
                                  jsonl: jsonl, csv: csv, overlay: overlay, masks: masks)
    }

    mutating func source(_ node: Node) -> PipelineDefinition.Source? {
        guard let mapping = node.mapping else {
            report(node, "'source' must be a mapping (images, list or video), got \(describe(node))")
            return nil
        }
        let fields = entries(mapping, allowed: ["images", "recursive", "list", "video", "sample"], context: "source")
        let recursive = fields["recursive"].flatMap { boolean($0.value, "recursive") } ?? true
        let given = ["images", "list", "video"].filter { fields[$0] != nil }
        if let sample = fields["sample"], fields["video"] == nil {
            report(sample.key, "source: 'sample' applies to a 'video' source")
        }
        guard given.count == 1 else {
            if given.isEmpty {
                report(node, "source: missing 'images', 'list' or 'video'")
            } else {
                report(node, "source: give one of 'images', 'list' or 'video', not \(given.joined(separator: " and "))")
            }
            return nil
        }
        switch given[0] {
        case "images":
            return paths(fields["images"]!.value, "images").map { .images(paths: $0, recursive: recursive) }
        case "list":
            return string(fields["list"]!.value, "list").map { .list(path: resolve($0)) }
        default:
            let sampling = fields["sample"].map { self.sampling($0.value) } ?? .all
            guard let paths = paths(fields["video"]!.value, "video"), let sampling else { return nil }
            return .videos(paths: paths, recursive: recursive, sampling: sampling)
        }
    }

    /// One path or a list of paths, resolved against the pipeline's folder.
    mutating func paths(_ node: Node, _ key: String) -> [String]? {
        if let list = node.sequence {
            let paths = list.compactMap { string($0, key) }.map(resolve)
            if paths.isEmpty { report(node, "'\(key)' lists no paths") }
            return paths.isEmpty ? nil : paths
        }
        return string(node, key).map { [resolve($0)] }
    }

    static let samplingKinds = ["all", "every", "fps", "uniform", "range"]

    /// `all`, or a mapping with one of every/fps/uniform/range.
    mutating func sampling(_ node: Node) -> VideoSampling? {
        let allowed = Self.samplingKinds.joined(separator: ", ")
        if case .scalar = node, node.string == "all" { return .all }
        guard let mapping = node.mapping else {
            report(node, "'sample' must be 'all' or a mapping with one of: \(allowed), got \(describe(node))")
            return nil
        }
        let fields = entries(mapping, allowed: Array(Self.samplingKinds.dropFirst()), context: "sample")
        guard fields.count == 1, let (kind, entry) = fields.first else {
            if fields.count > 1 {
                report(node, "sample: give one policy, not \(fields.keys.sorted().joined(separator: " and "))")
            } else if mapping.count == 0 {
                report(node, "sample: give one of: \(allowed)")
            }
            return nil
        }
        switch kind {
        case "every": return integer(entry.value, "every", range: 1...1_000_000).map { .everyNth($0) }
        case "uniform": return integer(entry.value, "uniform", range: 1...1_000_000).map { .uniform(count: $0) }
        case "fps":
            guard let fps = number(entry.value, "fps") else { return nil }
            guard fps > 0 else { report(entry.value, "'fps' must be positive, got \(fps)"); return nil }
            return .fps(fps)
        default:
            guard let list = entry.value.sequence, list.count == 2 else {
                report(entry.value, "'range' must be a list [start, end] in seconds, got \(describe(entry.value))")
                return nil
            }
            guard let start = number(list[0], "range start"), let end = number(list[1], "range end") else { return nil }
            guard end > start, start >= 0 else {
                report(entry.value, "'range' must have 0 <= start < end, got [\(start), \(end)]")
                return nil
            }
            return .timeRange(start: start, end: end)
        }
    }

    mutating func number(_ node: Node, _ key: String) -> Double? {
        guard case .scalar = node, let value = node.float, value.isFinite else {
            report(node, "'\(key)' must be a number, got \(describe(node))")
            return nil
        }
        return Double(value)
    }

    mutating func stages(_ node: Node) -> (PipelineDefinition.ModelStage?, Postprocessing) {
        var postprocessing = Postprocessing(topK: 5)
        guard let list = node.sequence else {
            report(node, "'stages' must be a list, got \(describe(node))")
            return (nil, postprocessing)
        }
        var model: PipelineDefinition.ModelStage?
        let kinds = ["model", "topk", "threshold", "rle"]
        for stage in list {
            guard let mapping = stage.mapping else {
                report(stage, "a stage must be a mapping with one of: \(kinds.joined(separator: ", "))")
                continue
            }
            let kind = mapping.keys.compactMap(\.string).first(where: kinds.contains)
            switch kind {
            case "model":
                let fields = entries(mapping, allowed: ["model", "weights", "batch", "max_wait_ms", "mode", "frames_per_clip"],
                                     context: "model stage")
                if model != nil { report(stage, "only one model stage is supported") }
                guard let nameNode = fields["model"]?.value, let name = string(nameNode, "model") else { continue }
                if !ModelRegistry.names.contains(name) {
                    report(nameNode, "unknown model '\(name)' (known: \(ModelRegistry.names.joined(separator: ", ")))")
                }
                let weights = fields["weights"].flatMap { string($0.value, "weights") }.map(resolve)
                let batch = fields["batch"].flatMap { integer($0.value, "batch", range: 1...256) } ?? 8
                let wait = fields["max_wait_ms"].flatMap { integer($0.value, "max_wait_ms", range: 0...60_000) } ?? 50
                var mode: SegmentationMode?
                var clipMode: TRecViTConfiguration.Mode?, framesPerClip: Int?
                let card = try? ModelRegistry.card(named: name)
                if let value = fields["frames_per_clip"] {
                    if let card, card.task != .videoClassification {
                        report(value.key, "model stage: 'frames_per_clip' applies to video classifiers; \(name) does \(card.task.rawValue)")
                    } else {
                        framesPerClip = integer(value.value, "frames_per_clip", range: 1...100_000)
                    }
                }
                if let value = fields["mode"], let text = string(value.value, "mode") {
                    if let card, card.task == .videoClassification {
                        clipMode = TRecViTConfiguration.Mode(rawValue: text)
                        if clipMode == nil {
                            report(value.value, "'mode' must be clip (the official clips, reset at each) or stream (never reset), got '\(text)'")
                        }
                    } else if let card, card.task != .semanticSegmentation {
                        report(value.key, "model stage: 'mode' applies to segmentation models and video classifiers; \(name) does \(card.task.rawValue)")
                    } else if text == "whole" {
                        mode = .whole
                    } else if text == "slide" {
                        mode = nil
                    } else {
                        report(value.value, "'mode' must be whole or slide (the model's windows), got '\(text)'")
                    }
                }
                model = PipelineDefinition.ModelStage(name: name, weights: weights, batch: batch, maxWait: Double(wait) / 1000,
                                                      mode: mode, framesPerClip: framesPerClip, clipMode: clipMode)
            case "topk":
                let fields = entries(mapping, allowed: ["topk"], context: "topk stage")
                if let value = fields["topk"] {
                    postprocessing.topK = integer(value.value, "topk", range: 1...1000) ?? postprocessing.topK
                }
            case "threshold":
                let fields = entries(mapping, allowed: ["threshold"], context: "threshold stage")
                if let value = fields["threshold"], let score = number(value.value, "threshold") {
                    if (0...1).contains(score) {
                        postprocessing.minScore = Float(score)
                    } else {
                        report(value.value, "'threshold' must be a probability in 0...1, got \(score)")
                    }
                }
            case "rle":
                let fields = entries(mapping, allowed: ["rle"], context: "rle stage")
                if let value = fields["rle"], let on = boolean(value.value, "rle") {
                    postprocessing.rle = on
                    if let model, let card = try? ModelRegistry.card(named: model.name), !card.task.makesMasks {
                        report(value.key, "rle stage: needs a segmentation model; \(model.name) does \(card.task.rawValue)")
                    }
                }
            default:
                let names = mapping.keys.compactMap(\.string).joined(separator: ", ")
                report(stage, "unknown stage '\(names)' (allowed: \(kinds.joined(separator: ", ")))")
            }
        }
        if model == nil && issues.isEmpty { report(node, "stages: no model stage") }
        return (model, postprocessing)
    }
}
