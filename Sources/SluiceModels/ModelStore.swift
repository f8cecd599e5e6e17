import Foundation
import SluiceTensor

/// Imported weights live in `HOME/models` (the CLI's `$SLUICE_HOME`, default `~/.local/share/sluice`) as
/// `NAME.safetensors` (official key names, float32) and `NAME.json` (what was imported from where).
public struct ModelStore: Sendable {
    public let home: URL
    public var modelsDirectory: URL { home.appendingPathComponent("models", isDirectory: true) }

    /// The store under `home` (the command line passes `$SLUICE_HOME`); by default
    /// `~/.local/share/sluice`. The library reads no environment.
    public init(home: URL? = nil) {
        self.home = home ?? FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".local/share/sluice", isDirectory: true)
    }

    public func weightsURL(for model: String) -> URL { modelsDirectory.appendingPathComponent("\(model).safetensors") }
    public func cardURL(for model: String) -> URL { modelsDirectory.appendingPathComponent("\(model).json") }

    public struct ImportSummary: Sendable {
        public var weights: URL
        public var card: URL
        public var tensorCount: Int
        public var parameterCount: Int
        public var format: String
    }

    /// Reads any supported checkpoint, checks it against the model's parameter list (reporting every
    /// missing, mis-shaped or unexpected tensor), and writes the store's files.
    /// `provenance` adds fields to the card (where a pulled file came from, its checksum, its licence).
    public func importCheckpoint(_ source: URL, model: String, provenance: [String: String] = [:]) throws -> ImportSummary {
        let card = try ModelRegistry.card(named: model)
        let format = try Checkpoint.format(of: source)
        let stateDict = try card.sanitize(Checkpoint.load(source))
        let reader = card.reader(stateDict.tensors)
        _ = try card.load(reader, source: source.path)
        let ordered = try reader.declared.map { ($0.0, try stateDict.tensor($0.0)) }
        try FileManager.default.createDirectory(at: modelsDirectory, withIntermediateDirectories: true)
        let metadata = ["model": model, "family": card.family, "source": source.lastPathComponent,
                        "format": format.rawValue]
        let weights = weightsURL(for: model)
        try Safetensors.write(ordered, metadata: metadata, to: weights)
        let parameterCount = ordered.reduce(0) { $0 + $1.1.count }
        var info: [String: Any] = [
            "name": model, "family": card.family, "reference": card.reference,
            "source": source.path, "source_format": format.rawValue,
            "tensors": ordered.count, "parameters": parameterCount,
            "labels": card.labels.name, "task": card.task.rawValue,
            "imported_at": ISO8601DateFormatter().string(from: Date()),
        ]
        for (key, value) in provenance { info[key] = value }
        if let p = card.preprocessing {
            info["preprocessing"] = ["resize_shorter_side": p.resizeShorterSide, "crop_size": p.cropSize,
                                     "interpolation": p.interpolation.rawValue, "mean": p.mean, "std": p.std]
        }
        let json = try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(cardURL(for: model)) { try json.write(to: $0) }
        return ImportSummary(weights: weights, card: cardURL(for: model), tensorCount: ordered.count,
                             parameterCount: parameterCount, format: format.rawValue)
    }

    /// The model `model` (whatever its task), from `weights` when given (any checkpoint format), else
    /// from the store.
    public func load(_ model: String, weights: URL? = nil) throws -> (ModelCard, LoadedModel) {
        let card = try ModelRegistry.card(named: model)
        let url = weights ?? weightsURL(for: model)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ModelError.noWeights(model: model, searched: url.path)
        }
        return (card, try card.load(stateDict: Checkpoint.load(url), source: url.path))
    }

    /// The classifier for `model`, from `weights` when given, else from the store.
    public func loadClassifier(_ model: String, weights: URL? = nil) throws -> (ModelCard, any ImageClassifier) {
        let (card, loaded) = try load(model, weights: weights)
        return (card, try card.classifier(loaded))
    }
}
