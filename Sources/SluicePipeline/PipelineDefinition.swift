import Foundation
import Yams
import SluiceModels

/// A pipeline file (YAML): where inputs come from, which model runs on them with what
/// post-processing, and where results go.
///
/// ```yaml
/// name: photos-top5
/// source: { images: ./photos, recursive: true }   # or { list: files.txt }
/// stages:
///   - model: efficientnet_lite0                   # a registry name; optional weights: FILE, batch: N
///     batch: 8
///   - topk: 5
/// sink: { jsonl: out/photos.jsonl, csv: out/photos.csv }
/// ```
/// Relative paths are resolved against the pipeline file's folder.
public struct PipelineDefinition: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case images(paths: [String], recursive: Bool)
        /// A text file naming one input per line (blank lines and `#` comments ignored).
        case list(path: String)
    }

    public struct ModelStage: Sendable, Equatable {
        public var name: String
        public var weights: String?
        public var batch: Int
        public init(name: String, weights: String?, batch: Int) { self.name = name; self.weights = weights; self.batch = batch }
    }

    public var name: String
    public var source: Source
    public var model: ModelStage
    public var topK: Int
    public var jsonl: String?
    public var csv: String?

    public init(name: String, source: Source, model: ModelStage, topK: Int, jsonl: String?, csv: String?) {
        self.name = name; self.source = source; self.model = model; self.topK = topK; self.jsonl = jsonl; self.csv = csv
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
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw PipelineValidationError(issues: [PipelineIssue(file: url.path, line: 1, column: 1,
                                                                 message: "cannot read pipeline file: \(InputWalker.describe(error))")])
        }
        return try parse(text, file: url.path, baseDirectory: url.deletingLastPathComponent())
    }

    /// Parses and validates a pipeline; throws `PipelineValidationError` listing every problem.
    public static func parse(_ text: String, file: String, baseDirectory: URL? = nil) throws -> PipelineDefinition {
        var validator = Validator(file: file, base: baseDirectory)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw PipelineValidationError(issues: [validator.issue(for: error)])
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
    var issues: [PipelineIssue] = []

    init(file: String, base: URL?) { self.file = file; self.base = base }

    func at(_ node: Node?, _ message: String) -> PipelineIssue {
        PipelineIssue(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
    }

    func issue(for error: YamlError) -> PipelineIssue {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return PipelineIssue(file: file, line: mark.line, column: mark.column, message: "invalid YAML: \(what)")
        default:
            return PipelineIssue(file: file, line: 1, column: 1, message: "invalid YAML: \(error)")
        }
    }

    mutating func report(_ node: Node?, _ message: String) { issues.append(at(node, message)) }

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
            report(node, "pipeline: missing 'source' (one of: images, list)")
        }

        var model: PipelineDefinition.ModelStage?
        var topK = 5
        if let entry = top["stages"] {
            (model, topK) = stages(entry.value)
        } else {
            report(node, "pipeline: missing 'stages' (a list with a model stage)")
        }

        var jsonl: String?, csv: String?
        if let entry = top["sink"] {
            if let sink = entry.value.mapping {
                let fields = entries(sink, allowed: ["jsonl", "csv"], context: "sink")
                if let value = fields["jsonl"] { jsonl = string(value.value, "jsonl").map(resolve) }
                if let value = fields["csv"] { csv = string(value.value, "csv").map(resolve) }
                if fields.isEmpty { report(entry.value, "sink: name at least one of jsonl, csv") }
            } else {
                report(entry.value, "'sink' must be a mapping with jsonl and/or csv, got \(describe(entry.value))")
            }
        } else {
            report(node, "pipeline: missing 'sink' (jsonl and/or csv)")
        }
        guard issues.isEmpty, let source, let model else { return nil }
        return PipelineDefinition(name: name, source: source, model: model, topK: topK, jsonl: jsonl, csv: csv)
    }

    mutating func source(_ node: Node) -> PipelineDefinition.Source? {
        guard let mapping = node.mapping else {
            report(node, "'source' must be a mapping (images or list), got \(describe(node))")
            return nil
        }
        let fields = entries(mapping, allowed: ["images", "recursive", "list"], context: "source")
        let recursive = fields["recursive"].flatMap { boolean($0.value, "recursive") } ?? true
        switch (fields["images"], fields["list"]) {
        case (let images?, nil):
            if let list = images.value.sequence {
                let paths = list.compactMap { string($0, "images") }.map(resolve)
                if paths.isEmpty { report(images.value, "'images' lists no paths") }
                return .images(paths: paths, recursive: recursive)
            }
            return string(images.value, "images").map { .images(paths: [resolve($0)], recursive: recursive) }
        case (nil, let list?):
            return string(list.value, "list").map { .list(path: resolve($0)) }
        case (.some, .some):
            report(node, "source: give either 'images' or 'list', not both")
        case (nil, nil):
            report(node, "source: missing 'images' or 'list'")
        }
        return nil
    }

    mutating func stages(_ node: Node) -> (PipelineDefinition.ModelStage?, Int) {
        guard let list = node.sequence else {
            report(node, "'stages' must be a list, got \(describe(node))")
            return (nil, 5)
        }
        var model: PipelineDefinition.ModelStage?
        var topK = 5
        let kinds = ["model", "topk"]
        for stage in list {
            guard let mapping = stage.mapping else {
                report(stage, "a stage must be a mapping with one of: \(kinds.joined(separator: ", "))")
                continue
            }
            let kind = mapping.keys.compactMap(\.string).first(where: kinds.contains)
            switch kind {
            case "model":
                let fields = entries(mapping, allowed: ["model", "weights", "batch"], context: "model stage")
                if model != nil { report(stage, "only one model stage is supported") }
                guard let nameNode = fields["model"]?.value, let name = string(nameNode, "model") else { continue }
                if !ModelRegistry.names.contains(name) {
                    report(nameNode, "unknown model '\(name)' (known: \(ModelRegistry.names.joined(separator: ", ")))")
                }
                let weights = fields["weights"].flatMap { string($0.value, "weights") }.map(resolve)
                let batch = fields["batch"].flatMap { integer($0.value, "batch", range: 1...256) } ?? 8
                model = PipelineDefinition.ModelStage(name: name, weights: weights, batch: batch)
            case "topk":
                let fields = entries(mapping, allowed: ["topk"], context: "topk stage")
                if let value = fields["topk"] { topK = integer(value.value, "topk", range: 1...1000) ?? topK }
            default:
                let names = mapping.keys.compactMap(\.string).joined(separator: ", ")
                report(stage, "unknown stage '\(names)' (allowed: \(kinds.joined(separator: ", ")))")
            }
        }
        if model == nil && issues.isEmpty { report(node, "stages: no model stage") }
        return (model, topK)
    }
}
